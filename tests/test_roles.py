"""Role inference from shapes (mupbench/roles.py): every layer kind torch has, free and tied
parameters, modules the engine does not know, and one-line structure mismatches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mupbench import parametrization as P
from mupbench.roles import infer_roles
from mupbench.rules import ConfigError


def pair(make):
    """The model at ζ = 2 (width 16) and its twin at ζ = 1 (width 8) on the meta device."""
    with torch.device("meta"):
        return make(16), make(8)


def roles(make, **kw):
    model, base = pair(make)
    return {e.name: e for e in infer_roles(model, base, **kw)}


class Free(nn.Module):
    """Parameters of a module the engine does not know."""

    def __init__(self, d):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, d))  # a token: leading 1
        self.pos = nn.Parameter(torch.zeros(1, 5, d))
        self.inp = nn.Parameter(torch.zeros(d, 3))  # (out, in): only out grows -> input
        self.mix = nn.Parameter(torch.zeros(d, d))  # both grow -> hidden
        self.readout = nn.Parameter(torch.zeros(7, d))  # only in grows -> output
        self.gain = nn.Parameter(torch.ones(d))
        self.shift = nn.Parameter(torch.zeros(d))
        self.temperature = nn.Parameter(torch.ones(()))


def test_layers_with_known_layouts():
    def make(d):
        return nn.ModuleDict({
            "lin": nn.Linear(3, d), "hid": nn.Linear(d, d), "out": nn.Linear(d, 2),
            "c1": nn.Conv1d(3, d, 3), "c2": nn.Conv2d(d, d, 3), "c3": nn.Conv3d(d, 4, 3),
            "ct": nn.ConvTranspose2d(d, 4, 3), "emb": nn.Embedding(11, d), "bag": nn.EmbeddingBag(11, d),
        })
    r = roles(make)
    expect = {"lin.weight": "input", "hid.weight": "hidden", "out.weight": "output", "c1.weight": "input",
              "c2.weight": "hidden", "c3.weight": "output", "ct.weight": "output", "emb.weight": "input", "bag.weight": "input"}
    for name, role in expect.items():
        assert (r[name].role, r[name].inferred) == (role, False), name
    assert (r["c2.weight"].fan_in, r["c2.weight"].fan_out) == (16, 16)
    assert roles(make, kernel_fan_in=True)["c2.weight"].fan_in == 16 * 9
    assert (r["ct.weight"].fan_in, r["ct.weight"].fan_out) == (16, 4)  # ConvTranspose: (in, out, k)
    assert (r["out.bias"].kind, r["out.bias"].role) == ("bias", "scalar")
    assert (r["emb.weight"].kind, r["emb.weight"].fan_in) == ("embedding", 11)


@pytest.mark.parametrize("norm", [
    lambda d: nn.LayerNorm(d), lambda d: nn.RMSNorm(d), lambda d: nn.GroupNorm(4, d), lambda d: nn.BatchNorm1d(d),
    lambda d: nn.BatchNorm2d(d), lambda d: nn.BatchNorm3d(d), lambda d: nn.InstanceNorm2d(d, affine=True),
    lambda d: nn.SyncBatchNorm(d)], ids=["layer", "rms", "group", "bn1", "bn2", "bn3", "instance", "syncbn"])
def test_every_norm_layer_is_a_gain_and_a_shift_and_its_statistics_are_buffers(norm):
    r = roles(norm)
    assert r["weight"].kind == "norm_weight" and r["weight"].role == "input" and not r["weight"].inferred
    if "bias" in r:
        assert r["bias"].kind == "norm_bias"
    model, base = pair(norm)
    assert set(r) == {n for n, _ in model.named_parameters()}  # running_mean/var, num_batches_tracked: no role
    plan = {e.name: e for e in P.make_plan(model, base, "mup", "adam", 0.1)}
    assert (plan["weight"].init, plan["weight"].lr_mult) == ("ones", 1.0)


def test_free_parameters_follow_the_documented_rule_and_are_marked_inferred():
    r = roles(Free)
    expect = {"cls": ("token", "input"), "pos": ("token", "input"), "inp": ("weight", "input"), "mix": ("weight", "hidden"),
              "readout": ("weight", "output"), "gain": ("norm_weight", "input"), "shift": ("bias", "input"),
              "temperature": ("bias", "scalar")}
    assert {n: (e.kind, e.role) for n, e in r.items()} == expect
    assert all(e.inferred for e in r.values())
    model, base = pair(Free)
    table = P.format_plan(P.make_plan(model, base, "mup", "adam", 0.1), 1e-3)
    assert "output (inferred)" in table and "hidden (inferred)" in table


def test_multihead_attention_in_proj_is_hidden():
    r = roles(lambda d: nn.MultiheadAttention(d, 4))
    assert (r["in_proj_weight"].role, r["in_proj_weight"].inferred) == ("hidden", False)
    assert (r["in_proj_weight"].fan_in, r["in_proj_weight"].fan_out) == (16, 48)
    assert r["in_proj_bias"].kind == "bias" and not r["in_proj_bias"].inferred
    assert r["out_proj.weight"].role == "hidden"


class Tied(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.emb = nn.Embedding(10, d)
        self.body = nn.Linear(d, d)
        self.head = nn.Linear(d, 10, bias=False)
        self.head.weight = self.emb.weight


def test_a_tied_tensor_has_one_role_and_one_optimizer_entry():
    model, base = pair(Tied)
    plan = P.make_plan(model, base, "mup", "adam", 0.1)
    assert [e.name for e in plan] == ["emb.weight", "body.weight", "body.bias"]
    tied = plan[0]
    assert (tied.kind, tied.role, tied.tied, tied.init_std) == ("embedding", "input", ("head.weight",), P.TOKEN_STD)
    real = Tied(16)
    groups = P.param_groups(real, P.make_plan(real, base, "mup", "adam", 0.1), 1e-3)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == 3
    assert "(tied: head.weight)" in P.format_plan(plan, 1e-3)


def test_a_model_tied_at_one_width_only_is_refused():
    class Sometimes(Tied):
        def __init__(self, d):
            super().__init__(d)
            if d == 8:
                self.head.weight = nn.Parameter(torch.empty(10, d))
    model, base = pair(Sometimes)
    with pytest.raises(ConfigError, match="emb.weight is tied to"):
        infer_roles(model, base, key="model.factory")


@pytest.mark.parametrize("make, match", [
    (lambda d: nn.Sequential(*[nn.Linear(d, d) for _ in range(d // 8)]), "parameter 1.weight exists at this width but not at ζ = 1"),
    (lambda d: nn.Linear(4, 128 // d), "parameter weight has dimension 0 of size 8 at this width but 16 at ζ = 1"),
    (lambda d: nn.ParameterDict({"w": nn.Parameter(torch.empty(d, d) if d == 16 else torch.empty(d))}), "w is \\(16, 16\\) at this width but \\(8,\\)"),
], ids=["extra-layer", "shrinks", "rank"])
def test_structure_mismatches_are_one_line_naming_the_parameter(make, match):
    model, base = pair(make)
    with pytest.raises(ConfigError, match=match) as e:
        infer_roles(model, base, key="model.factory")
    assert e.value.key == "model.factory" and "\n" not in str(e.value)
