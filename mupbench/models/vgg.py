"""The paper's "VGG11": 6 convs in 4 stages and 3 linears, no BatchNorm (not torchvision's VGG-11).

With c = base_width · ζ (4ζ): stages [3→c], [c→2c], [2c→4c, 4c→4c], [4c→8c, 8c→8c], 3×3 convs
(stride 1, padding 1) each followed by ReLU, a 2×2 max-pool ending each stage (32 → 2
spatially); flatten 32c; head Linear 32c→5c, ReLU, dropout, Linear 5c→5c, ReLU, dropout,
Linear 5c→classes. 20,994 parameters at ζ = 1, 336,389,130 at ζ = 128.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mupbench.rules import ConfigError, probability
from mupbench.models import CHECKS as MODEL_CHECKS
from mupbench.models import ModelConfig, scaled
from mupbench.models.layers import check_task

STAGES = ((1,), (2,), (4, 4), (8, 8))  # conv widths as multiples of c, one tuple per stage


@dataclass
class Config(ModelConfig):
    name: str = "vgg"
    base_width: int = 4  # first conv's channels at ζ = 1
    dropout: float = 0.5  # in the head, after each hidden linear's ReLU


CHECKS = {**MODEL_CHECKS, "dropout": probability()}
TAKES = "C×H×W images (a classification dataset)"


def accepts(spec) -> bool:
    return spec.task == "classification" and len(spec.input_shape) == 3


def check(cfg, spec) -> None:
    scaled(cfg.base_width, cfg.width_mult)
    pooled = 2 ** len(STAGES)
    if min(spec.input_shape[1:]) < pooled:
        raise ConfigError("dataset", f"vgg pools {len(STAGES)} times: images of {spec.input_shape[1]}×{spec.input_shape[2]} "
                                     f"are smaller than {pooled}×{pooled}")


class VGG(nn.Module):
    def __init__(self, cfg, spec):
        super().__init__()
        check_task(spec, "classification", 3, "vgg")
        channels, height, width = spec.input_shape
        c = scaled(cfg.base_width, cfg.width_mult)
        stages = []
        for multiples in STAGES:
            convs = []
            for m in multiples:
                convs.append(nn.Conv2d(channels, m * c, kernel_size=3, padding=1))
                channels = m * c
            stages.append(nn.ModuleList(convs))
        self.stages = nn.ModuleList(stages)
        pooled = 2 ** len(STAGES)
        self.fc1 = nn.Linear(channels * (height // pooled) * (width // pooled), 5 * c)
        self.fc2 = nn.Linear(5 * c, 5 * c)
        self.head = nn.Linear(5 * c, spec.num_outputs)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            for conv in stage:
                x = F.relu(conv(x))
            x = F.max_pool2d(x, 2)
        x = self.drop(F.relu(self.fc1(x.flatten(1))))
        x = self.drop(F.relu(self.fc2(x)))
        return self.head(x)


def build(cfg, spec, attn_scale: float | None = None) -> nn.Module:
    """``attn_scale`` is part of the common signature; a convnet has no attention to scale."""
    return VGG(cfg, spec)
