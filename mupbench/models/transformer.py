"""The paper's decoder-only Transformer LM: untied token embedding, fixed sinusoidal positions,
causal pre-LN blocks (no attention output projection, MLP d→4d→d), final LayerNorm, a biased
readout over the vocabulary.

d = base_width · ζ (32ζ), 8 heads. With GPT-2's 50,257 tokens: 3,336,081 parameters at ζ = 1,
172,239,953 at ζ = 32 (178,531,409 with ``attn_out_proj``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from mupbench.models.layers import TRANSFORMER_CHECKS, Block, TransformerConfig, check_task, model_width, sinusoids


@dataclass
class Config(TransformerConfig):
    name: str = "transformer"
    base_width: int = 32  # d at ζ = 1
    mlp_ratio: int = 4
    dropout: float = 0.0


CHECKS = TRANSFORMER_CHECKS
TAKES = "token windows (a language-model dataset)"


def accepts(spec) -> bool:
    return spec.task == "lm" and len(spec.input_shape) == 1


def check(cfg, spec) -> None:
    model_width(cfg)


class TransformerLM(nn.Module):
    residual_stack = "blocks"  # the ModuleList of residual blocks (the depth rule's block parameters)

    def __init__(self, cfg, spec, attn_scale: float | None, residual_scale: float = 1.0):
        super().__init__()
        check_task(spec, "lm", 1, "transformer")
        d = model_width(cfg)
        (self.context,) = spec.input_shape
        self.pos_start = cfg.pos_start
        self.tok_emb = nn.Embedding(spec.num_outputs, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, d, attn_scale, residual_scale=residual_scale, causal=True) for _ in range(cfg.blocks))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, spec.num_outputs)  # untied from tok_emb: the two scale differently under μP

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids, T ≤ context → (B, T, vocab) next-token logits."""
        T = idx.shape[1]
        if T > self.context:
            raise ValueError(f"a sequence of {T} tokens exceeds the model's context of {self.context}")
        x = self.tok_emb(idx)
        x = self.drop(x + sinusoids(T, x.shape[2], self.pos_start, x.device, x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build(cfg, spec, attn_scale: float | None, residual_scale: float = 1.0) -> nn.Module:
    """``residual_scale``: the multiplier of both branches of every block (the depth rule's m_L^−α)."""
    return TransformerLM(cfg, spec, attn_scale, residual_scale)
