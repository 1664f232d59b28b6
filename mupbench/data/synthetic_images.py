"""CIFAR-shaped images generated in code: a stand-in for CIFAR-10 that needs no download.

Each class has a smooth random colour template; an image is its class's template plus smooth
random clutter that is ``noise`` times as strong, so the classes overlap and the task is
learnable but not trivial. Pixels are on CIFAR's raw scale (mean 127.5, std about 64), so the
paper's learning rates for raw 0-255 inputs carry over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mupbench.rules import integer, number
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DatasetConfig, DataSpec, Splits


@dataclass
class Config(DatasetConfig):
    name: str = "synthetic_images"
    n_train: int = 2048
    n_val: int = 512
    n_test: int = 512
    classes: int = 10
    noise: float = 4.0  # clutter std / template std: larger is harder (4: ~78% val accuracy for nearest class mean)


CHECKS = {**DATA_CHECKS, "n_train": integer(ge=1), "n_val": integer(ge=1), "n_test": integer(ge=1),
          "classes": integer(ge=2), "noise": number(ge=0)}


def spec(cfg) -> DataSpec:
    return DataSpec("classification", (3, 32, 32), cfg.classes)


def rows(cfg) -> tuple[int, int]:
    return cfg.n_train, cfg.n_val


def _smooth(n: int, res: int, g: torch.Generator) -> torch.Tensor:
    """``n`` random 3x32x32 images varying on a ``res``x``res`` grid, scaled to unit std."""
    x = F.interpolate(torch.randn(n, 3, res, res, generator=g), size=32, mode="bilinear", align_corners=False)
    return x / x.std()


def load(cfg, device: torch.device) -> Splits:
    g = torch.Generator().manual_seed(cfg.split_seed)
    n = cfg.n_train + cfg.n_val + cfg.n_test
    templates = _smooth(cfg.classes, 4, g)
    y = torch.randint(cfg.classes, (n,), generator=g)
    x = (templates[y] + cfg.noise * _smooth(n, 8, g)) * (64 / (1 + cfg.noise**2) ** 0.5) + 127.5
    x, y = x.to(device), y.to(device)
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    info = {"source": "generated in code (mupbench.data.synthetic_images)",
            "sizes": {"train": a, "val": b - a, "test": n - b}, "noise": cfg.noise}
    return Splits(spec(cfg), (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:]), info)
