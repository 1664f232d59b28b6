"""The embedded default: a deterministic regression task generated in code, so the quick start
and the tests need no download. Shaped like California Housing (8 features, 1 target)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mupbench.rules import integer, number
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DatasetConfig, DataSpec, Splits


@dataclass
class Config(DatasetConfig):
    name: str = "synthetic"
    features: int = 8
    n_train: int = 4096
    n_val: int = 512
    n_test: int = 512
    noise: float = 0.1  # std of the label noise: the best achievable MSE is noise²


CHECKS = {**DATA_CHECKS, "features": integer(ge=1), "n_train": integer(ge=1), "n_val": integer(ge=1),
          "n_test": integer(ge=1), "noise": number(ge=0)}


def spec(cfg) -> DataSpec:
    return DataSpec("regression", (cfg.features,), 1)


def rows(cfg) -> tuple[int, int]:
    return cfg.n_train, cfg.n_val


def load(cfg: Config, device: torch.device) -> Splits:
    """Targets come from a fixed random two-layer tanh teacher, plus Gaussian noise."""
    g = torch.Generator().manual_seed(cfg.split_seed)
    n = cfg.n_train + cfg.n_val + cfg.n_test
    x = torch.randn(n, cfg.features, generator=g)
    w1 = torch.randn(cfg.features, 32, generator=g) / cfg.features**0.5
    w2 = torch.randn(32, 1, generator=g) / 32**0.5
    y = torch.tanh(x @ w1) @ w2 * 2.0 + cfg.noise * torch.randn(n, 1, generator=g)
    x, y = x.to(device), y.to(device)
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    return Splits(
        spec=DataSpec("regression", (cfg.features,), 1),
        train=(x[:a], y[:a]),
        val=(x[a:b], y[a:b]),
        test=(x[b:], y[b:]),
        info={"source": "generated in code (mupbench.data.synthetic)", "sizes": [a, b - a, n - b]},
    )
