"""mupbench.flops: the measured FLOPs of a training step against the closed form of its docstring."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mupbench.data import DataSpec
from mupbench.flops import flops_per_step
from mupbench.models import mlp, transformer


def mlp_closed_form(batch: int, dims: list[int]) -> int:
    """3 × forward (2·B·in·out per Linear), less the first Linear's input gradient."""
    forward = sum(2 * batch * a * b for a, b in zip(dims, dims[1:]))
    return 3 * forward - 2 * batch * dims[0] * dims[1]


def transformer_closed_form(batch: int, T: int, d: int, vocab: int, blocks: int, mlp_ratio: int = 4, out_proj: bool = False) -> int:
    rows = batch * T
    per_block = 3 * d * d + 2 * mlp_ratio * d * d + (d * d if out_proj else 0)  # qkv, fc1 + fc2, W_O
    n_matmul = blocks * per_block + d * vocab  # + the readout
    return 6 * n_matmul * rows + 12 * blocks * batch * T * T * d


@pytest.mark.parametrize("zeta,layers", [(1, 2), (4, 2), (8, 3)])
def test_mlp_flops_match_the_closed_form(zeta, layers):
    cfg = mlp.Config(width_mult=zeta, hidden_layers=layers)
    model = mlp.build(cfg, DataSpec("regression", (8,), 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    measured = flops_per_step(model, F.mse_loss, x, y)
    expected = mlp_closed_form(64, [8] + [16 * zeta] * layers + [1])
    assert measured == pytest.approx(expected, rel=0.02)
    assert measured == expected  # nothing but the Linears counts: exact


@pytest.mark.parametrize("zeta,out_proj", [(1, False), (2, True)])
def test_transformer_flops_match_the_closed_form(zeta, out_proj):
    cfg = transformer.Config(width_mult=zeta, blocks=2, attn_out_proj=out_proj)
    vocab, T, batch = 96, 16, 4
    model = transformer.build(cfg, DataSpec("lm", (T,), vocab), None)
    ids = torch.randint(0, vocab, (batch, T + 1))
    loss = lambda logits, target: F.cross_entropy(logits.flatten(0, 1), target.flatten())  # noqa: E731
    measured = flops_per_step(model, loss, ids[:, :-1], ids[:, 1:])
    expected = transformer_closed_form(batch, T, 32 * zeta, vocab, blocks=2, out_proj=out_proj)
    assert measured == pytest.approx(expected, rel=0.02)


def test_gradients_are_left_as_they_were():
    model = mlp.build(mlp.Config(), DataSpec("regression", (8,), 1))
    x, y = torch.randn(4, 8), torch.randn(4, 1)
    assert flops_per_step(model, F.mse_loss, x, y) > 0
    assert all(p.grad is None for p in model.parameters())
    F.mse_loss(model(x), y).backward()
    before = [p.grad.clone() for p in model.parameters()]
    flops_per_step(model, F.mse_loss, 2 * x, y)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), before))
