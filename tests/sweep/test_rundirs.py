"""mupbench.sweep.rundirs: the paper's presets plan the paper's grids, a grid given only on the
command line (no preset: ``sweeper.params: null``) is planned too, and a point's run dir from
its overrides alone is the one Hydra gives it."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import train_single
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sweep_helpers import hydra_cfg

from mupbench.assemble import build_run
from mupbench.config import CONF_DIR, validate
from mupbench.sweep.rundirs import expand_grid, run_dir_function, run_dirname, task_and_run_dir

# preset: (runs, steps, batch, widths, number of k values, k range)
PAPER = {
    "mlp_california": (5120, 50000, 16, [2**i for i in range(10)], 16, (1e-5, 1.0)),
    "vgg_cifar10": (2048, 50000, 32, [2**i for i in range(8)], 8, (6e-5, 1e-2)),
    "vit_cifar10": (2048, 50000, 32, [2**i for i in range(8)], 8, (6e-5, 1e-2)),
    "transformer_shakespeare": (1536, 20000, 32, [2**i for i in range(6)], 8, (6e-4, 0.1)),
}
SETUP = {"mlp_california": ("mlp", "california_housing"), "vgg_cifar10": ("vgg", "cifar10"),
         "vit_cifar10": ("vit", "cifar10"), "transformer_shakespeare": ("transformer", "tiny_shakespeare")}


def point(jobs, key):
    return [dict(o.split("=", 1) for o in job)[key] for job in jobs]


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_paper_preset_plans_the_papers_grid(preset):
    runs, steps, batch, widths, n_lr, (lo, hi) = PAPER[preset]
    cfg = hydra_cfg(f"+experiment={preset}")
    jobs = expand_grid(cfg)
    assert len(jobs) == runs and len({tuple(j) for j in jobs}) == runs
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.eval_every) == (steps, batch, 200)
    assert (cfg.model.name, cfg.dataset.name, cfg.optimizer.name) == (*SETUP[preset], "adam")
    assert cfg.name == preset and cfg.train.ckpt_every > 0
    assert sorted(set(point(jobs, "parametrization"))) == ["mup", "sp"]
    assert sorted({float(w) for w in point(jobs, "model.width_mult")}) == widths
    assert sorted({int(s) for s in point(jobs, "seed")}) == list(range(16))
    lrs = sorted({float(v) for v in point(jobs, "optimizer.lr")})
    assert len(lrs) == n_lr and lrs[0] == lo and lrs[-1] == hi
    ratio = (hi / lo) ** (1 / (n_lr - 1))  # geometric: every step the same ratio, up to rounding
    assert all(abs(b / a / ratio - 1) < 0.01 for a, b in zip(lrs, lrs[1:]))
    assert point(jobs[:16], "seed") == [str(s) for s in range(16)]  # seeds vary fastest: a chunk of 16 is one (ζ, k)
    for job in (jobs[0], jobs[-1]):  # the extremes compose and validate (the widest model included)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            validate(compose(config_name="config", overrides=job))  # the job's overrides include +experiment


@pytest.mark.parametrize("preset", sorted(PAPER))
def test_quick_preset_is_small_needs_no_download_and_trains(preset):
    cfg = hydra_cfg(f"+experiment={preset}_quick")
    jobs = expand_grid(cfg)
    assert 16 <= len(jobs) <= 100 and cfg.train.steps <= 500 and cfg.name == f"{preset}_quick"
    assert cfg.model.name == SETUP[preset][0] and cfg.dataset.name.startswith("synthetic")
    assert sorted(set(point(jobs, "parametrization"))) == ["mup", "sp"]
    assert len(set(point(jobs, "model.width_mult"))) >= 2 and len(set(point(jobs, "optimizer.lr"))) >= 3
    widest = max(jobs, key=lambda j: float(dict(o.split("=", 1) for o in j)["model.width_mult"]))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        run_cfg = compose(config_name="config", overrides=[*widest, "train.steps=2", "train.eval_every=1", "train.eval_batches=1",
                                                          "train.device=cpu"])
    validate(run_cfg)
    out = train_single(build_run(run_cfg))
    assert out.status == "completed" and out.steps_done == 2
    assert all(math.isfinite(h["train_loss"]) for h in out.history)
    assert torch.get_default_dtype() == torch.float32


def plain_sweep_cfg(*task_overrides: str, preset: str | None = None):
    """What multirun.yaml holds for `mupbench-train -m [+experiment=preset] <task_overrides>`."""
    cfg = hydra_cfg(*([f"+experiment={preset}"] if preset else []))
    OmegaConf.update(cfg, "hydra.overrides.task", list(task_overrides), merge=False)
    return cfg


def test_a_grid_given_only_on_the_command_line_is_planned():
    """Issue 11.1: `sweeper.params: null` (no preset) is the command line's grid, last key fastest."""
    cfg = plain_sweep_cfg("seed=0,1", "optimizer.lr=1e-3,1e-2", "train.steps=60")
    assert cfg.hydra.sweeper.params is None
    assert expand_grid(cfg) == [["seed=0", "optimizer.lr=0.001", "train.steps=60"], ["seed=0", "optimizer.lr=0.01", "train.steps=60"],
                                ["seed=1", "optimizer.lr=0.001", "train.steps=60"], ["seed=1", "optimizer.lr=0.01", "train.steps=60"]]


def test_a_command_line_axis_replaces_the_presets_axis_of_the_same_key():
    jobs = expand_grid(plain_sweep_cfg("+experiment=mlp_california_quick", "seed=5", "model.width_mult=1,2",
                                       preset="mlp_california_quick"))
    assert len(jobs) == 2 * 5 * 2  # parametrization × k × ζ; one seed
    assert set(point(jobs, "seed")) == {"5"} and set(point(jobs, "model.width_mult")) == {"1", "2"}


def test_run_dir_from_the_overrides_is_the_one_hydra_composes():
    jobs = [["+experiment=mlp_california_quick", "model.width_mult=2", "seed=1", "train.device=cpu"],
            ["optimizer.lr=0.01", "name=x", "force=true"], ["train.steps=" + "9" * 300]]
    for job in jobs:
        composed = hydra_cfg(*job)
        expect = task_and_run_dir(composed)[1]
        assert run_dir_function(composed, expect.parent)(job) == expect
    assert run_dirname("") == "base" and run_dirname("+experiment=a/b") == "experiment=a_b"
    long = run_dirname("k=" + "9" * 300)
    assert len(long) < 200 and long == run_dirname("k=" + "9" * 300) and long != run_dirname("k=" + "9" * 301)
