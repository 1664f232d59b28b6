"""The VGG, ViT and Transformer LM against SPEC §2: parameter counts at every swept width (built on
the meta device, checked against closed forms derived here from the SPEC's description), shapes,
dropout, causality, the attention logit scale, and what the parametrization engine makes of them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mupbench import parametrization as P
from mupbench.data import DataSpec
from mupbench.models import transformer, vgg, vit
from mupbench.models.layers import SelfAttention, sinusoids

CONF = Path(__file__).resolve().parents[1] / "conf"

IMAGES = DataSpec("classification", (3, 32, 32), 10)
TOKENS = DataSpec("lm", (128,), 50257)
V = TOKENS.num_outputs


def count(module, spec, **fields) -> int:
    with torch.device("meta"):
        model = module.build(module.Config(**fields), spec, None)
    return sum(p.numel() for p in model.parameters())


def powers_of_two(top: int) -> list[int]:
    return [2**i for i in range(int(math.log2(top)) + 1)]


# Closed forms, from the SPEC's description rather than from the code.
def vgg_params(zeta: int) -> int:
    # c = 4ζ. Convs 3→c, c→2c, 2c→4c, 4c→4c, 4c→8c, 8c→8c: 9·(3c + 122c²) weights, 27c biases.
    # Head 32c→5c, 5c→5c, 5c→10: 185c² + 50c weights, 10c + 10 biases.
    c = 4 * zeta
    return 1283 * c**2 + 114 * c + 10


def vit_params(zeta: int, out_proj: bool = False) -> int:
    # d = 32ζ. Patch conv 48d, class token d; per block QKV 3d², MLP 2d² + 2d, two LayerNorms 4d
    # (+ d² with W_O); final LayerNorm 2d; head 10d + 10.
    d = 32 * zeta
    per_block = (6 if out_proj else 5) * d**2 + 6 * d
    return 6 * per_block + 48 * d + d + 2 * d + 10 * d + 10


def lm_params(zeta: int, out_proj: bool = False) -> int:
    # d = 32ζ. Embedding Vd; per block QKV 3d², MLP 8d² + 5d, two LayerNorms 4d (+ d² with W_O);
    # final LayerNorm 2d; head Vd + V.
    d = 32 * zeta
    per_block = (12 if out_proj else 11) * d**2 + 9 * d
    return V * d + 6 * per_block + 2 * d + V * d + V


@pytest.mark.parametrize("zeta", powers_of_two(128))
def test_vgg_parameter_count(zeta):
    assert count(vgg, IMAGES, width_mult=zeta) == vgg_params(zeta)


@pytest.mark.parametrize("zeta", powers_of_two(128))
def test_vit_parameter_count(zeta):
    assert count(vit, IMAGES, width_mult=zeta) == vit_params(zeta)
    d = 32 * zeta
    assert count(vit, IMAGES, width_mult=zeta, attn_out_proj=True) == vit_params(zeta) + 6 * d * d


@pytest.mark.parametrize("zeta", powers_of_two(32))
def test_transformer_parameter_count(zeta):
    assert count(transformer, TOKENS, width_mult=zeta) == lm_params(zeta)
    d = 32 * zeta
    with_wo = count(transformer, TOKENS, width_mult=zeta, attn_out_proj=True)
    assert with_wo == lm_params(zeta, out_proj=True) == lm_params(zeta) + 6 * d * d


def test_spec_endpoints():
    """The SPEC's table, digit for digit, for the built models and for the closed forms."""
    assert count(vgg, IMAGES) == 20_994 and count(vgg, IMAGES, width_mult=128) == 336_389_130
    assert count(vit, IMAGES) == 33_834 and count(vit, IMAGES, width_mult=128) == 503_713_802
    assert count(transformer, TOKENS) == 3_336_081 and count(transformer, TOKENS, width_mult=32) == 172_239_953
    assert vgg_params(1) == 20_994 and vgg_params(128) == 336_389_130
    assert vit_params(1) == 33_834 and vit_params(128) == 503_713_802
    assert lm_params(1) == 3_336_081 and lm_params(32) == 172_239_953
    assert lm_params(32, out_proj=True) == 178_531_409  # the SPEC's "178.4M"


def test_readable_names():
    names = {n for n, _ in vit.build(vit.Config(), IMAGES, None).named_parameters()}
    assert {"patch.weight", "cls_token", "blocks.0.ln1.weight", "blocks.0.attn.qkv.weight",
            "blocks.5.mlp.fc2.bias", "ln_f.weight", "head.weight"} <= names
    names = {n for n, _ in transformer.build(transformer.Config(), TOKENS, None).named_parameters()}
    assert {"tok_emb.weight", "blocks.0.attn.qkv.weight", "head.bias"} <= names
    names = {n for n, _ in vgg.build(vgg.Config(), IMAGES, None).named_parameters()}
    assert {"stages.0.0.weight", "stages.3.1.bias", "fc1.weight", "fc2.weight", "head.weight"} <= names


def test_no_buffers():
    """Positions are recomputed, not stored: a meta-built model materialises fully from parameters."""
    for module, spec in ((vit, IMAGES), (transformer, TOKENS)):
        assert not list(module.build(module.Config(), spec, None).buffers())


