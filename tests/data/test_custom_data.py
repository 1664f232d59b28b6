"""dataset=custom (mupbench/data/custom.py): a factory's tensors or Datasets become Splits that the
samplers, losses, evaluation and records use unchanged; a bad factory is one ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mupbench.config import compose
from mupbench.data import load_splits, make_sampler
from mupbench.lifecycle import run_point
from mupbench.rules import ConfigError

FACTORIES = Path(__file__).resolve().parent.parent / "models"  # custom_factories.py
RUN = ["train.device=cpu", "train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.batch_size=8"]


@pytest.fixture(autouse=True)
def factories(monkeypatch):
    monkeypatch.syspath_prepend(str(FACTORIES))


def data(*overrides):
    return [*RUN, "dataset=custom", *overrides]


@pytest.mark.parametrize("as_dataset", [False, True], ids=["tensors", "datasets"])
def test_a_classification_factory_trains_the_mlp_and_is_recorded(tmp_path, as_dataset):
    cfg = compose(data("dataset.factory=custom_factories:blobs", f"+dataset.kwargs.as_dataset={str(as_dataset).lower()}",
                       "model.width_mult=2"))
    splits = load_splits(cfg.dataset, torch.device("cpu"))
    assert (splits.spec.task, splits.spec.input_shape, splits.spec.num_outputs) == ("classification", (5,), 3)
    assert splits.train[0].dtype == torch.float32 and splits.train[1].dtype == torch.int64
    assert [len(s[0]) for s in (splits.train, splits.val, splits.test)] == [48, 24, 24]
    rec = run_point(cfg, tmp_path / "r")
    assert rec["status"] == "completed" and rec["data"]["kind"] == "blobs"


def test_tensors_and_datasets_give_the_same_splits():
    a = load_splits(compose(data("dataset.factory=custom_factories:blobs")).dataset, torch.device("cpu"))
    b = load_splits(compose(data("dataset.factory=custom_factories:blobs", "+dataset.kwargs.as_dataset=true")).dataset, torch.device("cpu"))
    assert all(torch.equal(x, y) for sa, sb in ((a.train, b.train), (a.test, b.test)) for x, y in zip(sa, sb))


def test_split_seed_reaches_a_factory_that_takes_it():
    a, b = (load_splits(compose(data("dataset.factory=custom_factories:blobs", f"dataset.split_seed={s}")).dataset, torch.device("cpu"))
            for s in (0, 1))
    assert not torch.equal(a.train[0], b.train[0])


def test_a_regression_target_becomes_one_column():
    cfg = compose(data("dataset.factory=custom_factories:line"))
    splits = load_splits(cfg.dataset, torch.device("cpu"))
    assert splits.spec.num_outputs == 1 and splits.train[1].shape == (64, 1)
    x, y = make_sampler(splits, "train", 8, torch.Generator().manual_seed(0)).next()
    assert x.shape == (8, 1) and y.shape == (8, 1)


def test_an_lm_factory_feeds_the_transformer(tmp_path):
    cfg = compose(data("dataset.factory=custom_factories:tokens", "model=transformer", "model.blocks=1", "model.base_blocks=1"))
    splits = load_splits(cfg.dataset, torch.device("cpu"))
    assert (splits.spec.task, splits.spec.input_shape, splits.spec.num_outputs) == ("lm", (8,), 7)
    assert run_point(cfg, tmp_path / "r")["status"] == "completed"


@pytest.mark.parametrize("factory, words", [
    ("custom_factories:bad_task", "task='ranking'"),
    ("custom_factories:not_a_dict", "returned a list; return a dict with task, train, val and test"),
    ("custom_factories:nothing_here", "cannot import custom_factories:nothing_here"),
])
def test_a_bad_data_factory_is_one_config_error(factory, words):
    with pytest.raises(ConfigError, match="dataset.factory") as e:
        compose(data(f"dataset.factory={factory}"))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_model_that_cannot_take_the_data_is_named():
    with pytest.raises(ConfigError, match="model=transformer takes token windows"):
        compose(data("dataset.factory=custom_factories:blobs", "model=transformer"))
