"""Pieces the ViT and the Transformer LM share: their config fields, sinusoidal positions and
the pre-LN block with its attention.

Nothing here initialises anything that matters: the parametrization engine re-initialises every
parameter, and the attention logit scale arrives as a plain number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mupbench.rules import ConfigError, flag, integer, one_of, probability
from mupbench.models import CHECKS as MODEL_CHECKS
from mupbench.models import ModelConfig, scaled


@dataclass
class TransformerConfig(ModelConfig):
    """Fields of both attention models. The lead computes d_head from base_width, width_mult and
    heads (for the attention scale), so those names are part of the contract."""

    blocks: int = 6
    base_blocks: int = 6  # L0: the depth rule's base (m_L = blocks / base_blocks; parametrization.depth_alpha)
    heads: int = 8  # at every width, so d_head grows with ζ
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio · d
    dropout: float = 0.0  # on the embeddings and on each residual branch
    attn_out_proj: bool = False  # W_O (Linear d→d, no bias): the paper's models trained without it
    pos_start: int = 1  # first position and frequency index of the sinusoids: 1 = the paper's code, 0 = Vaswani et al.


TRANSFORMER_CHECKS = {
    **MODEL_CHECKS,
    "blocks": integer(ge=1),
    "base_blocks": integer(ge=1, hint="L0, the depth at which a depth rule equals plain μP"),
    "heads": integer(ge=1, hint="the heads split d = base_width·ζ evenly at every width"),
    "mlp_ratio": integer(ge=1),
    "dropout": probability(),
    "attn_out_proj": flag(),
    "pos_start": one_of(0, 1, hint="1 = the paper's code, 0 = Vaswani et al."),
}


def model_width(cfg) -> int:
    """d = base_width · ζ, which the heads must split evenly (at ζ = 1 too)."""
    d = scaled(cfg.base_width, cfg.width_mult)
    if cfg.heads < 1 or cfg.base_width % cfg.heads:
        raise ConfigError(
            "model.heads", f"{cfg.heads} heads cannot split the base width {cfg.base_width}; pick heads that divide model.base_width"
        )
    if d % cfg.heads:
        raise ConfigError(
            "model.width_mult",
            f"ζ={cfg.width_mult:g} gives d={d}, which {cfg.heads} heads cannot split; "
            f"pick a width_mult that makes d a multiple of model.heads",
        )
    return d


def check(cfg, spec) -> None:
    """The ViT's and the Transformer's cross-key checks: the heads split the width."""
    model_width(cfg)


def sinusoids(n: int, d: int, start: int = 1, device=None, dtype=None) -> torch.Tensor:
    """Fixed (n, d) positions: sin(t·ω_k) at channel 2k, cos(t·ω_k) at 2k+1, ω_k = 10000^(-2k/d).

    Positions t and frequency indices k both count from ``start``: 1 reproduces the paper's code,
    0 is Vaswani et al. Computed on the fly rather than held in a buffer, so a model built on the
    meta device and materialised with ``to_empty`` has nothing left uninitialised, and
    checkpoints hold parameters only.
    """
    t = torch.arange(start, start + n, device=device, dtype=torch.float32)
    k = torch.arange(start, start + (d + 1) // 2, device=device, dtype=torch.float32)
    angle = t[:, None] * 10000.0 ** (-2 * k / d)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)[:, :d].to(dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention from one fused QKV projection; the logit scale is given, not derived
    from d_head, because SP and μP disagree on it (``None`` means SDPA's 1/√d_head)."""

    def __init__(self, d: int, heads: int, scale: float | None, causal: bool, out_proj: bool):
        super().__init__()
        self.heads, self.scale, self.causal = heads, scale, causal
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False) if out_proj else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        # (3, B, heads, T, d_head)
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=self.scale)
        return self.out(y.transpose(1, 2).reshape(B, T, d))


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN: x + drop(attn(LN x)), then x + drop(mlp(LN x)); with a residual multiplier r ≠ 1
    (the depth rule's m_L^−α, given as a plain number) x + r·drop(attn(LN x)), and so for the MLP."""

    def __init__(self, cfg, d: int, scale: float | None, causal: bool, residual_scale: float = 1.0):
        super().__init__()
        self.residual_scale = float(residual_scale)
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.heads, scale, causal, cfg.attn_out_proj)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d, cfg.mlp_ratio * d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.residual_scale
        if r == 1.0:  # no depth rule, or the base depth: not even a multiply by one
            x = x + self.drop(self.attn(self.ln1(x)))
            return x + self.drop(self.mlp(self.ln2(x)))
        x = x + r * self.drop(self.attn(self.ln1(x)))
        return x + r * self.drop(self.mlp(self.ln2(x)))


def check_task(spec, task: str, ndim: int, model: str) -> None:
    """A model paired with the wrong dataset fails here, with names, not deep inside a forward
    (config validation says it first, naming the datasets that fit)."""
    if spec.task != task or len(spec.input_shape) != ndim:
        raise ConfigError(
            "dataset",
            f"model {model} needs a {task} dataset with {ndim}-d inputs, "
            f"got task={spec.task!r} with input_shape={tuple(spec.input_shape)}"
        )
