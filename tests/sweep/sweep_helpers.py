"""Helpers for the sweep tests: a multirun composed and launched in-process, as
``mupbench-train -m`` would (the same config tree, sweeper, launcher and task), without
starting a Python; and the composed config with its hydra node, as a launch sees it."""

from __future__ import annotations

import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from mupbench.config import CONF_DIR

# a tiny CPU point: seconds a sweep
TINY = ["train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu", "train.threads=1"]


def hydra_cfg(*overrides: str):
    """The composed config with its hydra node, as a multirun launch sees it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def task(cfg) -> None:
    """The entrypoint's task: one point into its run dir, through the lifecycle."""
    from mupbench.lifecycle import run_point

    run_point(cfg, Path(HydraConfig.get().runtime.output_dir))


def multirun(*overrides: str, task_function=task):
    """``mupbench-train -m *overrides`` in this process; returns Hydra's job returns."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        hydra = GlobalHydra.instance().hydra
        return hydra.multirun(config_name="config", task_function=task_function, overrides=list(overrides),
                              with_log_configuration=False)


def records(sweep_dir: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob("*/result.json"))}


def entrypoint(monkeypatch, cwd: Path, *args: str) -> int:
    """``mupbench-train *args`` run in this process from ``cwd`` (its console-script function,
    with sys.argv set): the exit status it ends with."""
    import sys

    from mupbench.train import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["mupbench-train", *args])
    try:
        main()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    return 0
