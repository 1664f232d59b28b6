"""The engine against SPEC §1: inferred roles, the rule table's init stds and learning rates,
and μP ≡ SP bitwise at the base width."""

from __future__ import annotations

import math

import pytest
import torch

from mupbench import parametrization as P
from mupbench.assemble import build_models, build_run, make_plan
from mupbench.data import DataSpec
from conftest import train_single as train

SPEC = DataSpec("regression", (8,), 1)
C, K = 0.1, 1e-3


def mlp_plan(tiny_cfg, zeta, param="mup", optimizer="adam"):
    cfg = tiny_cfg(f"model.width_mult={zeta}", f"parametrization={param}", f"optimizer={optimizer}", f"optimizer.lr={K}")
    model, base = build_models(cfg, SPEC, torch.device("meta"))
    return {e.name: e for e in make_plan(cfg, model, base)}


def test_roles_of_the_mlp(tiny_cfg):
    plan = mlp_plan(tiny_cfg, 2)
    assert {n: e.role for n, e in plan.items()} == {
        "0.weight": "input", "0.bias": "input", "2.weight": "hidden", "2.bias": "input",
        "4.weight": "output", "4.bias": "scalar",
    }
    assert (plan["0.weight"].fan_in, plan["0.weight"].fan_out) == (8, 32)
    assert (plan["4.weight"].base_fan_in, plan["4.weight"].fan_in) == (16, 32)


@pytest.mark.parametrize("zeta", [2, 4])
def test_adam_rules_match_spec_table(tiny_cfg, zeta):
    n, n0 = 16 * zeta, 16
    sp, mup = mlp_plan(tiny_cfg, zeta, "sp"), mlp_plan(tiny_cfg, zeta, "mup")
    # init std: c/√n everywhere under SP; μP differs only at the readout, c·√n0/n
    assert sp["0.weight"].init_std == pytest.approx(C / math.sqrt(8))
    assert sp["2.weight"].init_std == pytest.approx(C / math.sqrt(n))
    assert sp["4.weight"].init_std == pytest.approx(C / math.sqrt(n))
    assert mup["0.weight"].init_std == sp["0.weight"].init_std
    assert mup["2.weight"].init_std == sp["2.weight"].init_std
    assert mup["4.weight"].init_std == pytest.approx(C * math.sqrt(n0) / n)
    assert mup["4.weight"].init_std / sp["4.weight"].init_std == pytest.approx(1 / math.sqrt(zeta))
    for name in ("0.bias", "2.bias", "4.bias"):
        assert (sp[name].init, mup[name].init) == ("zeros", "zeros")
    # lr: k everywhere under SP; μP hidden and readout k·n0/n, vectors k
    assert {e.lr_mult for e in sp.values()} == {1.0}
    assert {n_: e.lr_mult for n_, e in mup.items()} == {
        "0.weight": 1.0, "0.bias": 1.0, "2.weight": 1 / zeta, "2.bias": 1.0, "4.weight": 1 / zeta, "4.bias": 1.0,
    }


@pytest.mark.parametrize("zeta", [2, 4])
def test_sgd_rules_match_spec_table(tiny_cfg, zeta):
    mup = mlp_plan(tiny_cfg, zeta, "mup", "sgd")
    # input and vectors k·m/m0, hidden k, output k·n0/n (the readout bias has m = m0 = 1)
    assert {n_: e.lr_mult for n_, e in mup.items()} == {
        "0.weight": zeta, "0.bias": zeta, "2.weight": 1.0, "2.bias": zeta, "4.weight": 1 / zeta, "4.bias": 1.0,
    }
    assert {e.lr_mult for e in mlp_plan(tiny_cfg, zeta, "sp", "sgd").values()} == {1.0}


def test_ntk_and_mf_rows(tiny_cfg):
    ntk, mf = mlp_plan(tiny_cfg, 4, "ntk"), mlp_plan(tiny_cfg, 4, "mf")
    assert ntk["2.weight"].lr_mult == pytest.approx(0.5) and ntk["4.weight"].lr_mult == pytest.approx(0.5)
    assert ntk["0.weight"].lr_mult == 1.0  # fan-in 8 does not grow
    assert ntk["4.weight"].init_std == pytest.approx(C / math.sqrt(64))
    assert mf["2.weight"].lr_mult == pytest.approx(2.0) and mf["4.weight"].lr_mult == 1.0
    assert mf["4.weight"].init_std == pytest.approx(C * 4 / 64)


