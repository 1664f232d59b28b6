"""parametrization.depth_wd_follows_lr (SPEC-AXES §3, discrepancy 3): with wd_mode=independent and a
depth rule, true gives the block parameters that decay the per-step decay s·λ·m_L^(α−1) (CompleteP
exact: λ_torch = λ·m_L^(α−1)/(k·ρ_r)); false keeps s·λ; a no-op at blocks = base_blocks and in the
modes that follow the lr already (coupled, width_invariant)."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_same_run, cfgs, train_single, train_stacked
from mupbench import parametrization as P
from mupbench.assemble import build_models, build_run, describe_params, make_plan
from mupbench.config import ConfigError, compose
from mupbench.data import DataSpec
from mupbench.records import fingerprint

CPU = ["train.device=cpu"]
TOKENS = ["model=transformer", "dataset=synthetic_tokens", "train.batch_size=8"]
FOLLOW = "parametrization.depth_wd_follows_lr=true"


def plan_of(*overrides):
    cfg = compose([*CPU, *TOKENS, *overrides])
    model, base = build_models(cfg, DataSpec("lm", (32,), 64), torch.device("meta"))
    return cfg, make_plan(cfg, model, base)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_lambda_torch_of_every_block_parameter_is_completep_exact(alpha):
    k, lam, zeta, mL = 1e-3, 0.1, 2, 2.0
    over = ["model.blocks=12", "model.base_blocks=6", f"model.width_mult={zeta}", f"parametrization.depth_alpha={alpha}",
            f"optimizer.weight_decay={lam}", "optimizer.wd_mode=independent", f"optimizer.lr={k}", "optimizer.wd_on_vectors=true"]
    cfg, plan = plan_of(*over, FOLLOW)
    _, off = plan_of(*over)
    table = {line.split()[0]: line.split() for line in describe_params(cfg).splitlines()[2:]}
    assert sum(e.block for e in plan) == 12 * 9
    for e, f in zip(plan, off):
        lt, lt_off = P.torch_weight_decay(e, lam, "independent", k), P.torch_weight_decay(f, lam, "independent", k)
        assert lt_off == pytest.approx(lam / (k * e.lr_mult), rel=1e-12), e.name  # false: s·λ, today's
        want = lam * mL ** (alpha - 1) / (k * e.lr_mult) if e.block else lam / (k * e.lr_mult)
        assert lt == pytest.approx(want, rel=1e-12), e.name
        assert table[e.name][-1] == f"{want:.4g}", e.name  # print_params shows it
        # the per-step decay γ·λ_torch (s = 1): λ·m_L^(α−1) for blocks, λ elsewhere
        assert k * e.lr_mult * lt == pytest.approx(lam * (mL ** (alpha - 1) if e.block else 1.0), rel=1e-12)
    if alpha == 0.5:
        assert any(P.torch_weight_decay(e, lam, "independent", k) != P.torch_weight_decay(f, lam, "independent", k)
                   for e, f in zip(plan, off))


def test_two_steps_with_a_known_gradient_are_the_closed_form():
    """θ2 = θ0(1−d)² − γu(1−d) − γu, d = λ·m_L^(α−1) per step, γ = k·ρ, u = g/(|g|+ε) (Adam, constant g)."""
    k, lam, alpha, mL = 0.01, 0.1, 0.5, 4.0
    cfg = compose([*CPU, *TOKENS, "model.blocks=8", "model.base_blocks=2", f"parametrization.depth_alpha={alpha}",
                   f"optimizer.weight_decay={lam}", "optimizer.wd_mode=independent", f"optimizer.lr={k}", "train.dtype=float64",
                   "model.width_mult=2", FOLLOW])
    run = build_run(cfg)
    name = "blocks.3.mlp.fc1.weight"
    entry = next(e for e in run.plan if e.name == name)
    p = dict(run.model.named_parameters())[name]
    theta0 = p.detach().clone()
    g = torch.linspace(-1, 1, p.numel(), dtype=p.dtype).view_as(p) + 0.05
    for _ in range(2):
        run.optimizer.zero_grad(set_to_none=True)
        for q in run.model.parameters():
            q.grad = torch.zeros_like(q)
        p.grad = g.clone()
        run.optimizer.step()
    gamma, d = k * entry.lr_mult, lam * mL ** (alpha - 1)
    assert entry.lr_mult == pytest.approx(0.5 * mL ** (alpha - 1))
    u = g / (g.abs() + 1e-8)
    want = theta0 * (1 - d) ** 2 - gamma * u * (1 - d) - gamma * u
    assert torch.allclose(p.detach(), want, rtol=1e-12, atol=1e-15)
    assert not torch.allclose(p.detach(), theta0 * (1 - lam) ** 2 - gamma * u * (1 - lam) - gamma * u, rtol=1e-6)


def test_identities_and_no_ops():
    """blocks = base_blocks: true = false; coupled and width_invariant: true = false (they follow the
    lr already); under sp the block lr has no depth factor, so neither has the decay."""
    wd = ["optimizer.weight_decay=0.1", "parametrization.depth_alpha=1.0"]
    for extra in (["model.blocks=6", "optimizer.wd_mode=independent", "parametrization.depth_alpha=0.5"],
                  ["model.blocks=12", "optimizer.wd_mode=coupled"], ["model.blocks=12", "optimizer.wd_mode=width_invariant"],
                  ["model.blocks=12", "optimizer.wd_mode=independent", "parametrization=sp"]):
        assert plan_of(*wd, *extra, FOLLOW)[1] == plan_of(*wd, *extra)[1], extra
    assert plan_of(*wd, "model.blocks=12", "optimizer.wd_mode=independent", "parametrization.depth_alpha=0.5", FOLLOW)[1] != \
        plan_of(*wd, "model.blocks=12", "optimizer.wd_mode=independent", "parametrization.depth_alpha=0.5")[1]


def test_fingerprint_and_validation():
    base = [*CPU, *TOKENS, "optimizer.wd_mode=independent", "parametrization.depth_alpha=0.5", "model.blocks=12"]
    assert fingerprint(compose([*base, FOLLOW])) != fingerprint(compose(base))
    assert fingerprint(compose([*base, "parametrization.depth_wd_follows_lr=false"])) == fingerprint(compose(base))
    with pytest.raises(ConfigError, match=r"^parametrization.depth_wd_follows_lr: model=mlp has no residual blocks"):
        compose([*CPU, FOLLOW])


def test_batched_members_equal_their_single_runs_with_it_on():
    base = [*CPU, "train.eval_batches=2", "train.steps=12", "train.eval_every=4", "train.batch_size=4", "model=transformer",
            "model.blocks=4", "model.base_blocks=1", "dataset=synthetic_tokens", "dataset.n_train=2000", "dataset.n_val=500",
            "dataset.n_test=100", "parametrization.depth_alpha=0.5", "optimizer.weight_decay=0.5", "optimizer.wd_mode=independent",
            "schedule=cosine", "schedule.warmup_frac=0.2", FOLLOW]
    configs = cfgs(base, [(0, 3e-3), (1, 1e-2)])
    outs, _ = train_stacked([build_run(c) for c in configs])
    for cfg, out in zip(configs, outs):
        assert_same_run(train_single(build_run(cfg)), out)
    off = train_single(build_run(compose([*base[:-1], "seed=0", "optimizer.lr=0.003"])))
    assert off.history[-1]["train_loss"] != outs[0].history[-1]["train_loss"]  # the switch changed the run
