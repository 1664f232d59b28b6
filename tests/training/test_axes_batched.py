"""The axes beyond the paper through the one trainer (build_run → steppers → loop): every option is
an identity at the base; weight decay is torch AdamW (coupled) or Table 2.1's per-step update;
ensemble members equal their single runs with every option on (ε, weight decay, schedule,
Adam-atan2, depth)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_same_run, cfgs, train_single, train_stacked
from mupbench.assemble import build_run
from mupbench.config import compose
from mupbench.training.single import SingleStepper

BASE = ["train.device=cpu", "train.eval_batches=2"]
MLP = [*BASE, "train.steps=30", "train.eval_every=10"]
TRANSFORMER = [*BASE, "train.steps=12", "train.eval_every=4", "train.batch_size=4", "model=transformer", "model.blocks=2",
               "dataset=synthetic_tokens", "dataset.n_train=2000", "dataset.n_val=500", "dataset.n_test=100"]


def history(cfg):
    return train_single(build_run(cfg)).history


def losses(h):
    return [(r["step"], r["train_loss"], r["val_loss"], r["lr"]) for r in h]


@pytest.mark.parametrize("setup, extras", [
    (MLP, [["optimizer.eps_scaling=grad"], ["optimizer.eps_scaling=lr_proportional"], ["optimizer.wd_mode=width_invariant"],
           ["optimizer.wd_mode=independent", "optimizer.wd_on_vectors=true"], ["schedule=constant"]]),
    (TRANSFORMER, [["parametrization.depth_alpha=1.0", "model.base_blocks=2"], ["parametrization.depth_alpha=0.5", "model.base_blocks=2"],
                   ["parametrization.depth_alpha=1.0", "model.base_blocks=2", "optimizer.eps_scaling=grad", "schedule=constant"]]),
], ids=["mlp", "transformer"])
def test_every_option_is_the_default_run_at_the_base(setup, extras):
    """ζ = 1, blocks = base_blocks, weight_decay = 0, schedule constant: the same numbers, bitwise."""
    want = losses(history(compose([*setup, "optimizer.lr=0.01"])))
    for extra in extras:
        assert losses(history(compose([*setup, "optimizer.lr=0.01", *extra]))) == want, extra


@pytest.mark.parametrize("impl, torch_kw", [("auto", {"fused": True}), ("foreach", {"foreach": True}), ("for_loop", {"foreach": False})])
def test_coupled_weight_decay_is_torch_adamw_bitwise(impl, torch_kw):
    cfg = compose([*MLP, "model.width_mult=2", "optimizer.lr=0.01", "optimizer.weight_decay=0.1", f"optimizer.impl={impl}"])
    ours, ref = build_run(cfg), build_run(cfg)
    params = dict(ref.model.named_parameters())
    groups = [{"params": [params[e.name]], "lr": 0.01 * e.lr_mult, "weight_decay": 0.1 if e.kind == "weight" else 0.0} for e in ref.plan]
    ref.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, **torch_kw)
    a, b = train_single(ours), train_single(ref)
    assert losses(a.history) == losses(b.history)
    for (name, p), q in zip(ours.model.named_parameters(), ref.model.parameters()):
        assert torch.equal(p, q), name
    assert any(g.get("weight_decay") == 0.1 for g in ours.optimizer.param_groups)


def _known_gradient_step(cfg, s: float):
    """One update of a fresh run with a known gradient on every parameter, the schedule at s."""
    run = build_run(cfg)
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    grads = {}
    for i, (n, p) in enumerate(run.model.named_parameters()):
        grads[n] = torch.linspace(-1, 1, p.numel(), dtype=p.dtype).view_as(p) * 10.0 ** -(i % 3) + 0.1
        p.grad = grads[n].clone()
    stepper = SingleStepper(run)
    if stepper.schedule is not None:
        stepper.set_lr_scale(s)
    run.optimizer.step()
    return run, before, grads


@pytest.mark.parametrize("opt", ["adam", "adam_atan2"])
@pytest.mark.parametrize("mode", ["coupled", "width_invariant", "independent"])
def test_weight_decay_modes_are_table_2_1(opt, mode):
    """θ ← θ(1 − d) − s·k·ρ·u at step 1 (u = g/(|g| + ε) for Adam, a·atan2(g, b|g|) for Adam-atan2),
    with the per-step decay d of Table 2.1: coupled s·k·ρ·λ, width_invariant s·k·λ, independent s·λ
    (matrices and embeddings; vectors 0); the schedule's s multiplies both."""
    k, lam, s, zeta = 0.01, 0.1, 0.5, 2
    cfg = compose([*MLP, f"optimizer={opt}", f"model.width_mult={zeta}", f"optimizer.lr={k}", f"optimizer.weight_decay={lam}",
                   f"optimizer.wd_mode={mode}", "train.dtype=float64", "schedule=wsd", "schedule.decay_frac=1.0",
                   "schedule.decay_shape=linear", "optimizer.eps_scaling=grad" if opt == "adam" else "optimizer.b=1.0"])
    run, before, grads = _known_gradient_step(cfg, s)
    params = dict(run.model.named_parameters())
    for e in run.plan:
        rho, g = e.lr_mult, grads[e.name]
        decay = {"coupled": s * k * rho * lam, "width_invariant": s * k * lam, "independent": s * lam}[mode] if e.kind == "weight" else 0.0
        if opt == "adam":
            u = g / (g.abs() + 1e-8 * e.eps_mult)
        else:
            u = 1.27 * torch.atan2(g, g.abs())
        want = before[e.name] * (1 - decay) - s * k * rho * u
        assert torch.allclose(params[e.name], want, rtol=1e-12, atol=1e-15), (e.name, mode)
        if e.role == "hidden" and lam:
            assert rho == 1 / zeta


