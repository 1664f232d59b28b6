"""mupbench/optim/stacked_adam.py: each member of a stacked Adam is torch.optim.Adam on that
member alone, to the last bit: StackedAdam against foreach (and for-loop) Adam, StackedFusedAdam
against fused Adam, members sharing a kernel call included."""

from __future__ import annotations

import pytest
import torch

from mupbench.optim import StackedAdam, StackedFusedAdam, stacked_adam
from mupbench.optim.members import aligned, plan


def _grads(M, shapes, steps):
    return [[torch.randn(M, *s) * 10.0 ** (step % 5 - 2) for s in shapes] for step in range(steps)]


def _own_run(init, grads, i, groups, steps=None, **kw):
    """Member i trained alone by torch.optim.Adam; groups: [(lr, [parameter indices])]."""
    own = [torch.nn.Parameter(t[i].clone()) for t in init]
    opt = torch.optim.Adam([{"params": [own[j] for j in js], "lr": lr} for lr, js in groups], **kw)
    for g in grads[:steps]:
        for p, t in zip(own, g):
            p.grad = t[i].clone()
        opt.step()
    return own, opt


@pytest.mark.parametrize("impl", ["foreach", "for_loop"])
def test_stacked_adam_is_torch_adam(monkeypatch, impl):
    """Bitwise: per member, per-parameter lr (k × lr_mult), through the cache-blocked path too."""
    monkeypatch.setattr(stacked_adam, "CHUNK", 64)
    torch.manual_seed(0)
    shapes, mults, ks = [(50, 30), (5,), (7, 50, 2), (3, 1)], [1.0, 0.25, 0.125, 1.0], [1e-3, 3e-2, 0.5, 1e-5]
    M = len(ks)
    init = [torch.randn(M, *s) for s in shapes]
    grads = _grads(M, shapes, 25)
    params = [t.clone() for t in init]
    adam = StackedAdam(params, torch.tensor([[k * m for m in mults] for k in ks], dtype=torch.float64), (0.9, 0.999), 1e-8)
    for g in grads:
        adam.step(params, [t.clone() for t in g])
    for i, k in enumerate(ks):
        own, opt = _own_run(init, grads, i, [(k * m, [j]) for j, m in enumerate(mults)], foreach=impl == "foreach")
        for p, q in zip(own, params):
            assert torch.equal(p.detach(), q[i])
        state = adam.member_state(i)
        for p, s in zip(own, state):
            assert torch.equal(opt.state[p]["exp_avg"], s["exp_avg"])
            assert torch.equal(opt.state[p]["exp_avg_sq"], s["exp_avg_sq"])
            assert opt.state[p]["step"].item() == s["step"].item()


# sizes that leave the fused kernel a scalar tail (30, 6, 6, 1 floats per member) and sizes that
# do not (128, 16, 12288: whole 64-byte units, shared slices, the last one split across threads)
FUSED_SHAPES = [(6, 5), (6,), (1, 6), (16, 8), (16,), (1,), (128, 96)]
FUSED_MULTS = [1.0, 1.0, 0.5, 1.0, 1.0, 0.5, 0.5]


