"""The engine's axes beyond the paper (SPEC-AXES §1–§3): Adam ε per role, weight decay per role,
the depth rule — the plan's numbers against the tables, the ε column against measured gradients,
and every option an identity at the base."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mupbench import parametrization as P
from mupbench.assemble import build_models, build_run, describe_params, make_plan
from mupbench.config import ConfigError, compose
from mupbench.data import DataSpec
from mupbench.models.layers import Block

CPU = ["train.device=cpu"]
TOKENS = ["model=transformer", "dataset=synthetic_tokens", "train.batch_size=8"]
ZETAS = (1, 2, 4, 8)


def plan_of(*overrides, spec=None):
    cfg = compose([*CPU, *overrides])
    spec = spec or DataSpec("lm", (32,), 64) if "model=transformer" in overrides else spec or DataSpec("regression", (8,), 1)
    model, base = build_models(cfg, spec, torch.device("meta"))
    return {e.name: e for e in make_plan(cfg, model, base)}, model


def grad_rms_slopes(overrides: list[str], seeds) -> dict[str, tuple[float, float]]:
    """Per parameter: (log-log slope of its gradient RMS at init over ZETAS, the slope of its
    ε under eps_scaling=grad), the RMS pooled over ``seeds`` (each its own init and batch)."""
    rms, eps = {}, {}
    for zeta in ZETAS:
        sq: dict[str, list[float]] = {}
        for seed in seeds:
            run = build_run(compose([*CPU, *overrides, f"model.width_mult={zeta}", f"seed={seed}", "optimizer.eps_scaling=grad"]))
            x, y = run.train_sampler.next()
            run.loss_fn(run.model(x), y).backward()
            for name, p in run.model.named_parameters():
                sq.setdefault(name, []).append(p.grad.double().pow(2).mean().item())
        for e in run.plan:
            rms.setdefault(e.name, []).append(math.sqrt(np.mean(sq[e.name])))
            eps.setdefault(e.name, []).append(e.eps_mult)
    logz = np.log(ZETAS)
    return {n: (np.polyfit(logz, np.log(rms[n]), 1)[0], np.polyfit(logz, np.log(eps[n]), 1)[0]) for n in rms}


@pytest.mark.parametrize("setup, seeds", [
    (["train.batch_size=64"], range(6)),  # the MLP on synthetic regression data
    ([*TOKENS, "model.blocks=2"], range(3)),  # a tiny Transformer
    (["train.batch_size=64", "parametrization=sp"], range(6)),  # SP's column: ζ^-½ upstream of its c/√n readout
], ids=["mlp_mup", "transformer_mup", "mlp_sp"])
def test_eps_grad_column_follows_the_measured_gradient_scale(setup, seeds):
    """ε under eps_scaling=grad is the gradient's scale at init (SPEC-AXES §1): measured, every
    parameter's gradient RMS over ζ ∈ {1,2,4,8} has the slope of its ε within ±0.15 — ζ⁻¹ for
    every μP tensor upstream of the readout (the final LayerNorm included: its row is ε/ζ) and 1
    for the readout's weight and bias."""
    slopes = grad_rms_slopes(setup, seeds)
    for name, (measured, expected) in slopes.items():
        assert measured == pytest.approx(expected, abs=0.15), (name, measured, expected)
    want = {"output": 0.0, "scalar": 0.0}
    plan = {e.name: e for e in build_run(compose([*CPU, *setup, "model.width_mult=2"])).plan}
    for name, (_, expected) in slopes.items():
        if plan[name].role in want:
            assert expected == 0.0
        else:
            assert expected == pytest.approx(-0.5 if "parametrization=sp" in setup else -1.0)
    if "model=transformer" in setup:
        assert slopes["ln_f.weight"][1] == pytest.approx(-1.0)


def test_eps_table_1_1_on_the_mlp():
    plan, _ = plan_of("model.width_mult=4", "optimizer.eps_scaling=grad")
    lrp, _ = plan_of("model.width_mult=4", "optimizer.eps_scaling=lr_proportional")
    assert {n: e.eps_mult for n, e in plan.items()} == {"0.weight": 0.25, "0.bias": 0.25, "2.weight": 0.25, "2.bias": 0.25,
                                                       "4.weight": 1.0, "4.bias": 1.0}
    # [LIN]'s use_eps_scaling: the lr factors (input 1, hidden and output n0/n, vectors 1)
    assert {n: e.eps_mult for n, e in lrp.items()} == {"0.weight": 1.0, "0.bias": 1.0, "2.weight": 0.25, "2.bias": 1.0,
                                                      "4.weight": 0.25, "4.bias": 1.0}


@pytest.mark.parametrize("model", [[], TOKENS])
def test_every_axis_is_the_plain_plan_at_the_base(model):
    """ζ = 1: every ε mode is ε; blocks = base_blocks: every α is plain μP (same plan, residual
    multiplier exactly 1); the parameter groups are the default's."""
    depth = ["model.blocks=6"] if model else []
    plain, _ = plan_of(*model, *depth)
    for extra in (["optimizer.eps_scaling=grad"], ["optimizer.eps_scaling=lr_proportional"],
                  *([["parametrization.depth_alpha=1.0"], ["parametrization.depth_alpha=0.5"]] if model else [])):
        other, net = plan_of(*model, *depth, *extra)
        assert other == plain, extra
        assert all(b.residual_scale == 1.0 for b in net.modules() if isinstance(b, Block))
        assert {e.eps_mult for e in other.values()} == {1.0}


