"""validate(cfg) refuses a selected tracker whose package is not installed (issue 15 item 1): one
line naming the extra, before any work."""

from __future__ import annotations

import importlib.util

import pytest

from mupbench.config import ConfigError, compose, validate


def test_a_selected_tracker_that_is_not_installed_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    cfg = compose(["train.device=cpu"])
    cfg.logger.mlflow.enabled = True
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert e.value.key == "logger=mlflow" and "pip install -e" in str(e.value) and "[trackers]" in str(e.value)
    assert "\n" not in str(e.value)
    cfg.logger.mlflow.enabled = False
    validate(cfg)  # nothing selected: nothing imported, nothing refused
