"""A run's fingerprint: what identifies its numbers, and stays the same when mupbench gains options."""

from __future__ import annotations

import dataclasses

import pytest

from mupbench import records as R
from mupbench.config import compose

# fingerprints computed by mupbench at a695dce (session 2, before the axes, depth and tracker keys
# existed): `mupbench.train.fingerprint(compose(overrides))` in a checkout of that commit
BEFORE_THE_AXES = [
    ([], "a2e1f01115e839be"),
    (["parametrization=sp", "model.width_mult=4", "optimizer.lr=0.01", "seed=3"], "df0aa672a05500b7"),
    (["model=transformer", "dataset=synthetic_tokens", "model.blocks=2"], "52aa449c92ef7d88"),
    (["optimizer=sgd", "parametrization=sp"], "ed63ca53a25907c8"),
    (["model=vit", "dataset=synthetic_images"], "17ad3c99a360d1b6"),
]


@pytest.mark.parametrize("overrides, before", BEFORE_THE_AXES)
def test_runs_recorded_before_the_new_keys_keep_their_fingerprint(overrides, before):
    assert R.fingerprint(compose(overrides)) == before


@pytest.mark.parametrize("override", ["optimizer.eps_scaling=grad", "optimizer.weight_decay=0.1", "optimizer.wd_mode=independent",
                                      "optimizer.wd_on_vectors=true", "schedule=cosine", "model.base_blocks=3",
                                      "parametrization.depth_alpha=1.0", "parametrization.depth_wd_follows_lr=true"])
def test_each_added_key_off_its_default_changes_the_fingerprint(override):
    base = ["model=transformer", "dataset=synthetic_tokens", "model.blocks=2"]
    assert R.fingerprint(compose([*base, override])) != R.fingerprint(compose(base))


def test_the_added_keys_defaults_are_the_schemas():
    """ADDED_LATER may only hold each key's schema default: anything else would conflate runs."""
    cfg = compose(["model=transformer", "dataset=synthetic_tokens"])
    for section, defaults in R.ADDED_LATER.items():
        for key, default in defaults.items():
            assert cfg[section][key] == default and type(cfg[section][key]) is type(default), f"{section}.{key}"
    from mupbench.config import AdamConfig, ParametrizationConfig

    fields = {f.name: f.default for cls in (AdamConfig, ParametrizationConfig) for f in dataclasses.fields(cls)}
    for section in ("optimizer", "parametrization"):
        for key, default in R.ADDED_LATER[section].items():
            assert fields[key] == default, f"{section}.{key}"
