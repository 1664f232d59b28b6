"""A run killed with SIGKILL (no chance to clean up) and started again resumes from its last
checkpoint and ends with the record and metrics of a run that was never interrupted: what makes
relaunching a sweep safe. A real process, since only a real process can be SIGKILLed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def metrics(run_dir):
    return [(int(r["step"]), r["train_loss"], r["val_loss"]) for r in csv.DictReader((run_dir / "metrics.csv").open())]


def test_sigkilled_run_rerun_gives_the_uninterrupted_record(tmp_path):
    run = ["train.steps=1500", "train.eval_every=100", "train.ckpt_every=100", "train.device=cpu", "train.threads=1",
           "model.width_mult=4", "optimizer.lr=3e-3", "seed=3"]
    whole = run_cli([*run, "name=whole"], tmp_path)
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

    again = run_cli([*run, "name=killed"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    a = json.loads(next((tmp_path / "outputs" / "whole").glob("*/result.json")).read_text())
    b = json.loads((run_dir / "result.json").read_text())
    assert a["resumed_from"] is None and b["resumed_from"] and b["resumed_from"] % 100 == 0
    same = ("status", "steps_done", "diverged_step", "min_train_loss", "min_val_loss", "final_train_loss",
            "final_val_loss", "num_params", "fingerprint", "setup", "width", "lr", "seed")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert metrics(run_dir) == metrics(next((tmp_path / "outputs" / "whole").glob("*/")))
    assert not (run_dir / "checkpoint.pt").exists()
