"""Plain nn.Module builders. Models know nothing about parametrizations: they take a width
multiplier (and, for attention, a logit scale as a plain number) and build ordinary modules.

Every model module exposes a config dataclass (its Hydra schema) and
``build(cfg, spec: DataSpec, attn_scale: float | None) -> nn.Module``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from omegaconf import MISSING

from mupbench.rules import ConfigError, integer, number, one_of


@dataclass
class ModelConfig:
    """Schema fields every model shares; each model module subclasses it as ``Config``."""

    name: str = MISSING
    width_mult: float = 1.0  # ζ: every growing dimension is base_width-proportional × ζ
    base_width: int = MISSING  # the width at ζ = 1 (MLP 16, VGG 4, ViT/Transformer 32)


MODELS = {
    "mlp": "mupbench.models.mlp",
    "vgg": "mupbench.models.vgg",
    "vit": "mupbench.models.vit",
    "transformer": "mupbench.models.transformer",
    "custom": "mupbench.models.custom",  # your own: model.factory=package.module:function
}


# the rules of ModelConfig's fields (each model module extends them as its own ``CHECKS``)
CHECKS = {
    "name": one_of(*MODELS, hint="pick the model with the group, model=NAME"),
    "width_mult": number(ge=1, hint="ζ = 1 is the base width; widen with ζ > 1"),
    "base_width": integer(ge=1),
}


def model_module(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return importlib.import_module(MODELS[name])


def scaled(base: int, width_mult: float) -> int:
    """``base * width_mult`` as an integer width; a fractional width is a config error."""
    if base < 1:
        raise ConfigError("model.base_width", f"{base} must be ≥ 1 (the width at ζ = 1)")
    width = base * width_mult
    if width < 1 or abs(width - round(width)) > 1e-9:
        raise ConfigError(
            "model.width_mult",
            f"ζ={width_mult:g} gives a width of {width:g} (base {base}); "
            f"pick a width_mult that makes every width a positive integer",
        )
    return int(round(width))
