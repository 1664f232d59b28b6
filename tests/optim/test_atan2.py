"""mupbench/optim/atan2.py: Adam-atan2 against the reference implementation, PyPI
adam-atan2-pytorch 0.4.1 (a test-only dependency: `pip install --no-deps adam-atan2-pytorch==0.4.1`):
20 steps in float64, same trajectories to 1e-12 relative; an ensemble member is its single run
to the last bit."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from mupbench.optim import stacked_adam
from mupbench.optim.atan2 import AdamAtan2, StackedAdamAtan2

SHAPES, MULTS = [(16, 8), (16,), (16, 16), (1, 16), (5, 3), (1,)], [1.0, 1.0, 0.25, 0.25, 0.25, 1.0]
DECAYS = [len(s) > 1 for s in SHAPES]  # matrices decay, vectors do not
BETAS, A, B = (0.9, 0.999), 1.27, 1.1


def _reference():
    """adam_atan2_pytorch.adam_atan2.AdamAtan2, loaded from its file: the package's __init__ also
    imports its Muon variant, which needs einops."""
    spec = importlib.util.find_spec("adam_atan2_pytorch")
    if spec is None:
        if os.environ.get("CI") == "true":
            pytest.fail("adam-atan2-pytorch==0.4.1 is a test dependency: pip install --no-deps adam-atan2-pytorch==0.4.1")
        pytest.skip("adam-atan2-pytorch not installed (pip install --no-deps adam-atan2-pytorch==0.4.1)")
    path = Path(spec.submodule_search_locations[0]) / "adam_atan2.py"
    module_spec = importlib.util.spec_from_file_location("adam_atan2_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.AdamAtan2


def _grads(M, steps, dtype):
    return [[torch.randn(M, *s, dtype=dtype) * 10.0 ** (k % 5 - 2) for s in SHAPES] for k in range(steps)]


def _single(cls, init, grads, i, k, lam, trajectory=None):
    """Member i trained alone: a group per parameter, lr k·ρ, λ_torch = λ/ρ on matrices (the
    width_invariant mode), none on vectors. ``trajectory``: a list that gets every step's parameters."""
    own = [torch.nn.Parameter(t[i].clone()) for t in init]
    opt = cls([{"params": [p], "lr": k * m, "weight_decay": lam / m if d else 0.0} for p, m, d in zip(own, MULTS, DECAYS)],
              betas=BETAS, a=A, b=B)
    for g in grads:
        for p, t in zip(own, g):
            p.grad = t[i].clone()
        opt.step()
        if trajectory is not None:
            trajectory.append([p.detach().clone() for p in own])
    return [p.detach() for p in own]


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_adam_atan2_is_the_reference(lam):
    reference = _reference()
    torch.manual_seed(0)
    init = [torch.randn(1, *s, dtype=torch.float64) for s in SHAPES]
    grads = _grads(1, 20, torch.float64)
    ours, theirs = [], []
    _single(AdamAtan2, init, grads, 0, 1e-2, lam, ours), _single(reference, init, grads, 0, 1e-2, lam, theirs)
    assert len(ours) == len(theirs) == 20
    for step_ours, step_theirs in zip(ours, theirs):  # every step of the trajectory
        for a, b in zip(step_ours, step_theirs):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    assert not any(torch.equal(a, t[0]) for a, t in zip(ours[-1], init))  # every parameter moved


def test_stacked_adam_atan2_is_the_reference_and_each_member_its_single_run(monkeypatch):
    """Per-member lr and λ_torch, through the cache-blocked path too: float64 against the
    reference, and float32 bitwise against our single-run AdamAtan2."""
    monkeypatch.setattr(stacked_adam, "CHUNK", 64)
    reference = _reference()
    ks, lam = [1e-3, 1e-2, 1e-2, 3e-1], 0.05
    M = len(ks)
    lrs = torch.tensor([[k * m for m in MULTS] for k in ks], dtype=torch.float64)
    wds = torch.tensor([[lam / m if d else 0.0 for m, d in zip(MULTS, DECAYS)] for _ in ks], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(0)
        init = [torch.randn(M, *s, dtype=dtype) for s in SHAPES]
        grads = _grads(M, 20, dtype)
        params = [t.clone() for t in init]
        opt = StackedAdamAtan2(params, lrs, BETAS, a=A, b=B, weight_decay=wds)
        for g in grads:
            opt.step(params, [t.clone() for t in g])
        for i, k in enumerate(ks):
            if dtype == torch.float64:
                for a, b in zip(params, _single(reference, init, grads, i, k, lam)):
                    torch.testing.assert_close(a[i], b, rtol=1e-12, atol=0)
            else:
                assert all(torch.equal(a[i], b) for a, b in zip(params, _single(AdamAtan2, init, grads, i, k, lam)))
    state = opt.member_state(3)
    assert state[0]["step"].item() == 20.0 and torch.equal(state[2]["exp_avg"], opt.exp_avg[2][3])


def test_adam_atan2_does_not_change_with_the_gradient_scale():
    """atan2(c·y, c·x) = atan2(y, x): gradients ×1e-6 move the parameters the same (to rounding)."""
    torch.manual_seed(0)
    init = [torch.randn(1, *s, dtype=torch.float64) for s in SHAPES]
    grads = _grads(1, 20, torch.float64)
    small = [[t * 1e-6 for t in g] for g in grads]
    for a, b in zip(_single(AdamAtan2, init, grads, 0, 1e-2, 0.0), _single(AdamAtan2, init, small, 0, 1e-2, 0.0)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
