"""The four setups end to end (issue 3): μP ≡ SP at ζ = 1 through 10 training steps, every model ×
parametrization × optimizer through the real CLI, and the LM's loss at init."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_models import vgg_params, vit_params

from mupbench import parametrization as P
from mupbench.assemble import (
    attention_scale,
    build_models,
    build_run,
    generator,
    make_plan,
)
from mupbench.config import ConfigError, compose
from mupbench.data import DataSpec
from conftest import train_single as train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second intra-op thread only spins, and on a shared 2-core machine
    that made this file 3× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# model -> its synthetic dataset (shrunk where generating it would dominate a tiny run)
SETUPS = {
    "mlp": ["dataset=synthetic"],
    "vgg": ["dataset=synthetic_images", "dataset.n_train=256", "dataset.n_val=64", "dataset.n_test=64"],
    "vit": ["dataset=synthetic_images", "dataset.n_train=256", "dataset.n_val=64", "dataset.n_test=64"],
    "transformer": ["dataset=synthetic_tokens", "dataset.n_train=5000", "dataset.n_val=1000", "dataset.n_test=1000"],
}
STEPS10 = ["train.steps=10", "train.eval_every=1", "train.batch_size=4", "train.eval_batches=1", "train.device=cpu"]


def ten_steps(model: str, param: str, *extra: str):
    """Build (seeding init, data and dropout) and train one run: the run, its outcome, its init."""
    run = build_run(compose([f"model={model}", *SETUPS[model], f"parametrization={param}", *STEPS10, *extra]))
    init = {k: v.clone() for k, v in run.model.state_dict().items()}
    return run, train(run), init


# d_head = 8 and 32 at ζ = 1, where √d/d and 1/√d are different doubles; float64 keeps the last bit
# of the attention scale, which float32 SDPA happens to round away
CASES = [(m, o, ()) for m in SETUPS for o in ("adam", "sgd")] + [
    ("transformer", "adam", ("model.heads=4", "train.dtype=float64")),
    ("vit", "sgd", ("model.heads=1", "train.dtype=float64")),
]
CASE_IDS = [f"{m}-{o}" for m in SETUPS for o in ("adam", "sgd")] + ["transformer-dhead8-f64-adam", "vit-dhead32-f64-sgd"]


@pytest.mark.parametrize("model, optimizer, extra", CASES, ids=CASE_IDS)
def test_mup_is_sp_at_base_width_through_training(model, optimizer, extra):
    """Same init, same lrs, same attention scale, same data and dropout: the same 10 steps, bit for bit."""
    (sp, sp_out, init), (mup, mup_out, _) = (ten_steps(model, p, f"optimizer={optimizer}", *extra) for p in ("sp", "mup"))
    assert sp_out.status == mup_out.status == "completed"
    losses = [[(h["train_loss"], h["val_loss"]) for h in out.history] for out in (sp_out, mup_out)]
    assert len(losses[0]) == 11 and losses[0] == losses[1]
    assert all(math.isfinite(a) and math.isfinite(b) for a, b in losses[0])
    a, b = sp.model.state_dict(), mup.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # not vacuous: every parameter moved, and so did the loss
    assert not any(torch.equal(a[k], init[k]) for k in a)
    assert losses[0][0] != losses[0][-1]


@pytest.mark.parametrize("model", ["vit", "transformer"])
def test_paper_attention_scale_breaks_the_base_width_identity(model):
    """The paper's μP used 1/d_model: 16× below SP's 1/√d_head at ζ = 1 (SPEC §1.3), so there μP ≠ SP."""
    sp, sp_out, _ = ten_steps(model, "sp")
    mup, mup_out, _ = ten_steps(model, "mup", "parametrization.attn_scale=paper")
    assert attention_scale(sp.cfg) == 1 / math.sqrt(4) and attention_scale(mup.cfg) == 1 / 32
    assert [e.init_std for e in sp.plan] == [e.init_std for e in mup.plan]  # only the attention differs
    assert [e.lr_mult for e in sp.plan] == [e.lr_mult for e in mup.plan]
    assert sp_out.history[0]["val_loss"] != mup_out.history[0]["val_loss"]  # different functions at init
    a, b = sp.model.state_dict(), mup.model.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("heads", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("base_width", [32, 48, 96])
def test_default_attention_scale_equals_sp_at_base_width(base_width, heads):
    """Bitwise, whatever d_head is (not only when √d_head is exact), and √d_head0/d_head above it."""
    d0 = base_width // heads
    assert P.attention_scale("default", "mup", d0, d0, base_width) == P.attention_scale("default", "sp", d0, d0, base_width)
    for zeta in (2, 4, 8):
        assert P.attention_scale("default", "mup", d0 * zeta, d0, base_width * zeta) == pytest.approx(math.sqrt(d0) / (d0 * zeta), rel=1e-15)


# Every model × parametrization × optimizer through the real CLI, in one multirun: subprocess
# start-up dominates (~5 s here, most of it importing torch and torch._dynamo), so a test config dir
# (Hydra's --config-dir) adds two groups, ``setup`` (a model with its synthetic dataset) and
# ``pair`` (a parametrization with an optimizer it is defined for), and the sweep is their product.
# ζ = 2, so that the μP, NTK and MF rules are not all 1.
CLI_TINY = ["model.width_mult=2", "train.steps=3", "train.eval_every=3", "train.eval_batches=1", "train.batch_size=4",
            "train.device=cpu", "train.threads=1"]
PAIRS = [(p, "adam") for p in P.PARAMETRIZATIONS] + [("sp", "sgd"), ("mup", "sgd")]  # NTK and MF are Adam-only (SPEC §1.2)


def lm_params(zeta: int, vocab: int) -> int:
    """tests/test_models.py's closed form, for a vocabulary other than GPT-2's."""
    d = 32 * zeta
    return vocab * d + 6 * (11 * d**2 + 9 * d) + 2 * d + vocab * d + vocab


EXPECTED = {  # model: (setup, parameters at ζ = 2 on 3×32×32 images in 10 classes, 64 tokens, 8 features)
    "vgg": ("vgg_synthetic_images", vgg_params(2)),
    "vit": ("vit_synthetic_images", vit_params(2)),
    "transformer": ("transformer_synthetic_tokens", lm_params(2, vocab=64)),
    "mlp": ("mlp_synthetic", 8 * 32 + 32 + 32 * 32 + 32 + 32 + 1),
}


def write_groups(conf: Path) -> None:
    for model, (dataset, *fields) in SETUPS.items():
        lines = ["defaults:", f"  - override /model: {model}", f"  - override /{dataset.replace('=', ': ')}"]
        lines += ["dataset:", *(f"  {f.removeprefix('dataset.').replace('=', ': ')}" for f in fields)] if fields else []
        (conf / "setup").mkdir(parents=True, exist_ok=True)
        (conf / "setup" / f"{model}.yaml").write_text("\n".join(["# @package _global_", *lines, ""]))
    for param, opt in PAIRS:
        lines = ["defaults:", f"  - override /parametrization: {param}", f"  - override /optimizer: {opt}"]
        (conf / "pair").mkdir(exist_ok=True)
        (conf / "pair" / f"{param}_{opt}.yaml").write_text("\n".join(["# @package _global_", *lines, ""]))


@pytest.mark.parametrize("model", list(SETUPS))
@pytest.mark.parametrize("param", ["ntk", "mf"])
def test_adam_only_parametrizations_refuse_sgd_for_every_model(model, param):
    with pytest.raises(ConfigError, match=f"^optimizer: parametrization={param} is defined for Adam only; use optimizer=adam$"):
        compose([f"model={model}", *SETUPS[model], f"parametrization={param}", "optimizer=sgd"])


# The LM's loss at init: with c = 0.1 the logits are ~0 (SP: std c at every width, since the final
# LayerNorm gives |h|² = d; μP: c·√(d0/d)), so the cross-entropy is ln V + var/2 ≈ ln V + 0.005.
@pytest.mark.parametrize("zeta", [1, 4])
@pytest.mark.parametrize("param", ["sp", "mup"])
def test_lm_loss_at_init_is_log_vocab_on_synthetic_tokens(param, zeta):
    run = build_run(compose(["model=transformer", *SETUPS["transformer"], f"parametrization={param}",
                             f"model.width_mult={zeta}", "train.device=cpu", "train.batch_size=16"]))
    x, y = run.train_sampler.next()
    with torch.no_grad():
        loss = run.loss_fn(run.model.eval()(x), y).item()
    assert run.splits.spec.num_outputs == 64
    assert loss == pytest.approx(math.log(64), rel=0.01)


@pytest.mark.parametrize("zeta", [1, 4])
@pytest.mark.parametrize("param", ["sp", "mup"])
def test_lm_loss_at_init_is_log_vocab_with_gpt2_vocabulary(param, zeta):
    """GPT-2's 50,257 tokens, a tiny random batch: the model the paper trained, assembled as a run
    assembles it (no data needed)."""
    cfg = compose(["model=transformer", "dataset=synthetic_tokens", f"parametrization={param}", f"model.width_mult={zeta}"])
    model, base = build_models(cfg, DataSpec("lm", (32,), 50257), torch.device("cpu"))
    P.initialize(model, make_plan(cfg, model, base), generator(torch.device("cpu"), cfg.seed, "init"))
    ids = torch.randint(50257, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, -2), ids[:, 1:].flatten()).item()
    assert loss == pytest.approx(math.log(50257), rel=0.01)
    expected_std = 0.1 if param == "sp" else 0.1 / math.sqrt(zeta)
    assert logits.std().item() == pytest.approx(expected_std, rel=0.05)
