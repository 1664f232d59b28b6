"""The MLP of the paper's California Housing study (SPEC §2): in → 16ζ → 16ζ → out, ReLU."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from mupbench.rules import integer
from mupbench.models import CHECKS as MODEL_CHECKS
from mupbench.models import ModelConfig, scaled


@dataclass
class Config(ModelConfig):
    name: str = "mlp"
    base_width: int = 16
    hidden_layers: int = 2  # Linear layers of width 16ζ; the paper's MLP has two


CHECKS = {**MODEL_CHECKS, "hidden_layers": integer(ge=1, hint="the paper's MLP has 2; 0 would be a linear model")}
TAKES = "feature vectors or images (a regression or classification dataset)"


def accepts(spec) -> bool:
    return spec.task in ("regression", "classification")


def check(cfg, spec) -> None:
    scaled(cfg.base_width, cfg.width_mult)


def build(cfg: Config, spec, attn_scale: float | None = None) -> nn.Sequential:
    width = scaled(cfg.base_width, cfg.width_mult)
    layers: list[nn.Module] = []
    fan_in = math.prod(spec.input_shape)
    for _ in range(cfg.hidden_layers):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, spec.num_outputs))
    return nn.Sequential(nn.Flatten(), *layers) if len(spec.input_shape) > 1 else nn.Sequential(*layers)