def test_every_rule_is_identity_at_the_base_width(tiny_cfg):
    for param in P.PARAMETRIZATIONS:
        for e in mlp_plan(tiny_cfg, 1, param).values():
            assert e.lr_mult == 1.0 and e.role in ("input", "scalar")
            if e.init == "normal":
                assert e.init_std == pytest.approx(C / math.sqrt(e.fan_in))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_mup_equals_sp_bitwise_at_base_width(tiny_cfg, optimizer):
    runs = {}
    for param in ("sp", "mup"):
        cfg = tiny_cfg(f"parametrization={param}", f"optimizer={optimizer}", "train.steps=20", "train.eval_every=1")
        run = build_run(cfg)
        init = {n: p.detach().clone() for n, p in run.model.named_parameters()}
        runs[param] = (init, train(run).history, run.model)
    (init_sp, hist_sp, model_sp), (init_mup, hist_mup, model_mup) = runs["sp"], runs["mup"]
    assert all(torch.equal(init_sp[n], init_mup[n]) for n in init_sp)
    assert len(hist_sp) == 21
    assert [h["train_loss"] for h in hist_sp] == [h["train_loss"] for h in hist_mup]
    assert [h["val_loss"] for h in hist_sp] == [h["val_loss"] for h in hist_mup]
    assert all(torch.equal(a, b) for a, b in zip(model_sp.parameters(), model_mup.parameters()))


def test_mup_differs_from_sp_above_base_width(tiny_cfg):
    """The counterpart of the bitwise test: at ζ = 2 the two must not coincide."""
    losses = {}
    for param in ("sp", "mup"):
        losses[param] = [h["train_loss"] for h in train(build_run(tiny_cfg("model.width_mult=2", f"parametrization={param}"))).history]
    assert losses["sp"][0] != losses["mup"][0]


def test_param_groups_carry_the_plan(tiny_cfg):
    run = build_run(tiny_cfg("model.width_mult=4", "optimizer.lr=0.01"))
    lrs = {name: g["lr"] for g in run.optimizer.param_groups for name in g["names"]}
    assert lrs == pytest.approx({"0.weight": 0.01, "0.bias": 0.01, "2.weight": 0.0025, "2.bias": 0.01, "4.weight": 0.0025, "4.bias": 0.01})


def test_attention_scale_rules():
    assert P.attention_scale("default", "sp", 16, 4, 128) == pytest.approx(1 / 4)
    assert P.attention_scale("default", "mup", 16, 4, 128) == pytest.approx(2 / 16)
    assert P.attention_scale("default", "mup", 4, 4, 32) == P.attention_scale("default", "sp", 4, 4, 32)
    # "paper" replicates the paper's code for each parametrization: SP keeps 1/√d_head, μP 1/d_model
    assert P.attention_scale("paper", "mup", 4, 4, 32) == pytest.approx(1 / 32)
    assert P.attention_scale("paper", "sp", 4, 4, 32) == P.attention_scale("sp", "sp", 4, 4, 32) == 0.5


def test_paper_attention_scale_through_the_config(tiny_cfg):
    from mupbench.assemble import attention_scale

    vit = ("model=vit", "dataset=synthetic_images", "parametrization.attn_scale=paper")
    assert attention_scale(tiny_cfg(*vit, "parametrization=sp")) == 0.5
    assert attention_scale(tiny_cfg(*vit, "parametrization=mup", "model.width_mult=2")) == pytest.approx(1 / 64)


def test_print_params_table(cli):
    out = cli("print_params=true", "model.width_mult=4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["parameter", "shape", "kind", "role", "fan_in", "fan_out", "init", "lr", "eps", "wd"]
    row = next(line.split() for line in lines if line.startswith("4.weight"))
    assert row[1:4] == ["1×64", "weight", "output"] and row[-3:] == ["0.00025", "1e-08", "0"]
    assert "4,801 parameters" in out.stdout
    assert "completed" not in out.stdout  # the table only: nothing was trained
