"""Issue 11's sweep commands as a user types them, each a real process: a plain multirun then
mupbench-status on it (11.1); a multirun with a bad width (11.3); --watch -1 (11.5).
(In-process, fast: tests/sweep/test_commands.py, test_progress.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_plain_multirun_then_status(tmp_path):
    out = run_cli(["-m", "seed=0,1", "optimizer.lr=1e-3,1e-2", "train.steps=60", "train.eval_every=20",
                   "hydra.sweep.dir=outputs/plain"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    status = subprocess.run([sys.executable, "-m", "mupbench.status", "outputs/plain"], cwd=tmp_path, capture_output=True, text=True)
    assert status.returncode == 0 and status.stderr == "" and "all done" in status.stdout
    watch = subprocess.run([sys.executable, "-m", "mupbench.status", "outputs/plain", "--watch", "-1"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert watch.returncode == 2 and len(watch.stderr.strip().splitlines()) == 1 and "--watch: -1: give a number" in watch.stderr


def test_bad_width_in_a_multirun_stops_it_before_any_run(tmp_path):
    out = run_cli(["-m", "model.width_mult=1,2,0.5", "seed=0,1", "train.steps=60", "train.eval_every=20"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("mupbench: error: model.width_mult: ") and "(point #4: model.width_mult=0.5 seed=0 " in line
    assert list(tmp_path.iterdir()) == []
