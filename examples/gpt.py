"""A GPT-style language model built from nn.MultiheadAttention, with the input embedding tied
to the output layer: a plain nn.Module, nothing mupbench-specific in it but two numbers its
factory accepts.

- ``attn_scale``: the attention logit scale the parametrization wants (SPEC §1.3: SP 1/√d_head,
  μP 1/d_head in its base-equivalent form). nn.MultiheadAttention always divides by √d_head, so
  the query is multiplied by attn_scale·√d_head first (the projections have no bias, so this is
  exactly a logit scale).
- ``readout_mult``: the tied readout's μP multiplier (1/ζ under μP, 1 under SP). The tied matrix
  has one role (the embedding's, input) and one optimizer entry.
- ``blocks`` (model.blocks) and ``residual_scale``: depth, for the depth rule's runs.

    mupbench-train model=custom model.factory=examples.gpt:build model.base_width=32 dataset=tiny_shakespeare
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, heads: int, attn_scale: float, residual_scale: float):
        super().__init__()
        d_head = d // heads
        self.q_mult = attn_scale / (1.0 / math.sqrt(d_head))  # exactly 1.0 when attn_scale is SP's 1/√d_head
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, bias=False, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.ReLU(), nn.Linear(4 * d, d))
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        h = self.ln1(x)
        x = x + self.residual_scale * self.attn(h * self.q_mult, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.residual_scale * self.mlp(self.ln2(x))


class GPT(nn.Module):
    residual_stack = "blocks"  # the residual blocks, for the depth rule (parametrization.depth_alpha)

    def __init__(self, vocab: int, context: int, d: int, heads: int, blocks: int, attn_scale: float, readout_mult: float,
                 residual_scale: float):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)  # registered first: the tied matrix takes its role (input)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads, attn_scale, residual_scale) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied: one tensor, used twice
        self.readout_mult = readout_mult

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x) * self.readout_mult)  # = logits × readout_mult (no bias), measured at the head


def build(width_mult: float, spec, d: int = 32, heads: int = 4, blocks: int = 2,
          attn_scale: float | None = None, readout_mult: float = 1.0, residual_scale: float = 1.0) -> nn.Module:
    """d·ζ model width with ``heads`` heads at every width (d_head grows); model.base_width
    should equal ``d`` so mupbench can compute attn_scale."""
    width = d * width_mult
    if width != int(width) or int(width) % heads:
        raise ValueError(f"d·width_mult = {width:g} must be an integer multiple of heads={heads}")
    width = int(width)
    if attn_scale is None:
        attn_scale = 1.0 / math.sqrt(width // heads)
    return GPT(spec.num_outputs, spec.input_shape[0], width, heads, blocks, attn_scale, readout_mult, residual_scale)
