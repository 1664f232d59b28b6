"""mupbench/optim/adam.py: LeanAdam (single runs) is torch.optim.Adam to the last bit, fused and
foreach, and its state_dicts are torch's."""

from __future__ import annotations

import pytest
import torch

from mupbench.optim import LeanAdam


def _adam_run(make, steps=12, resume_at=None, make_resumed=None):
    """Two learning-rate groups (as μP has), gradients of every scale; optionally switch optimizer
    class mid-way through its state_dict."""
    torch.manual_seed(0)
    shapes, mults = [(64, 8), (64,), (64, 64), (1, 64), (5, 3), (1,)], [1.0, 1.0, 0.25, 0.25, 0.25, 1.0]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    grads = [[torch.randn(s) * 10.0 ** (k % 4 - 2) for s in shapes] for k in range(steps)]

    def groups():
        return [{"params": [p for p, m in zip(params, mults) if m == 1.0], "lr": 1e-2},
                {"params": [p for p, m in zip(params, mults) if m != 1.0], "lr": 2.5e-3}]

    opt = make(groups())
    for k, g in enumerate(grads):
        if k == resume_at:
            state = opt.state_dict()
            opt = make_resumed(groups())
            opt.load_state_dict(state)
        for p, t in zip(params, g):
            p.grad = t.clone()
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_lean_adam_is_torch_adam_bitwise(impl):
    torch_adam = lambda g: torch.optim.Adam(g, fused=impl == "fused", foreach=impl == "foreach")  # noqa: E731
    lean = lambda g: LeanAdam(g, impl=impl)  # noqa: E731
    expect = _adam_run(torch_adam)
    assert all(torch.equal(a, b) for a, b in zip(expect, _adam_run(lean)))
    # state_dicts are interchangeable both ways, mid-run
    assert all(torch.equal(a, b) for a, b in zip(expect, _adam_run(torch_adam, resume_at=5, make_resumed=lean)))
    assert all(torch.equal(a, b) for a, b in zip(expect, _adam_run(lean, resume_at=5, make_resumed=torch_adam)))


def test_lean_adam_falls_back_to_torch_for_what_it_does_not_cover():
    """A parameter without a gradient (and weight decay, amsgrad, …) goes through torch.optim.Adam.step."""
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(3))
    a.grad = torch.randn(4)
    twin = torch.nn.Parameter(a.detach().clone())
    twin.grad = a.grad.clone()
    LeanAdam([a, b], lr=1e-2).step()
    torch.optim.Adam([twin], lr=1e-2, fused=True).step()
    assert torch.equal(a, twin) and b.grad is None


def test_lean_adam_rejects_an_unknown_impl():
    with pytest.raises(ValueError, match="fused or foreach"):
        LeanAdam([torch.nn.Parameter(torch.zeros(1))], impl="for_loop")