def test_stacked_fused_adam_is_torch_fused_adam():
    """The default on CPU: every member bitwise torch.optim.Adam(fused=True) on that member alone,
    members of equal k sharing calls included; members marked dead are left out of the update
    entirely, from the step they die."""
    torch.manual_seed(0)
    ks = [1e-3, 1e-3, 1e-2, 1e-3, 1e-3, 1e-2]
    M = len(ks)
    dies = {3: 8, 1: 5}  # member → the first step it is dead at
    init = [torch.randn(M, *s) for s in FUSED_SHAPES]
    grads = _grads(M, FUSED_SHAPES, 12)
    params = [t.clone() for t in init]
    adam = StackedFusedAdam(params, torch.tensor([[k * m for m in FUSED_MULTS] for k in ks], dtype=torch.float64), (0.9, 0.999), 1e-8)
    assert [aligned(p) for p in params] == [False, False, False, True, True, False, True]
    for step, g in enumerate(grads):
        alive = [step < dies.get(i, 99) for i in range(M)]
        adam.step(params, [t.clone() for t in g], alive=None if all(alive) else alive)
    for i, k in enumerate(ks):
        groups = [(k * m, [j for j, n in enumerate(FUSED_MULTS) if n == m]) for m in (1.0, 0.5)]
        own, opt = _own_run(init, grads, i, groups, steps=dies.get(i), fused=True)
        for p, q, m, v in zip(own, params, adam.exp_avg, adam.exp_avg_sq):
            assert torch.equal(p.detach(), q[i]), (i, p.shape)
            assert torch.equal(opt.state[p]["exp_avg"], m[i]) and torch.equal(opt.state[p]["exp_avg_sq"], v[i])


