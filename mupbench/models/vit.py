"""The paper's ViT for CIFAR-10: 4×4 patches, a class token, fixed sinusoidal positions, pre-LN
blocks whose attention has no output projection and whose MLP does not expand.

d = base_width · ζ (32ζ), 8 heads. 33,834 parameters at ζ = 1, 503,713,802 at ζ = 128.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from mupbench.rules import ConfigError, integer
from mupbench.models.layers import TRANSFORMER_CHECKS, Block, TransformerConfig, check_task, model_width, sinusoids


@dataclass
class Config(TransformerConfig):
    name: str = "vit"
    base_width: int = 32  # d at ζ = 1
    patch_size: int = 4
    mlp_ratio: int = 1
    dropout: float = 0.1


CHECKS = {**TRANSFORMER_CHECKS, "patch_size": integer(ge=1, hint="the patches must tile the image")}
TAKES = "C×H×W images (a classification dataset)"


def accepts(spec) -> bool:
    return spec.task == "classification" and len(spec.input_shape) == 3


def check(cfg, spec) -> None:
    model_width(cfg)
    _, height, width = spec.input_shape
    if height % cfg.patch_size or width % cfg.patch_size:
        raise ConfigError("model.patch_size", f"{cfg.patch_size} does not tile {height}×{width} images; pick a divisor of both")


class ViT(nn.Module):
    residual_stack = "blocks"  # the ModuleList of residual blocks (the depth rule's block parameters)

    def __init__(self, cfg, spec, attn_scale: float | None, residual_scale: float = 1.0):
        super().__init__()
        check_task(spec, "classification", 3, "vit")
        d = model_width(cfg)
        self.pos_start = cfg.pos_start
        # a patchify conv without bias: the class token and positions give the tokens their offsets
        self.patch = nn.Conv2d(spec.input_shape[0], d, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, d, attn_scale, residual_scale=residual_scale, causal=False) for _ in range(cfg.blocks))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, spec.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, patches, d)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)  # class token first
        x = self.drop(x + sinusoids(x.shape[1], x.shape[2], self.pos_start, x.device, x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, 0]))  # classify from the class token alone


def build(cfg, spec, attn_scale: float | None, residual_scale: float = 1.0) -> nn.Module:
    """``residual_scale``: the multiplier of both branches of every block (the depth rule's m_L^−α)."""
    return ViT(cfg, spec, attn_scale, residual_scale)
