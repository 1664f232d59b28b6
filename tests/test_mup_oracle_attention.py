"""The microsoft/mup oracle for an attention model: a 2-block Transformer LM with 16 tokens.

The twin below is written for mup, independently of mupbench/models: mup's MuReadout as the LM
head (init and Adam lr unscaled, input divided by the width ratio ζ in the forward pass), roles
from ``set_base_shapes`` against the ζ = 1 twin, and mup's 1/d_head attention logits times the
constant √d_head0, which is mupbench's base-equivalent μP scale √d_head0/d_head. Parameter names
and order mirror mupbench/models/transformer.py, so our weights copy across by name, the
readout's × ζ. Then (SPEC §1.4): the same roles, the same per-parameter learning rates (MuAdam,
MuSGD), the same μP init, and the same function of training, in float64 on identical batches.

ζ is a power of two here, so that × ζ and ÷ ζ are exact: with Adam ε = 0 the two trajectories
then differ only by the rounding of two attention implementations (SDPA vs the explicit one).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

mup = pytest.importorskip("mup", reason="the oracle needs mup==1.0.0 (pip install --no-deps mup==1.0.0)")

from mupbench import parametrization as P  # noqa: E402
from mupbench.assemble import build_run  # noqa: E402
from mupbench.config import compose  # noqa: E402
from mupbench.models.layers import sinusoids  # noqa: E402

BASE, HEADS, BLOCKS, VOCAB, CONTEXT = 32, 8, 2, 16, 16
STEPS = 20
ZETAS = [1, 4, 8]  # d = 32, 128, 256; d_head = 4, 16, 32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only spins on a shared machine
    yield
    torch.set_num_threads(threads)


class MuAttention(nn.Module):
    def __init__(self, d: int, attn_mult: float):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_mult = attn_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        d_head = d // HEADS
        q, k, v = self.qkv(x).view(B, T, 3, HEADS, d_head).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-2, -1) * (self.attn_mult / d_head)  # μP: 1/d_head, times a constant
        logits = logits.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        return (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)


class MuMLP(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class MuBlock(nn.Module):
    def __init__(self, d: int, attn_mult: float):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = nn.LayerNorm(d), MuAttention(d, attn_mult), nn.LayerNorm(d), MuMLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class MuTransformerLM(nn.Module):
    """Pre-LN causal LM, sinusoidal positions (1-based, as mupbench's default), untied MuReadout."""

    def __init__(self, d: int, attn_mult: float = math.sqrt(BASE // HEADS)):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, d)
        self.blocks = nn.ModuleList(MuBlock(d, attn_mult) for _ in range(BLOCKS))
        self.ln_f = nn.LayerNorm(d)
        self.head = mup.MuReadout(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx)
        x = x + sinusoids(idx.shape[1], x.shape[2], 1, x.device, x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def config(zeta: int, optimizer: str = "adam", lr: float = 1e-2, eps: float = 1e-30, param: str = "mup", *extra: str):
    overrides = [f"model.width_mult={zeta}", "model=transformer", f"model.blocks={BLOCKS}", f"model.heads={HEADS}",
                 "dataset=synthetic_tokens", f"dataset.vocab={VOCAB}", f"dataset.context={CONTEXT}",
                 "dataset.n_train=20000", "dataset.n_val=2000", "dataset.n_test=2000",
                 f"parametrization={param}", f"optimizer={optimizer}", f"optimizer.lr={lr}", "optimizer.impl=for_loop",
                 "train.dtype=float64", "train.device=cpu", "train.batch_size=8", *extra]
    return compose(overrides + ([f"optimizer.eps={eps}"] if optimizer == "adam" else []))


def base_twin() -> MuTransformerLM:
    with torch.device("meta"):
        return MuTransformerLM(BASE)


def twin_of(ours: nn.Module, zeta: int) -> MuTransformerLM:
    """The mup model holding our weights (the readout's × ζ), with its base shapes set."""
    twin = MuTransformerLM(BASE * zeta).double()
    params = dict(ours.named_parameters())
    assert [n for n, _ in twin.named_parameters()] == list(params), "the twin must mirror our parameter order"
    with torch.no_grad():
        for name, p in twin.named_parameters():
            p.copy_(params[name] * (zeta if name == "head.weight" else 1))
    return mup.set_base_shapes(twin, base_twin(), rescale_params=False)


def mu_optimizer(twin: nn.Module, optimizer: str, lr: float, eps: float = 1e-30):
    if optimizer == "adam":
        return mup.MuAdam(twin.parameters(), lr=lr, eps=eps, foreach=False)
    return mup.MuSGD(twin.parameters(), lr=lr, foreach=False)


def mup_role(twin: nn.Module, name: str, p: torch.Tensor) -> str:
    if p is twin.head.weight and p.infshape.ninf() == 1:
        return "output"  # MuReadout's weight: its fan-in is its one infinite dimension
    return {2: "hidden", 1: "input", 0: "scalar"}[p.infshape.ninf()]


def effective_lrs(twin: nn.Module, opt: torch.optim.Optimizer, optimizer: str, zeta: int) -> dict[str, float]:
    """mup's per-parameter lr, in our coordinates. Our readout W is mup's W'/ζ fed x (mup feeds W'
    with x/ζ): an Adam step of size η on W' is η/ζ on W; an SGD step sees a ζ-times smaller
    gradient too, so η/ζ²."""
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    readout = zeta if optimizer == "adam" else zeta**2
    return {n: lr_of[id(p)] / (readout if n == "head.weight" else 1) for n, p in twin.named_parameters()}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("zeta", ZETAS)
def test_roles_and_learning_rates_agree_with_mup(zeta, optimizer):
    lr = 1e-2
    run = build_run(config(zeta, optimizer, lr))
    twin = twin_of(run.model, zeta)
    plan = {e.name: e for e in run.plan}
    roles = {n: mup_role(twin, n, p) for n, p in twin.named_parameters()}
    assert roles == {n: e.role for n, e in plan.items()}
    if zeta > 1:  # at ζ = 1 nothing grows: both call every parameter a fixed-size scalar, at lr k
        assert roles["tok_emb.weight"] == "input" and twin.tok_emb.weight.infshape.ninf() == 1
        assert roles["blocks.0.attn.qkv.weight"] == roles["blocks.1.mlp.fc2.weight"] == "hidden"
        assert roles["head.bias"] == "scalar" and roles["blocks.0.ln1.weight"] == roles["blocks.1.mlp.fc1.bias"] == "input"
    theirs = effective_lrs(twin, mu_optimizer(twin, optimizer, lr), optimizer, zeta)
    ours = {name: g["lr"] for g in run.optimizer.param_groups for name in g["names"]}
    assert ours.keys() == theirs.keys() and all(ours[n] == pytest.approx(theirs[n], rel=1e-14) for n in ours), (ours, theirs)
    # the token embedding, an input-role table with std 0.02, keeps lr k under Adam (ninf == 1)
    assert plan["tok_emb.weight"].init_std == P.TOKEN_STD
    assert ours["tok_emb.weight"] == (lr if optimizer == "adam" else lr * zeta)
    assert ours["head.weight"] == pytest.approx(lr / zeta)


@pytest.mark.parametrize("zeta", ZETAS[1:])
def test_mup_init_agrees_with_mups_rescaling_of_sp(zeta):
    """mup's μP init is SP's with the readout × √ζ (set_base_shapes(rescale_params=True)); ours
    draws every tensor from the same stream as our SP, so in the twin's coordinates they are equal."""
    sp = build_run(config(zeta, param="sp")).model
    rescaled = MuTransformerLM(BASE * zeta).double()
    rescaled.load_state_dict(sp.state_dict())
    mup.set_base_shapes(rescaled, base_twin(), rescale_params=True)
    twin = twin_of(build_run(config(zeta)).model, zeta)
    for (name, a), b in zip(twin.named_parameters(), rescaled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=0, msg=name)
    assert not torch.allclose(twin.head.weight, sp.head.weight)  # not vacuous: SP's readout is √ζ off


def train_both(run, twin, twin_opt, probe: torch.Tensor, steps: int = STEPS) -> float:
    """Train ours and the twin on the same batches; the worst relative logit difference on a probe."""
    worst = 0.0
    for _ in range(steps):
        x, y = run.train_sampler.next()
        for model, opt in ((run.model, run.optimizer), (twin, twin_opt)):
            opt.zero_grad()
            run.loss_fn(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            ours, theirs = run.model(probe), twin(probe)
        assert torch.isfinite(ours).all() and torch.isfinite(theirs).all()
        worst = max(worst, ((ours - theirs).norm() / theirs.norm()).item())
    return worst


# Adam's ε is the one place the two differ: mup's readout gradients are ζ times smaller, so the
# same ε weighs ζ times more there (an O(ε) gap, see the test below). ε = 1e-30 is ε → 0 without
# ε = 0's 0/0: a ReLU unit dead on a whole batch has an exactly zero gradient, and Adam with ε = 0
# turns a never-updated entry into NaN, in both models alike.
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("zeta", ZETAS)
def test_mupbench_mup_transformer_matches_microsoft_mup(zeta, optimizer):
    lr = 1e-2 if optimizer == "adam" else 5e-2
    run = build_run(config(zeta, optimizer, lr))
    twin = twin_of(run.model, zeta)
    probe, _ = run.val_sampler.next()
    with torch.no_grad():
        init = run.model(probe)
    worst = train_both(run, twin, mu_optimizer(twin, optimizer, lr), probe)
    print(f"ζ={zeta} {optimizer}: worst relative logit difference {worst:.3g} over {STEPS} steps")
    assert worst < 1e-12, f"relative difference {worst:.3g} after {STEPS} steps at ζ={zeta}"
    with torch.no_grad():  # the oracle is not trivially satisfied: the network moved
        assert (run.model(probe) - init).norm() / init.norm() > 0.1


def test_adam_eps_gap_is_order_eps():
    """With the PyTorch-default-sized ε of the SPEC's oracle (1e-12) the two differ, and by a gap
    proportional to ε: it is the ε term, not a disagreement of the parametrizations."""
    zeta, lr, gaps = 4, 1e-2, {}
    for eps in (1e-12, 1e-13):
        run = build_run(config(zeta, "adam", lr, eps))
        twin = twin_of(run.model, zeta)
        gaps[eps] = train_both(run, twin, mu_optimizer(twin, "adam", lr, eps), run.val_sampler.next()[0])
    print(f"ζ={zeta}: gap {gaps[1e-12]:.3g} at ε=1e-12, {gaps[1e-13]:.3g} at ε=1e-13")
    assert 1e-12 < gaps[1e-12] < 1e-8
    assert gaps[1e-12] / gaps[1e-13] == pytest.approx(10, rel=0.05)


@pytest.mark.parametrize(
    "wrong",
    ["attention 1/√d_head", "embedding lr k/ζ"],
)
def test_oracle_catches_a_wrong_attention_scale_or_embedding_lr(wrong):
    zeta, lr = 4, 1e-2
    extra = ["parametrization.attn_scale=sp"] if wrong.startswith("attention") else []
    run = build_run(config(zeta, "adam", lr, 1e-30, "mup", *extra))
    if wrong.startswith("embedding"):  # treat the table as hidden: lr k·n0/n
        plan = [dataclasses.replace(e, lr_mult=1 / zeta) if e.name == "tok_emb.weight" else e for e in run.plan]
        run.optimizer = torch.optim.Adam(P.param_groups(run.model, plan, lr), lr=lr, eps=1e-30, foreach=False)
    twin = twin_of(run.model, zeta)
    gap = train_both(run, twin, mu_optimizer(twin, "adam", lr), run.val_sampler.next()[0], steps=10)
    print(f"{wrong}: relative logit difference {gap:.3g} after 10 steps at ζ={zeta}")
    assert gap > 1e-3
