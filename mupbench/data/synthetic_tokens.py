"""Token streams generated in code by a random Markov chain: a stand-in for Tiny Shakespeare.

The chain's entropy rate is the lowest loss any model can reach, so it is reported in ``info``
as the target a language model's val loss should approach; ``sharpness`` sets how far it lies
below ln(vocab).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch

from mupbench.rules import ConfigError, integer, number
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DatasetConfig, DataSpec, Splits


@dataclass
class Config(DatasetConfig):
    name: str = "synthetic_tokens"
    vocab: int = 64
    context: int = 32  # tokens per training window
    n_train: int = 50_000  # tokens
    n_val: int = 5_000
    n_test: int = 5_000
    sharpness: float = 3.0  # scale of the transition logits: 0 = uniform; 3 with vocab 64: 1.77 nats vs ln 64 = 4.16


CHECKS = {**DATA_CHECKS, "vocab": integer(ge=2), "context": integer(ge=1), "n_train": integer(ge=1),
          "n_val": integer(ge=1), "n_test": integer(ge=1), "sharpness": number(ge=0)}


def spec(cfg) -> DataSpec:
    return DataSpec("lm", (cfg.context,), cfg.vocab)


def rows(cfg) -> None:
    return None  # windows are drawn at random offsets: any batch size fits


def check(cfg) -> None:
    """Every split must hold more tokens than one window."""
    for split in ("n_train", "n_val", "n_test"):
        if cfg[split] <= cfg.context:
            raise ConfigError(f"dataset.{split}", f"{cfg[split]} tokens do not fill one window of dataset.context={cfg.context} "
                                                  f"(+1 for the target); use more than {cfg.context}")


def transitions(vocab: int, sharpness: float, g: torch.Generator) -> torch.Tensor:
    """A random row-stochastic matrix (float64): row i is the next-token distribution after token i."""
    return torch.softmax(sharpness * torch.randn(vocab, vocab, generator=g, dtype=torch.float64), dim=1)


def stationary(p: torch.Tensor) -> torch.Tensor:
    """The distribution π with π P = π (unique: every transition has positive probability)."""
    v = len(p)
    a = torch.cat([p.T - torch.eye(v, dtype=p.dtype), torch.ones(1, v, dtype=p.dtype)])
    b = torch.zeros(v + 1, 1, dtype=p.dtype)
    b[-1] = 1
    return torch.linalg.lstsq(a, b).solution[:, 0]


def entropy_rate(p: torch.Tensor) -> float:
    """Nats per token: the chain's conditional entropy averaged over its stationary distribution."""
    return -(stationary(p) * (p * p.log()).sum(1)).sum().item()


def sample(p: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` consecutive states of the chain, started from its stationary distribution."""
    cdf = torch.cat([stationary(p)[None], p]).cumsum(1)  # row 0: the start; row i + 1: after token i
    cdf[:, -1] = 1.0  # guard against rounding: every uniform draw in [0, 1) finds a token
    start, *rows = cdf.tolist()
    u = torch.rand(n, generator=g, dtype=torch.float64).tolist()
    state = bisect.bisect_right(start, u[0])
    ids = [state] * n
    for t in range(1, n):  # inherently sequential; bisect on Python lists keeps it ~20 ms per 60k tokens
        state = ids[t] = bisect.bisect_right(rows[state], u[t])
    return torch.tensor(ids, dtype=torch.int64)


def load(cfg, device: torch.device) -> Splits:
    g = torch.Generator().manual_seed(cfg.split_seed)
    p = transitions(cfg.vocab, cfg.sharpness, g)
    ids = sample(p, cfg.n_train + cfg.n_val + cfg.n_test, g).to(device)
    a, b = cfg.n_train, cfg.n_train + cfg.n_val
    info = {"source": "generated in code (mupbench.data.synthetic_tokens)",
            "sizes": {"train": a, "val": cfg.n_val, "test": cfg.n_test}, "entropy_rate": entropy_rate(p)}
    return Splits(spec(cfg), (ids[:a],), (ids[a:b],), (ids[b:],), info)
