"""`mupbench-train -m hydra/launcher=batched …` as typed: each width's seeds and k values train
as one ensemble, each point gets its single run's dir, record and numbers, and a relaunch trains
nothing. (In-process: tests/sweep/test_batched_sweeps.py.)"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


def read(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def test_multirun_with_the_batched_launcher(tmp_path):
    sweep = ["-m", "hydra/launcher=batched", "train.steps=20", "train.eval_every=10", "train.eval_batches=2",
             "train.device=cpu", "model.width_mult=1,2", "optimizer.lr=1e-3,1e-2", "seed=0,1"]
    first = run_cli(sweep, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("\ncompleted (min val loss") == 8
    assert "8 points in 2 batched groups" in first.stdout + first.stderr
    dirs = sorted(p.parent for p in (tmp_path / "outputs" / "default").glob("*/result.json"))
    assert len(dirs) == 8
    records = [read(d) for d in dirs]
    assert {r["batched"]["members"] for r in records} == {4}
    alone = run_cli(["train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu",
                     "model.width_mult=2", "optimizer.lr=1e-2", "seed=1", "hydra.run.dir=single"], tmp_path)
    assert alone.returncode == 0, alone.stderr[-2000:]
    single = read(tmp_path / "single")
    match = [r for r in records if (r["width_mult"], r["lr"], r["seed"]) == (2.0, 1e-2, 1)]
    assert len(match) == 1 and match[0]["fingerprint"] == single["fingerprint"]
    assert match[0]["final_val_loss"] == pytest.approx(single["final_val_loss"], rel=1e-5)
    again = run_cli(sweep, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "\ncompleted (min val loss" not in again.stdout
    assert again.stdout.count("skipped (already completed)") == 8
    assert [read(d) for d in dirs] == records
