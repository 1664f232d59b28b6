"""model=custom (mupbench/models/custom.py): any factory(width_mult, spec, **kwargs) -> nn.Module;
the custom MLP is the built-in MLP bitwise (single and batched); bad factories are one line,
exit status 2 and nothing written; what the factory is given (kwargs, attn_scale, readout_mult)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY, train_single, train_stacked
from mupbench.assemble import build_run, describe_params
from mupbench.config import compose
from mupbench.models import custom
from mupbench.records import RESULT
from mupbench.rules import ConfigError
from test_cli import cwd, refused  # noqa: F401  (cwd: a fixture)

HERE = Path(__file__).resolve().parent
MLP = ["dataset=synthetic", "train.steps=30", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu"]
CUSTOM_MLP = ["model=custom", "model.factory=examples.mlp:build", "model.base_width=16"]


@pytest.fixture(autouse=True)
def factories(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # custom_factories.py


def curve(outcome):
    return [{k: v for k, v in h.items() if k != "elapsed_s"} for h in outcome.history]


def params(run):
    return {n: p.detach().clone() for n, p in run.model.named_parameters()}


@pytest.mark.parametrize("param", ["sp", "mup"])
def test_the_custom_mlp_trains_as_the_builtin_mlp_bitwise(param):
    """The oracle: examples/mlp.py through model=custom = model=mlp, same seed, same numbers."""
    zeta = ["model.width_mult=4", f"parametrization={param}", "seed=3"]
    builtin, mine = build_run(compose([*MLP, "model=mlp", *zeta])), build_run(compose([*MLP, *CUSTOM_MLP, *zeta]))
    assert [(e.name, e.role, e.init_std, e.lr_mult) for e in builtin.plan] == [(e.name, e.role, e.init_std, e.lr_mult) for e in mine.plan]
    a, b = train_single(builtin), train_single(mine)
    assert curve(a) == curve(b)
    pa, pb = params(builtin), params(mine)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)


def test_custom_mlp_members_are_the_builtin_members_bitwise():
    runs = {m: [build_run(compose([*MLP, *model, "model.width_mult=2", f"seed={s}", f"optimizer.lr={lr}"]))
                for s, lr in [(0, 1e-3), (1, 1e-2)]] for m, model in (("builtin", ["model=mlp"]), ("custom", CUSTOM_MLP))}
    (a, sa), (b, sb) = train_stacked(runs["builtin"]), train_stacked(runs["custom"])
    assert sa.mode == sb.mode == "bmm"
    assert [curve(o) for o in a] == [curve(o) for o in b]


def test_the_record_width_is_base_width_times_zeta(tmp_path):
    from mupbench.lifecycle import run_point

    rec = run_point(compose([*MLP, *CUSTOM_MLP, "model.width_mult=2", "train.steps=10"]), tmp_path / "r")
    assert rec["width"] == 32 and (tmp_path / "r" / RESULT).exists()


@pytest.mark.parametrize("factory, extra, key, words", [
    ("not_there.module:fn", [], "model.factory", "cannot import not_there.module:fn"),
    ("custom_factories:missing", [], "model.factory", "cannot import custom_factories:missing"),
    ("custom_factories:NOT_A_FUNCTION", [], "model.factory", "is a int object, not a callable"),
    ("custom_factories:no_spec", [], "model.factory", "does not fit its signature"),
    ("custom_factories:mlp", ["+model.kwargs.depth=3"], "model.factory", "unexpected keyword argument 'depth'"),
    ("custom_factories:not_a_module", [], "model.factory", "returned a str, not a torch.nn.Module"),
    ("custom_factories:grows_layers", [], "model.factory", "parameter 3.weight exists at this width but not at ζ = 1"),
    ("custom_factories:shrinks", [], "model.factory", "dimension 0 of size 8 at this width but 16 at ζ = 1"),
    ("custom_factories:raises", [], "model.factory", "raised RuntimeError: the factory broke"),
    ("custom_factories:fractional", ["model.width_mult=1.5", "model.base_width=2"], "model.width_mult", "sizes must be integers"),
    ("custom_factories:mlp", ["model.width_mult=1.5"], "model.width_mult", "set model.base_width"),
    ("custom_factories:mlp", ["+model.kwargs.width={a: 1}"], "model.kwargs", "plain values"),
    ("bad name", [], "model.factory", "package.module:function"),
], ids=lambda v: v if isinstance(v, str) and ":" not in v and " " not in v else None)
def test_a_bad_factory_is_one_line_exit_2_and_nothing_written(capsys, cwd, factory, extra, key, words):  # noqa: F811
    line = refused(capsys, cwd, "model=custom", f"model.factory={factory}", "dataset=synthetic", "model.width_mult=2", *extra)
    assert line.startswith(f"mupbench: error: {key}"), line
    assert words in line, line


def test_the_base_width_is_named_when_it_cannot_be_a_width():
    with pytest.raises(ConfigError, match="model.width_mult: .*set model.base_width to your model's width at ζ = 1"):
        compose([*MLP, "model=custom", "model.factory=custom_factories:mlp", "model.width_mult=2.5"])


def attention(width_mult, spec, d=16, heads=2, attn_scale=None, readout_mult=1.0):
    """A factory that takes both numbers and keeps them on the model, for the test to read."""
    n = int(d * width_mult)
    model = nn.Sequential(nn.Linear(math.prod(spec.input_shape), n), nn.Linear(n, spec.num_outputs))
    model.seen = (attn_scale, readout_mult)
    return model


def mha_without_scale(width_mult, spec):
    n = int(8 * width_mult)
    model = nn.Sequential(nn.Linear(math.prod(spec.input_shape), n), nn.Linear(n, spec.num_outputs))
    model.attn = nn.MultiheadAttention(n, 2)
    return model


@pytest.mark.parametrize("param, scale, mult", [("sp", 1 / math.sqrt(16), 1.0), ("mup", math.sqrt(8 / 16) / math.sqrt(16), 0.5),
                                                 ("ntk", math.sqrt(8 / 16) / math.sqrt(16), 1.0)])
def test_the_factory_gets_the_parametrizations_attention_scale_and_readout_multiplier(param, scale, mult):
    cfg = compose([*MLP, "model=custom", f"model.factory={__name__}:attention", "model.base_width=16", "model.width_mult=2",
                   f"parametrization={param}"])
    assert build_run(cfg).model.seen == (scale, mult)  # d_head 16 at ζ = 2, 8 at ζ = 1


def test_attention_scale_needs_heads_that_split_the_base_width():
    with pytest.raises(ConfigError, match="model.base_width: .* must split into 2 heads"):
        compose([*MLP, "model=custom", f"model.factory={__name__}:attention", "model.width_mult=2"])


def test_print_params_warns_when_attention_gets_no_scale():
    cfg = compose([*MLP, "model=custom", f"model.factory={__name__}:mha_without_scale", "model.width_mult=2"])
    text = describe_params(cfg)
    assert "attention, but" in text and "μP's 1/d_head logit scale is not applied" in text and "attn_scale" in text
    assert "in_proj_weight  3×" not in text and "attn.in_proj_weight" in text


def test_kwargs_reach_the_factory():
    cfg = compose([*MLP, "model=custom", "model.factory=custom_factories:mlp", "+model.kwargs.width=12", "model.width_mult=2"])
    assert build_run(cfg).model[0].out_features == 24
    assert custom.accepts(None)


def test_a_factory_file_in_the_current_directory_is_found(tmp_path, monkeypatch):
    """A console script's sys.path lacks the directory it runs in: a one-file module there is found."""
    (tmp_path / "my_one_file_model.py").write_text("from custom_factories import mlp\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    cfg = compose([*MLP, "model=custom", "model.factory=my_one_file_model:mlp", "model.width_mult=2"])
    assert build_run(cfg).model[0].out_features == 16
