"""Datasets as tensors on the device, and the samplers that draw training batches from them.

Every dataset module exposes a config dataclass (its Hydra schema), the rules of its fields
(``CHECKS``), ``spec(cfg) -> DataSpec`` and ``rows(cfg) -> (train, val) | None`` (cheap: no file is
read, so validation can pair model and data before any work) and ``load(cfg, device) -> Splits``. ``DATASETS`` maps the config group option to the module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from omegaconf import MISSING

from mupbench.rules import integer, one_of, optional_dir

# group option -> module (imported on first use, so optional dependencies stay optional)
DATASETS = {
    "synthetic": "mupbench.data.synthetic",
    "california_housing": "mupbench.data.california_housing",
    "cifar10": "mupbench.data.cifar10",
    "synthetic_images": "mupbench.data.synthetic_images",
    "tiny_shakespeare": "mupbench.data.tiny_shakespeare",
    "synthetic_tokens": "mupbench.data.synthetic_tokens",
    "custom": "mupbench.data.custom",  # your own: dataset.factory=package.module:function
}


@dataclass
class DatasetConfig:
    """Schema fields every dataset shares; each dataset module subclasses it as ``Config``."""

    name: str = MISSING
    root: Optional[str] = None  # a local copy of the files; None = the download cache
    split_seed: int = 0  # fixes the train/val/test split, the same for every run of a sweep


# the rules of DatasetConfig's fields (each dataset module extends them as its own ``CHECKS``)
CHECKS = {
    "name": one_of(*DATASETS, hint="pick the dataset with the group, dataset=NAME"),
    "root": optional_dir(hint="point dataset.root at a local copy of the dataset's files, or leave it null to download"),
    "split_seed": integer(ge=0),
}


class DataError(ValueError):
    """A dataset cannot be provided as configured (missing files, bad checksum, offline)."""


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data: the task, one input's shape, the outputs."""

    task: str  # "regression" | "classification" | "lm"
    input_shape: tuple[int, ...]  # (8,) features, (3, 32, 32) image, (context,) token window
    num_outputs: int  # 1 for regression, classes, or vocabulary size


@dataclass
class Splits:
    """Train / val / test tensors on the device.

    regression, classification: each split is ``(x, y)``; lm: each split is ``(ids,)``, a 1-D
    int64 token stream from which windows of ``spec.input_shape[0]`` tokens are cut.
    """

    spec: DataSpec
    train: tuple[torch.Tensor, ...]
    val: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source, sha256, sizes


def dataset_module(name: str):
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return importlib.import_module(DATASETS[name])


def dataset_spec(cfg) -> DataSpec:
    """The task, input shape and outputs of the dataset ``cfg`` describes, without loading it."""
    return dataset_module(cfg.name).spec(cfg)


def load_splits(cfg, device: torch.device) -> Splits:
    """Load the dataset named by ``cfg.name`` onto ``device``."""
    return dataset_module(cfg.name).load(cfg, device)


class IndexSampler:
    """Mini-batches of rows drawn without replacement; a fresh permutation every epoch.

    Sampling is index arithmetic on the tensors' device: no collation, no host sync.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator):
        self.tensors, self.batch_size, self.generator = tensors, batch_size, generator
        self.n = tensors[0].shape[0]
        if batch_size > self.n:
            raise DataError(f"train.batch_size={batch_size} exceeds the split's {self.n} rows; use a smaller batch")
        self.perm = torch.empty(0, dtype=torch.long, device=tensors[0].device)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, ...]:
        if self.pos + self.batch_size > self.perm.numel():  # drop the ragged tail, reshuffle
            self.perm = torch.randperm(self.n, generator=self.generator, device=self.generator.device)
            self.perm = self.perm.to(self.tensors[0].device)
            self.pos = 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return tuple(t[idx] for t in self.tensors)

    def state_dict(self) -> dict:
        return {"perm": self.perm, "pos": self.pos, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.perm, self.pos = state["perm"].to(self.tensors[0].device), state["pos"]
        self.generator.set_state(state["rng"])


class WindowSampler:
    """Language-model batches: ``batch_size`` windows at uniform random offsets of a token stream."""

    def __init__(self, tensors: tuple[torch.Tensor], batch_size: int, generator: torch.Generator, context: int):
        (self.ids,) = tensors
        self.batch_size, self.generator, self.context = batch_size, generator, context
        if self.ids.numel() <= context:
            raise DataError(f"a token stream of {self.ids.numel()} tokens is too short for context {context}")
        self.arange = torch.arange(context + 1, device=self.ids.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        high = self.ids.numel() - self.context
        offsets = torch.randint(high, (self.batch_size, 1), generator=self.generator, device=self.generator.device)
        window = self.ids[offsets.to(self.ids.device) + self.arange]
        return window[:, :-1], window[:, 1:]

    def state_dict(self) -> dict:
        return {"rng": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng"])


def make_sampler(splits: Splits, split: str, batch_size: int, generator: torch.Generator):
    tensors = getattr(splits, split)
    if splits.spec.task == "lm":
        return WindowSampler(tensors, batch_size, generator, splits.spec.input_shape[0])
    return IndexSampler(tensors, batch_size, generator)