def images(batch=4):
    return torch.randn(batch, *IMAGES.input_shape, generator=torch.Generator().manual_seed(0)) * 50 + 128


def tokens(batch=2, length=128):
    return torch.randint(V, (batch, length), generator=torch.Generator().manual_seed(0))


def test_output_shapes():
    torch.manual_seed(0)
    assert vgg.build(vgg.Config(), IMAGES, None)(images()).shape == (4, 10)
    assert vit.build(vit.Config(), IMAGES, None)(images()).shape == (4, 10)
    assert transformer.build(transformer.Config(), TOKENS, None)(tokens()).shape == (2, 128, V)
    assert transformer.build(transformer.Config(), TOKENS, None)(tokens(length=17)).shape == (2, 17, V)


def test_lm_rejects_sequences_past_its_context():
    model = transformer.build(transformer.Config(), DataSpec("lm", (8,), 100), None)
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize(
    "model, x",
    [
        (lambda: vgg.build(vgg.Config(), IMAGES, None), images),
        (lambda: vit.build(vit.Config(), IMAGES, None), images),
        (lambda: transformer.build(transformer.Config(dropout=0.1), TOKENS, None), lambda: tokens(length=16)),
    ],
    ids=["vgg", "vit", "transformer"],
)
def test_dropout_only_in_train_mode(model, x):
    torch.manual_seed(0)
    net, batch = model(), x()
    net.train()
    assert not torch.equal(net(batch), net(batch))
    net.eval()
    assert torch.equal(net(batch), net(batch))


def test_default_dropout():
    assert vgg.Config().dropout == 0.5 and vit.Config().dropout == 0.1 and transformer.Config().dropout == 0.0


