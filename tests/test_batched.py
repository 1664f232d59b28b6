"""Batched training (mupbench/batched.py): each member of a stacked ensemble is the run its seed
and k give when trained alone, it writes that run's record, and sweeps use it."""

from __future__ import annotations

import json

import pytest
import torch

from mupbench import batched as B  # noqa: F401  (the sweep tests: tests/sweep/, tests/e2e/test_sweep_*.py)
from mupbench.config import compose
from mupbench.records import CHECKPOINT, METRICS, RESULT

BASE = ["train.device=cpu", "train.eval_batches=2"]
MLP = [*BASE, "train.steps=40", "train.eval_every=10", "model.width_mult=2"]
# tiny versions of the other setups, on the embedded synthetic data
IMAGES = ["dataset=synthetic_images", "dataset.n_train=64", "dataset.n_val=32", "dataset.n_test=8", "train.batch_size=4"]
VGG = [*BASE, *IMAGES, "train.steps=8", "train.eval_every=4", "model=vgg"]
TRANSFORMER = [*BASE, "train.steps=12", "train.eval_every=4", "train.batch_size=4", "model=transformer", "model.blocks=1",
               "dataset=synthetic_tokens", "dataset.n_train=2000", "dataset.n_val=500", "dataset.n_test=100"]
RTOL = 1e-5  # batched matmuls round differently from single ones in the last bits


def cfgs(base: list[str], points: list[tuple[int, float]], *extra: str):
    return [compose([*base, *extra, f"seed={s}", f"optimizer.lr={lr}"]) for s, lr in points]


def read(run_dir):
    return json.loads((run_dir / RESULT).read_text())


def test_only_seeds_and_k_may_differ(tmp_path):
    configs = [compose([*MLP, "seed=0"]), compose([*MLP, "seed=1", "model.width_mult=4"])]
    with pytest.raises(ValueError, match="differ only in seed"):
        B.train_points(configs, [tmp_path / "a", tmp_path / "b"])
    # the grouping itself: tests/sweep/test_grouping.py
