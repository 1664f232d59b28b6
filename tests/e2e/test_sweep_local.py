"""The chunked local launcher through the real command: submitit's LocalExecutor starts each job
as its own Python; mupbench-status reads the sweep; a relaunch reruns only what is missing; a
bad input inside a job is reported as that error. (In-process: tests/sweep/test_launchers.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow

TINY_SWEEP = ["+experiment=mlp_california_quick", "parametrization=mup", "model.width_mult=1,2", "seed=0,1",
              "optimizer.lr=1e-2", "train.steps=40", "train.eval_every=20", "train.eval_batches=2",
              "train.device=cpu", "train.threads=1"]


def status(*args):
    return subprocess.run([sys.executable, "-m", "mupbench.status", *map(str, args)], capture_output=True, text=True)


def test_local_launcher_chunks_then_status_and_relaunch_reruns_only_what_is_missing(tmp_path):
    args = ["-m", *TINY_SWEEP, "name=loc", "hydra/launcher=local", "hydra.launcher.num_jobs=2"]
    out = run_cli(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    sweep = tmp_path / "outputs" / "loc"
    recs = {p.parent: json.loads(p.read_text()) for p in sweep.glob("*/result.json")}
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    assert all(r["env"]["submitit_executor"] == "local" for r in recs.values())
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2  # 4 points in 2 jobs

    s = status(sweep, "--json")
    assert s.returncode == 0, s.stderr
    s = json.loads(s.stdout)
    assert s["points"] == 4 and s["total"]["completed"] == 4 and s["total"]["pending"] == 0
    assert s["rows"] == [{"setup": "mlp_synthetic", "parametrization": "mup", "completed": 4, "diverged": 0,
                          "failed": 0, "started": 0, "pending": 0}]

    # one point lost, one failed: status says so
    lost, failed = sorted(recs)[:2]
    for f in lost.iterdir():
        f.unlink() if f.is_file() else None
    (failed / "result.json").write_text(json.dumps({**recs[failed], "status": "failed", "error": "RuntimeError: boom"}))
    text = status(sweep).stdout
    assert "mlp_synthetic" in text and "50.0%" in text and "ETA" in text

    again = run_cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 completed and 0 diverged before (skipped), 2 to run" in again.stdout + again.stderr
    assert json.loads(status(sweep, "--json").stdout)["total"]["completed"] == 4


def test_chunked_local_launcher_with_the_batched_runner(tmp_path):
    """On the chunked launchers (local here; slurm the same) the runner trains each job's chunk
    as ensembles: hydra.launcher.runner=mupbench.sweep.batched.run_chunk."""
    sweep = ["-m", "hydra/launcher=local", "hydra.launcher.num_jobs=1", "hydra.launcher.runner=mupbench.sweep.batched.run_chunk",
             "train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu", "optimizer.lr=1e-3,1e-2", "seed=0,1"]
    out = run_cli(sweep, tmp_path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
    read = lambda: [json.loads(p.read_text()) for p in sorted((tmp_path / "outputs" / "default").glob("*/result.json"))]  # noqa: E731
    records = read()
    assert len(records) == 4 and all(r["status"] == "completed" and r["batched"]["members"] == 4 for r in records)
    again = run_cli(sweep, tmp_path)
    assert again.returncode == 0 and "4 completed and 0 diverged before (skipped), 0 to run" in again.stdout + again.stderr
    assert read() == records


def test_a_bad_input_inside_a_job_is_that_error_not_relaunch(tmp_path):
    """Issue 11.3: a data error found inside the jobs (the files are not where dataset.root says;
    the launching process cannot know) ends the launch with that error in one line, not with
    "… ended without results … relaunch"."""
    (tmp_path / "empty").mkdir()
    out = run_cli(["-m", "hydra/launcher=local", "hydra.launcher.num_jobs=2", "seed=0,1", "dataset=california_housing",
                   f"dataset.root={tmp_path / 'empty'}", "train.steps=20", "train.eval_every=10", "train.device=cpu"], tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert lines[-1].startswith("mupbench: error: ") and "dataset.root" in lines[-1] and "relaunch" not in lines[-1]
    assert " — job " in lines[-1] and "point #0: seed=0 dataset=california_housing" in lines[-1]
    assert not list(tmp_path.rglob("result.json"))


def test_bad_launcher_setting_is_one_line_error(tmp_path):
    out = run_cli(["-m", *TINY_SWEEP, "hydra/launcher=local", "hydra.launcher.points_per_job=0"], tmp_path)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == ["mupbench: error: hydra.launcher.points_per_job: 0 must be a positive integer"]
    assert not list(tmp_path.rglob("result.json"))