def test_lm_is_causal():
    torch.manual_seed(0)
    model = transformer.build(transformer.Config(), TOKENS, None).eval()
    ids = tokens(length=32)
    changed = ids.clone()
    changed[:, 20] = (changed[:, 20] + 1) % V
    a, b = model(ids), model(changed)
    assert torch.equal(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_vit_is_not_causal():
    """The class token sits first, so it must see every patch."""
    torch.manual_seed(0)
    model = vit.build(vit.Config(), IMAGES, None).eval()
    x = images()
    y = x.clone()
    y[:, :, -4:, -4:] += 100.0  # only the last patch changes
    assert not torch.allclose(model(x), model(y))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_reference(causal):
    torch.manual_seed(0)
    d, heads, T, scale = 8, 2, 5, 0.37
    attn = SelfAttention(d, heads, scale, causal, out_proj=False)
    x = torch.randn(3, T, d)
    q, k, v = (t.view(3, T, heads, d // heads).transpose(1, 2) for t in attn.qkv(x).split(d, dim=-1))
    logits = q @ k.transpose(-2, -1) * scale
    if causal:
        logits = logits.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    expected = (logits.softmax(-1) @ v).transpose(1, 2).reshape(3, T, d)
    torch.testing.assert_close(attn(x), expected)


@pytest.mark.parametrize("module, spec, x", [(vit, IMAGES, images), (transformer, TOKENS, lambda: tokens(length=16))])
def test_attention_scale_is_used(module, spec, x):
    torch.manual_seed(0)
    base = module.build(module.Config(), spec, None).eval()
    sdpa_default = module.build(module.Config(), spec, 1 / math.sqrt(4)).eval()  # d_head = 4 at ζ = 1
    other = module.build(module.Config(), spec, 1 / 32).eval()
    sdpa_default.load_state_dict(base.state_dict())
    other.load_state_dict(base.state_dict())
    batch = x()
    torch.testing.assert_close(base(batch), sdpa_default(batch))
    assert not torch.allclose(base(batch), other(batch))


def test_out_projection_option():
    model = vit.build(vit.Config(attn_out_proj=True), IMAGES, None)
    assert model.blocks[0].attn.out.weight.shape == (32, 32) and model.blocks[0].attn.out.bias is None
    assert model(images()).shape == (4, 10)


@pytest.mark.parametrize("start", [0, 1])
def test_sinusoids(start):
    pe = sinusoids(65, 32, start)
    t, k = 3, 5
    omega = 10000.0 ** (-2 * (k + start) / 32)
    assert pe.shape == (65, 32)
    assert pe[t, 2 * k].item() == pytest.approx(math.sin((t + start) * omega), abs=1e-6)
    assert pe[t, 2 * k + 1].item() == pytest.approx(math.cos((t + start) * omega), abs=1e-6)


def test_sinusoids_default_follows_the_paper():
    assert vit.Config().pos_start == 1 and transformer.Config().pos_start == 1
    assert sinusoids(1, 4, 0)[0].tolist() == [0.0, 1.0, 0.0, 1.0]  # Vaswani: position 0 is sin 0, cos 0


@pytest.mark.parametrize(
    "module, spec, zeta",
    [(vgg, IMAGES, 0.1), (vgg, IMAGES, 1 / 3), (vit, IMAGES, 0.01), (vit, IMAGES, 1 / 3), (transformer, TOKENS, 1.01)],
)
def test_fractional_width_raises(module, spec, zeta):
    with pytest.raises(ValueError, match="width_mult"):
        with torch.device("meta"):
            module.build(module.Config(width_mult=zeta), spec, None)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="heads"):
        vit.build(vit.Config(width_mult=0.125), IMAGES, None)  # d = 4 across 8 heads


def test_wrong_dataset_raises():
    with pytest.raises(ValueError, match="lm dataset"):
        transformer.build(transformer.Config(), IMAGES, None)
    with pytest.raises(ValueError, match="classification dataset"):
        vgg.build(vgg.Config(), TOKENS, None)


def test_input_geometry_comes_from_the_spec():
    gray = DataSpec("classification", (1, 64, 64), 7)
    assert vgg.build(vgg.Config(), gray, None)(torch.randn(2, 1, 64, 64)).shape == (2, 7)
    assert vit.build(vit.Config(), gray, None)(torch.randn(2, 1, 64, 64)).shape == (2, 7)
    small = DataSpec("lm", (8,), 100)
    assert transformer.build(transformer.Config(), small, None)(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 8, 100)


@pytest.mark.parametrize("module", [vgg, vit, transformer])
def test_hydra_option_composes_onto_the_schema(module):
    """conf/model/<name>.yaml over the schema mupbench.config registers for it."""
    import mupbench.config  # noqa: F401  (registers schema_model_<name>)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=[f"+model={module.Config.name}", "model.width_mult=2"]).model
        with pytest.raises(Exception, match="dropout"):
            compose(overrides=[f"+model={module.Config.name}", "model.dropout=oops"])
    assert cfg.name == module.Config.name and cfg.width_mult == 2.0
    assert cfg.base_width == module.Config.base_width
    spec = TOKENS if module is transformer else IMAGES
    with torch.device("meta"):
        assert sum(p.numel() for p in module.build(cfg, spec, None).parameters()) == count(module, spec, width_mult=2)


# The parametrization engine on these models: roles come from shapes alone, and at ζ = 1 μP is SP.
FIRST_LAYERS = {"stages.0.0.weight", "patch.weight", "tok_emb.weight", "cls_token"}
MODELS = [(vgg, IMAGES, {}), (vit, IMAGES, {}), (vit, IMAGES, {"attn_out_proj": True}), (transformer, TOKENS, {})]
MODEL_IDS = ["vgg", "vit", "vit-wo", "transformer"]


def expected_role(name: str) -> str:
    """One rule for all three models: the readout is output (its bias a fixed-size scalar), the
    first layer and every vector are input, every other matrix is hidden."""
    if name.startswith("head."):
        return "output" if name.endswith("weight") else "scalar"
    if name in FIRST_LAYERS or name.endswith(".bias") or ".ln" in name or name.startswith("ln_f."):
        return "input"
    return "hidden"


@pytest.mark.parametrize("module, spec, fields", MODELS, ids=MODEL_IDS)
def test_engine_infers_roles(module, spec, fields):
    with torch.device("meta"):
        model = module.build(module.Config(width_mult=2, **fields), spec, None)
        base = module.build(module.Config(**fields), spec, None)
    plan = P.make_plan(model, base, "mup", "adam", 0.1)
    assert [e.name for e in plan] and {e.name for e in plan} == {n for n, _ in model.named_parameters()}
    assert {e.name: e.role for e in plan} == {e.name: expected_role(e.name) for e in plan}
    tokens_ = {e.name: (e.kind, e.init_std) for e in plan if e.name in ("cls_token", "tok_emb.weight")}
    assert all(kind in ("token", "embedding") and std == P.TOKEN_STD for kind, std in tokens_.values())
    # not vacuous: past the base width μP moves hidden and output learning rates
    assert {e.lr_mult for e in plan if e.role in ("hidden", "output")} == {0.5}


def lrs_by_name(model, plan, lr):
    return {name: g["lr"] for g in P.param_groups(model, plan, lr) for name in g["names"]}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("module, spec, fields", MODELS, ids=MODEL_IDS)
def test_mup_is_sp_at_base_width(module, spec, fields, optimizer):
    """Same init from the same generator, the same per-parameter lr, the same attention scale,
    hence the same outputs, bit for bit."""
    cfg = module.Config(**fields)
    d_head = cfg.base_width // getattr(cfg, "heads", 1)
    with torch.device("meta"):
        base = module.build(cfg, spec, None)
    outputs, states, lrs = [], [], []
    batch = tokens(length=16) if spec is TOKENS else images()
    for param in ("sp", "mup"):
        scale = P.attention_scale("default", param, d_head, d_head, cfg.base_width)
        model = module.build(cfg, spec, scale).eval()
        plan = P.make_plan(model, base, param, optimizer, 0.1)
        P.initialize(model, plan, torch.Generator().manual_seed(0))
        states.append(model.state_dict())
        lrs.append(lrs_by_name(model, plan, 1e-3))
        with torch.no_grad():
            outputs.append(model(batch))
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert lrs[0] == lrs[1] and set(lrs[0].values()) == {1e-3}
    assert torch.equal(outputs[0], outputs[1])
