"""conf/dataset/*.yaml compose into each module's typed schema; typos are rejected when composed."""

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mupbench.config import compose
from mupbench.data import dataset_module, load_splits

MINE = ["california_housing", "cifar10", "tiny_shakespeare", "synthetic_images", "synthetic_tokens"]
MODEL = {"tiny_shakespeare": "model=transformer", "synthetic_tokens": "model=transformer"}  # the default MLP takes no tokens


@pytest.mark.parametrize("name", MINE)
def test_yaml_matches_the_schema(name):
    cfg = compose([f"dataset={name}", MODEL.get(name, "model=mlp")]).dataset
    typed = OmegaConf.to_object(cfg)
    schema = dataset_module(name).Config
    assert type(typed) is schema and typed == schema()  # the YAML restates the defaults, nothing else


@pytest.mark.parametrize("name", MINE)
def test_typos_are_rejected(name):
    with pytest.raises(ConfigCompositionException, match="dataset.standardise"):
        compose([f"dataset={name}", "dataset.standardise=true"])
    with pytest.raises(ConfigCompositionException, match="dataset.split_seed=many"):
        compose([f"dataset={name}", "dataset.split_seed=many"])


def test_composed_config_loads():
    cfg = compose(["dataset=synthetic_tokens", "model=transformer", "dataset.n_train=2000", "dataset.vocab=16"]).dataset
    splits = load_splits(cfg, torch.device("cpu"))
    assert splits.spec.num_outputs == 16 and len(splits.train[0]) == 2000
