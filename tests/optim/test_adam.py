"""mupbench/optim/adam.py: LeanAdam (single runs) is torch.optim.Adam to the last bit, fused and
foreach, and its state_dicts are torch's."""

from __future__ import annotations

import pytest
import torch

from mupbench.optim import LeanAdam


def _adam_run(make, steps=12, resume_at=None, make_resumed=None, options=({}, {})):
    """Two learning-rate groups (as μP has; ``options``: more per-group settings), gradients of
    every scale; optionally switch optimizer class mid-way through its state_dict."""
    torch.manual_seed(0)
    shapes, mults = [(64, 8), (64,), (64, 64), (1, 64), (5, 3), (1,)], [1.0, 1.0, 0.25, 0.25, 0.25, 1.0]
    params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    grads = [[torch.randn(s) * 10.0 ** (k % 4 - 2) for s in shapes] for k in range(steps)]

    def groups():
        return [{"params": [p for p, m in zip(params, mults) if m == 1.0], "lr": 1e-2, **options[0]},
                {"params": [p for p, m in zip(params, mults) if m != 1.0], "lr": 2.5e-3, **options[1]}]

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


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_lean_adam_with_per_group_eps_and_decoupled_weight_decay_is_torch_adamw_bitwise(impl):
    """What ε scaling and weight decay hand the optimizer (SPEC-AXES §1, §2): ε and λ_torch per
    group, one group not decaying; every wd mode is this with another λ_torch."""
    options = ({"eps": 1e-8 / 16, "weight_decay": 0.1 * 16}, {"eps": 1e-8, "weight_decay": 0.0})
    torch_adamw = lambda g: torch.optim.AdamW(g, fused=impl == "fused", foreach=impl == "foreach")  # noqa: E731
    lean = lambda g: LeanAdam(g, impl=impl, decoupled_weight_decay=True)  # noqa: E731
    expect = _adam_run(torch_adamw, options=options)
    assert all(torch.equal(a, b) for a, b in zip(expect, _adam_run(lean, options=options)))
    assert all(torch.equal(a, b) for a, b in zip(expect, _adam_run(lean, resume_at=5, make_resumed=torch_adamw, options=options)))
    assert not torch.equal(expect[0], _adam_run(torch_adamw)[0])  # the options took effect


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
