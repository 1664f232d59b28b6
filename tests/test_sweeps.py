"""Sweeps without a cluster: the paper's presets plan the paper's grids, the chunking local
launcher, mupbench-status, and a SIGKILLed run that resumes to the uninterrupted record."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mupbench.config import CONF_DIR, validate
from mupbench.status import expand_grid, load_sweep

REPO = Path(__file__).resolve().parent.parent

# preset: (runs, steps, batch, widths, number of k values, k range)
PAPER = {
    "mlp_california": (5120, 50000, 16, [2**i for i in range(10)], 16, (1e-5, 1.0)),
    "vgg_cifar10": (2048, 50000, 32, [2**i for i in range(8)], 8, (6e-5, 1e-2)),
    "vit_cifar10": (2048, 50000, 32, [2**i for i in range(8)], 8, (6e-5, 1e-2)),
    "transformer_shakespeare": (1536, 20000, 32, [2**i for i in range(6)], 8, (6e-4, 0.1)),
}
SETUP = {"mlp_california": ("mlp", "california_housing"), "vgg_cifar10": ("vgg", "cifar10"),
         "vit_cifar10": ("vit", "cifar10"), "transformer_shakespeare": ("transformer", "tiny_shakespeare")}


def hydra_cfg(*overrides):
    """The composed config with its hydra node, as a multirun launch sees it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def point(jobs, key):
    return [dict(o.split("=", 1) for o in job)[key] for job in jobs]


def cli(args, cwd, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "mupbench.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


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
    import torch

    from mupbench.assemble import build_run
    from mupbench.loop import train

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
    out = train(build_run(run_cfg))
    assert out.status == "completed" and out.steps_done == 2
    assert all(math.isfinite(h["train_loss"]) for h in out.history)
    assert torch.get_default_dtype() == torch.float32


TINY_SWEEP = ["+experiment=mlp_california_quick", "parametrization=mup", "model.width_mult=1,2", "seed=0,1",
              "optimizer.lr=1e-2", "train.steps=40", "train.eval_every=20", "train.eval_batches=2",
              "train.device=cpu", "train.threads=1"]


def test_local_launcher_chunks_then_status_and_relaunch_reruns_only_what_is_missing(tmp_path):
    args = ["-m", *TINY_SWEEP, "name=loc", "hydra/launcher=local", "hydra.launcher.num_jobs=2"]
    out = cli(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "outputs" / "loc"
    recs = {p.parent: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    assert all(r["env"]["submitit_executor"] == "local" for r in recs.values())
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2  # 4 points in 2 jobs

    status = subprocess.run([sys.executable, "-m", "mupbench.status", str(sweep), "--json"], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    s = json.loads(status.stdout)
    assert s["points"] == 4 and s["total"]["completed"] == 4 and s["total"]["pending"] == 0
    assert s["rows"] == [{"setup": "mlp_synthetic", "parametrization": "mup", "completed": 4, "diverged": 0,
                          "failed": 0, "started": 0, "pending": 0}]

    # one point lost, one failed: status says so, with an ETA from the measured steps/s
    lost, failed = sorted(recs)[:2]
    (lost / "result.json").unlink()
    for f in lost.iterdir():
        f.unlink() if f.is_file() else None
    rec = recs[failed]
    (failed / "result.json").write_text(json.dumps({**rec, "status": "failed", "error": "RuntimeError: boom"}))
    _, points = load_sweep(sweep)
    assert sorted(p.state for p in points) == ["completed", "completed", "failed", "pending"]
    text = subprocess.run([sys.executable, "-m", "mupbench.status", str(sweep)], capture_output=True, text=True).stdout
    assert "mlp_synthetic" in text and "50.0%" in text and "ETA" in text

    again = cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 points" in again.stdout + again.stderr and "2 completed and 0 diverged before (skipped), 2 to run" in again.stdout + again.stderr
    _, points = load_sweep(sweep)
    assert [p.state for p in points] == ["completed"] * 4


def test_bad_launcher_setting_is_one_line_error(tmp_path):
    out = cli(["-m", *TINY_SWEEP, "hydra/launcher=local", "hydra.launcher.points_per_job=0"], tmp_path)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1].count("hydra.launcher.points_per_job: 0 must be a positive integer") == 1
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("result.json"))


def test_status_of_a_dir_without_a_sweep_is_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mupbench.status", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1 and "multirun.yaml" in out.stderr


def metrics(run_dir):
    return [(int(r["step"]), r["train_loss"], r["val_loss"]) for r in csv.DictReader((run_dir / "metrics.csv").open())]


def test_sigkilled_run_rerun_gives_the_uninterrupted_record(tmp_path):
    """A run killed with SIGKILL (no chance to clean up) and started again resumes from its last
    checkpoint and ends with the record and metrics of a run that was never interrupted."""
    run = ["train.steps=1500", "train.eval_every=100", "train.ckpt_every=100", "train.device=cpu", "train.threads=1",
           "model.width_mult=4", "optimizer.lr=3e-3", "seed=3"]
    whole = cli([*run, "name=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mupbench.train", *run, "name=killed"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    ckpts = []
    while proc.poll() is None and time.monotonic() < deadline and not ckpts:
        ckpts = list((tmp_path / "outputs" / "killed").glob("*/checkpoint.pt"))
        time.sleep(0.05)
    assert ckpts and proc.poll() is None, "the run ended before it could be killed: raise train.steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = ckpts[0].parent
    assert not (run_dir / "result.json").exists()

    again = cli([*run, "name=killed"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    a = json.loads(next((tmp_path / "outputs" / "whole").glob("*/result.json")).read_text())
    b = json.loads((run_dir / "result.json").read_text())
    assert a["resumed_from"] is None and b["resumed_from"] and b["resumed_from"] % 100 == 0
    same = ("status", "steps_done", "diverged_step", "min_train_loss", "min_val_loss", "final_train_loss",
            "final_val_loss", "num_params", "fingerprint", "setup", "width", "lr", "seed")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert metrics(run_dir) == metrics(next((tmp_path / "outputs" / "whole").glob("*/")))
    assert not (run_dir / "checkpoint.pt").exists()