def _members_equal_singles(base, points, *extra, rtol=1e-5):
    configs = cfgs(base, points, *extra)
    outs, _ = train_stacked([build_run(c) for c in configs])
    for cfg, out in zip(configs, outs):
        alone = train_single(build_run(cfg))
        assert_same_run(alone, out, rtol)
        assert [h["lr"] for h in alone.history] == [h["lr"] for h in out.history]
    return outs


ALL_ON = ["optimizer.weight_decay=0.05", "schedule=wsd", "schedule.warmup_frac=0.2", "schedule.decay_frac=0.4",
          "schedule.min_lr_ratio=0.1"]


@pytest.mark.parametrize("extra", [
    ["optimizer.eps_scaling=grad", "optimizer.wd_mode=width_invariant", "schedule.decay_shape=1-sqrt"],
    ["optimizer.eps_scaling=lr_proportional", "optimizer.wd_mode=independent", "optimizer.wd_on_vectors=true", "optimizer.impl=foreach"],
    ["optimizer=adam_atan2", "optimizer.wd_mode=independent", "schedule.decay_shape=cosine"],
], ids=["adam_grad_eps", "adam_foreach_independent", "atan2"])
def test_mlp_members_equal_their_single_runs_with_every_option(extra):
    outs = _members_equal_singles([*MLP, "model.width_mult=2", *ALL_ON], [(0, 1e-2), (1, 1e-2), (2, 3e-2)], *extra)
    assert len({o.history[-1]["train_loss"] for o in outs}) == 3


@pytest.mark.parametrize("opt", ["adam", "adam_atan2"])
def test_transformer_members_equal_their_single_runs_with_depth_and_every_option(opt):
    extra = ["parametrization.depth_alpha=1.0", "model.base_blocks=1", "model.width_mult=2", f"optimizer={opt}",
             "optimizer.wd_mode=width_invariant", "schedule.decay_shape=linear",
             *(["optimizer.eps_scaling=grad"] if opt == "adam" else [])]
    _members_equal_singles([*TRANSFORMER, *ALL_ON], [(0, 3e-3), (1, 1e-2)], *extra)


def test_a_cosine_schedule_changes_the_run_and_its_lr_column():
    plain = history(compose([*MLP, "optimizer.lr=0.01"]))
    cos = history(compose([*MLP, "optimizer.lr=0.01", "schedule=cosine", "schedule.warmup_frac=0.1"]))
    assert [h["lr"] for h in plain] == [0.01] * len(plain)
    assert cos[0]["lr"] == 0.0 and cos[-1]["lr"] == pytest.approx(0.001) and losses(cos) != losses(plain)


def test_a_run_with_a_schedule_and_decay_resumes_to_the_uninterrupted_record(tmp_path, monkeypatch):
    """A resumed optimizer's groups hold the lr of its last step; the schedule restarts from k·ρ·s(t)."""
    from test_lifecycle import crash_at

    from mupbench.lifecycle import run_point
    from mupbench.records import METRICS

    cfg = compose([*MLP, "train.steps=60", "train.ckpt_every=25", "model.width_mult=2", *ALL_ON, "optimizer.wd_mode=independent"])
    whole = run_point(cfg, tmp_path / "whole")
    undo = crash_at(monkeypatch, SingleStepper, 40)
    with pytest.raises(KeyboardInterrupt):
        run_point(cfg, tmp_path / "resumed")
    undo()
    resumed = run_point(cfg, tmp_path / "resumed")
    assert resumed["resumed_from"] == 25
    for key in ("min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss", "status"):
        assert resumed[key] == whole[key], key
    lrs = [line.split(",")[-1] for line in (tmp_path / "whole" / METRICS).read_text().splitlines()[1:]]
    assert lrs == [line.split(",")[-1] for line in (tmp_path / "resumed" / METRICS).read_text().splitlines()[1:]]
