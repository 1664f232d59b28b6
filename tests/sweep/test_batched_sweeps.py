"""The batched launcher (hydra/launcher=batched, mupbench.sweep.batched): the seeds and k values
of each width train as one ensemble; each point gets the run dir, record and metrics of its
single run; a relaunch trains nothing. In-process here; the real command in
tests/e2e/test_sweep_batched.py."""

from __future__ import annotations

import pytest
from sweep_helpers import TINY, hydra_cfg, multirun, records

from mupbench.lifecycle import run_point
from mupbench.records import METRICS
from mupbench.sweep.rundirs import task_and_run_dir

RTOL = 1e-5


def test_multirun_with_the_batched_launcher(tmp_path):
    sweep = tmp_path / "s"
    grid = ["model.width_mult=1,2", "optimizer.lr=1e-3,1e-2", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}"]
    multirun("hydra/launcher=batched", *grid)
    recs = records(sweep)
    assert len(recs) == 8 and all(r["status"] == "completed" for r in recs.values())
    assert {r["batched"]["members"] for r in recs.values()} == {4}  # one ensemble per width
    assert all((d / METRICS).exists() for d in recs)
    # the same point run alone (k as the sweep spells it: 0.01): the same dir name, the same numbers
    point = ["model.width_mult=2", "optimizer.lr=0.01", "seed=1", *TINY, f"hydra.sweep.dir={sweep}"]
    task, run_dir = task_and_run_dir(hydra_cfg(*point))
    alone = run_point(task, tmp_path / "alone")
    assert recs[run_dir]["fingerprint"] == alone["fingerprint"]
    assert recs[run_dir]["final_val_loss"] == pytest.approx(alone["final_val_loss"], rel=RTOL)
    multirun("hydra/launcher=batched", *grid)
    assert records(sweep) == recs  # nothing trained again
