"""Model and dataset factories for the custom-model tests (imported by name: model.factory=custom_factories:NAME)."""

from __future__ import annotations

import math

import torch
from torch import nn

NOT_A_FUNCTION = 3


def mlp(width_mult, spec, width=8):
    n = int(width * width_mult)
    return nn.Sequential(nn.Linear(math.prod(spec.input_shape), n), nn.ReLU(), nn.Linear(n, spec.num_outputs))


def no_spec(width_mult):  # wrong signature: no spec
    return nn.Linear(1, 1)


def not_a_module(width_mult, spec):
    return "a string"


def grows_layers(width_mult, spec):  # its structure depends on the width
    n = int(8 * width_mult)
    layers = [nn.Linear(math.prod(spec.input_shape), n)] + [nn.Linear(n, n) for _ in range(int(width_mult))]
    return nn.Sequential(*layers, nn.Linear(n, spec.num_outputs))


def fractional(width_mult, spec):  # no rounding: ζ = 1.5 gives 7.5 units
    n = 5 * width_mult
    return nn.Sequential(nn.Linear(math.prod(spec.input_shape), n), nn.Linear(n, spec.num_outputs))


def shrinks(width_mult, spec):
    n = int(16 / width_mult)
    return nn.Sequential(nn.Linear(math.prod(spec.input_shape), n), nn.Linear(n, spec.num_outputs))


def raises(width_mult, spec):
    raise RuntimeError("the factory broke")


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def blobs(n=96, dim=5, classes=3, as_dataset=False, split_seed=0):
    """A classification dataset: Gaussian blobs, as tensors or as Datasets."""
    g = torch.Generator().manual_seed(split_seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    y = torch.randint(classes, (n,), generator=g)
    x = centres[y] + torch.randn(n, dim, generator=g)
    a, b = n // 2, 3 * n // 4
    parts = [(x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])]
    if as_dataset:
        parts = [_Pairs(*p) for p in parts]
    return {"task": "classification", "train": parts[0], "val": parts[1], "test": parts[2], "info": {"kind": "blobs"}}


def line(n=64):
    """A regression dataset with a 1-D target."""
    x = torch.linspace(-1, 1, n)[:, None]
    y = 3 * x[:, 0] + 1
    return {"task": "regression", "train": (x, y), "val": (x[:16], y[:16]), "test": (x[:16], y[:16])}


def tokens(n=400, vocab=7, context=8):
    ids = torch.arange(n) % vocab
    return {"task": "lm", "train": ids, "val": ids[:100], "test": ids[:100], "context": context}


def bad_task():
    return {"task": "ranking", "train": (), "val": (), "test": ()}


def not_a_dict():
    return [1, 2, 3]