def test_stacked_fused_adam_shares_calls_only_where_it_is_exact():
    """One call per learning rate; a tail-free parameter's equal-lr neighbours share one slice,
    every other member is its own piece; the dead are in no call."""
    rows = [[1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [1.0, 1.0]]
    p = plan(rows, [True, True, True, False], [True, False])
    assert p.cuts == [[2, 3], None]
    assert dict(p.calls) == {1.0: [(0, 0), (1, 0), (1, 1), (1, 2)], 2.0: [(0, 1)]}
    t = torch.arange(4.0)
    assert [v.tolist() for v in p.pieces(0, t)] == [[0.0, 1.0], [2.0], [3.0]]


def test_stacked_fused_adam_follows_lrs_replaced_or_changed_in_place_and_select():
    """The trainer zeroes a frozen member's lrs (in place or by a new tensor) and drops members:
    the update follows, as a fresh optimizer with those lrs and states would."""
    torch.manual_seed(0)
    shapes, M = [(16, 8), (1,)], 4
    lrs = torch.tensor([[1e-2, 1e-2], [1e-2, 1e-2], [1e-3, 1e-3], [1e-2, 1e-2]], dtype=torch.float64)
    params = [torch.randn(M, *s) for s in shapes]
    adam = StackedFusedAdam(params, lrs, (0.9, 0.999), 1e-8)
    grads = _grads(M, shapes, 6)
    adam.step(params, grads[0])
    before = [p[1].clone() for p in params]
    adam.lrs[1] = 0.0  # in place
    adam.step(params, [g * 0 for g in grads[1]])  # zero gradient, zero lr: member 1 stays put
    assert all(torch.equal(b, p[1]) for b, p in zip(before, params))
    adam.lrs = lrs.clone()  # replaced
    adam.select(torch.tensor([0, 2, 3]))
    kept = [p[[0, 2, 3]] for p in params]
    twin = StackedAdam([p.clone() for p in kept], adam.lrs, (0.9, 0.999), 1e-8, step=adam.t)
    twin.exp_avg, twin.exp_avg_sq = [m.clone() for m in adam.exp_avg], [v.clone() for v in adam.exp_avg_sq]
    twin_params = [p.clone() for p in kept]
    for g in grads[2:]:
        adam.step(kept, [t[[0, 2, 3]] for t in g])
        twin.step(twin_params, [t[[0, 2, 3]] for t in g])
    for a, b in zip(kept, twin_params):  # fused and foreach Adam agree to float rounding
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert adam.t == twin.t == 6


@pytest.mark.parametrize("cls", [StackedAdam, StackedFusedAdam])
def test_member_state_round_trips_through_torch_adam(cls):
    torch.manual_seed(0)
    shapes, M = [(4, 3), (4,)], 3
    params = [torch.randn(M, *s) for s in shapes]
    adam = cls(params, torch.full((M, 2), 1e-2, dtype=torch.float64), (0.9, 0.999), 1e-8)
    for g in _grads(M, shapes, 3):
        adam.step(params, g)
    other = cls([p.clone() for p in params], adam.lrs, (0.9, 0.999), 1e-8, step=3)
    for i in range(M):
        other.load_member(i, adam.member_state(i))
    for a, b in zip(adam.exp_avg + adam.exp_avg_sq, other.exp_avg + other.exp_avg_sq):
        assert torch.equal(a, b)
    assert adam.member_state(1)[0]["step"].item() == 3.0


@pytest.mark.parametrize("cls, kw", [(StackedAdam, {"foreach": True}), (StackedFusedAdam, {"fused": True})])
def test_stacked_adam_with_eps_and_weight_decay_is_torch_adamw(monkeypatch, cls, kw):
    """ε per parameter and λ_torch per member and parameter (here the `independent` mode's
    λ/(k·ρ), which differs across members; vectors not decaying): every member bitwise
    torch.optim.AdamW on that member alone."""
    monkeypatch.setattr(stacked_adam, "CHUNK", 64)
    torch.manual_seed(0)
    ks, lam = [1e-3, 1e-3, 1e-2, 3e-3], 0.1
    M = len(ks)
    eps = [1e-8 / 4 if m != 0.5 else 1e-8 for m in FUSED_MULTS]
    decays = [len(s) > 1 for s in FUSED_SHAPES]  # matrices decay
    lrs = torch.tensor([[k * m for m in FUSED_MULTS] for k in ks], dtype=torch.float64)
    wds = torch.tensor([[lam / (k * m) if d else 0.0 for m, d in zip(FUSED_MULTS, decays)] for k in ks], dtype=torch.float64)
    init = [torch.randn(M, *s) for s in FUSED_SHAPES]
    grads = _grads(M, FUSED_SHAPES, 12)
    params = [t.clone() for t in init]
    adam = cls(params, lrs, (0.9, 0.999), eps, weight_decay=wds)
    for g in grads:
        adam.step(params, [t.clone() for t in g])
    for i in range(M):
        own = [torch.nn.Parameter(t[i].clone()) for t in init]
        opt = torch.optim.AdamW([{"params": [p], "lr": lrs[i, j].item(), "eps": eps[j], "weight_decay": wds[i, j].item()}
                                 for j, p in enumerate(own)], **kw)
        for g in grads:
            for p, t in zip(own, g):
                p.grad = t[i].clone()
            opt.step()
        for p, q in zip(own, params):
            assert torch.equal(p.detach(), q[i]), (i, p.shape)


def test_a_schedule_scale_is_the_scaled_lrs_bitwise_and_keeps_the_plan():
    """StackedFusedAdam.scale = s(t) updates exactly as lrs replaced by lrs·s(t) (decay included),
    without rebuilding its cached calls each step."""
    torch.manual_seed(0)
    shapes, M = [(6, 5), (6,), (1, 6)], 3
    lrs = torch.tensor([[1e-3, 1e-3, 5e-4], [1e-2, 1e-2, 5e-3], [1e-3, 1e-3, 5e-4]], dtype=torch.float64)
    wd = torch.full((M, len(shapes)), 0.1, dtype=torch.float64)
    init = [torch.randn(M, *s) for s in shapes]
    grads = [[torch.randn(M, *s) for s in shapes] for _ in range(8)]
    a_params, b_params = [t.clone() for t in init], [t.clone() for t in init]
    a = StackedFusedAdam(a_params, lrs.clone(), (0.9, 0.999), 1e-8, weight_decay=wd)
    b = StackedFusedAdam(b_params, lrs.clone(), (0.9, 0.999), 1e-8, weight_decay=wd)
    plans = set()
    for t, g in enumerate(grads):
        s = 0.5 * (1 + torch.cos(torch.tensor(t / 8 * 3.14159)).item())
        a.lrs = lrs * s
        b.scale = s
        a.step(a_params, [x.clone() for x in g])
        b.step(b_params, [x.clone() for x in g])
        plans.add(id(b._plan))
    assert all(torch.equal(p, q) for p, q in zip(a_params, b_params))
    assert len(plans) == 1  # built once