def table_3_1(e: P.ParamPlan, zeta: float, mL: float, alpha: float, k: float, eps: float, lam: float) -> tuple[float, float, float]:
    """SPEC-AXES Table 3.1 (Adam, eps_scaling=grad, wd_mode=width_invariant): (lr, ε, λ_torch)."""
    if e.name.startswith("blocks.") and e.kind == "weight":
        return k / zeta * mL ** (alpha - 1), eps / zeta * mL**-alpha, lam * zeta
    if e.name.startswith("blocks."):  # block biases and LayerNorms
        return k * mL ** (alpha - 1), eps / zeta * mL**-alpha, 0.0
    if e.name == "tok_emb.weight":
        return k, eps / zeta, lam
    if e.name.startswith("ln_f."):
        return k, eps / zeta, 0.0
    if e.name == "head.weight":
        return k / zeta, eps, lam * zeta
    assert e.name == "head.bias"  # fixed-size: the readout's bias
    return k, eps, 0.0


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_depth_table_3_1_for_every_parameter_of_a_12_block_transformer(alpha):
    k, eps, lam, zeta = 1e-3, 1e-8, 0.1, 2
    over = [*CPU, *TOKENS, "model.blocks=12", "model.base_blocks=6", f"model.width_mult={zeta}", f"parametrization.depth_alpha={alpha}",
            "optimizer.eps_scaling=grad", f"optimizer.weight_decay={lam}", "optimizer.wd_mode=width_invariant", f"optimizer.lr={k}"]
    cfg = compose(over)
    model, base = build_models(cfg, DataSpec("lm", (32,), 64), torch.device("meta"))
    plan = make_plan(cfg, model, base)
    assert sum(e.block for e in plan) == 12 * 9 and {e.name.split(".")[0] for e in plan if e.block} == {"blocks"}
    table = {line.split()[0]: line.split() for line in describe_params(cfg).splitlines()[2:] if line.split()[0] in {e.name for e in plan}}
    for e in plan:
        lr, ep, wd = table_3_1(e, zeta, 2.0, alpha, k, eps, lam)
        assert (k * e.lr_mult, eps * e.eps_mult, P.torch_weight_decay(e, lam, "width_invariant", k)) == \
            (pytest.approx(lr, rel=1e-12), pytest.approx(ep, rel=1e-12), pytest.approx(wd, rel=1e-12)), e.name
        assert table[e.name][-3:] == [f"{lr:.4g}", f"{ep:.4g}", f"{wd:.4g}"], e.name  # print_params shows them
    assert {b.residual_scale for b in model.modules() if isinstance(b, Block)} == {2.0**-alpha}


def test_depth_with_sp_scales_the_residuals_only():
    sp, _ = plan_of(*TOKENS, "parametrization=sp", "model.blocks=12", "model.width_mult=2")
    sp_depth, net = plan_of(*TOKENS, "parametrization=sp", "model.blocks=12", "model.width_mult=2", "parametrization.depth_alpha=1.0")
    assert sp_depth == sp
    assert {b.residual_scale for b in net.modules() if isinstance(b, Block)} == {0.5}


def test_the_residual_multiplier_scales_both_branches():
    torch.manual_seed(0)
    cfg = compose([*CPU, *TOKENS, "model.blocks=1"]).model
    block, plain = Block(cfg, 32, None, causal=True, residual_scale=0.25), Block(cfg, 32, None, causal=True)
    plain.load_state_dict(block.state_dict())
    for p in block.parameters():  # LayerNorm gains and biases away from 1 and 0, so nothing cancels
        torch.nn.init.normal_(p, std=0.3)
    plain.load_state_dict(block.state_dict())
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        x1 = x + 0.25 * block.attn(block.ln1(x))
        want = x1 + 0.25 * block.mlp(block.ln2(x1))
        assert torch.allclose(block(x), want, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(block(x), plain(x), atol=1e-3)
        # each branch alone: zeroing the other's output weights leaves x + r·branch
        y = x + 0.25 * block.attn(block.ln1(x))
        block.mlp.fc2.weight.zero_(), block.mlp.fc2.bias.zero_()
        assert torch.allclose(block(x), y, rtol=1e-6, atol=1e-6)


def test_depth_and_axes_are_validated():
    with pytest.raises(ConfigError, match="parametrization.depth_alpha: model=mlp has no residual blocks"):
        compose([*CPU, "parametrization.depth_alpha=1.0"])
    with pytest.raises(ConfigError, match="parametrization.depth_alpha"):
        compose([*CPU, *TOKENS, "parametrization=ntk", "parametrization.depth_alpha=1.0"])
    with pytest.raises(ConfigError, match="parametrization.depth_alpha"):
        compose([*CPU, *TOKENS, "optimizer=sgd", "parametrization.depth_alpha=1.0"])
    with pytest.raises(ConfigError, match="parametrization.depth_alpha: 0.7 is not one of"):
        compose([*CPU, *TOKENS, "parametrization.depth_alpha=0.7"])
    with pytest.raises(ConfigError, match="model.base_blocks"):
        compose([*CPU, *TOKENS, "model.base_blocks=0"])
    with pytest.raises(ConfigError, match="optimizer.eps_scaling"):
        compose([*CPU, "optimizer.eps_scaling=sqrt"])
    with pytest.raises(ConfigError, match="optimizer.weight_decay"):
        compose([*CPU, "optimizer.weight_decay=-1"])
    with pytest.raises(ConfigError, match="optimizer.a"):
        compose([*CPU, "optimizer=adam_atan2", "optimizer.a=0"])
    compose([*CPU, "optimizer=adam_atan2", "parametrization=ntk"])  # Adam's rule rows, all four parametrizations
