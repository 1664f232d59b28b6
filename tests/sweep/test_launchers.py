"""mupbench.sweep.launchers and chunks: the chunked submitit launchers split a sweep into
chunks, skip finished points before submitting, run each chunk through its runner, and say a
bad setting in one line. Here the submitit executor runs each job in this process (the real
local and SLURM executors: tests/e2e/test_sweep_local.py, tests/sweep/test_slurm.py)."""

from __future__ import annotations

import logging

import pytest
from sweep_helpers import TINY, multirun, records

from mupbench.sweep import chunks, launchers

SWEEP = ["model.width_mult=1,2", "seed=0,1", "optimizer.lr=1e-2", *TINY]


class InProcessJob:
    def __init__(self, job_id, task, chunk, state):
        self.job_id, self._run = job_id, lambda: task(chunk, state)

    def results(self):
        import os

        os.environ["SUBMITIT_DEBUG_JOB_ID"] = self.job_id  # what submitit's in-process (debug) jobs see
        try:
            return [self._run()]
        finally:
            del os.environ["SUBMITIT_DEBUG_JOB_ID"]

    def stderr(self):
        return ""


class InProcessExecutor:
    """submitit's executor interface, each job run in this process when its result is asked for."""

    arrays: list = []

    def map_array(self, task, chunk_list, states):
        self.arrays.append([len(c) for c in chunk_list])
        return [InProcessJob(f"7_{i}", task, c, s) for i, (c, s) in enumerate(zip(chunk_list, states))]


@pytest.fixture
def in_process(monkeypatch):
    InProcessExecutor.arrays = []
    monkeypatch.setattr(launchers._ChunkedLauncher, "_executor", lambda self: InProcessExecutor())
    return InProcessExecutor.arrays


@pytest.fixture
def launch_log():
    """The launcher's log lines (a handler of its own: each Hydra job reconfigures the root logger)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger(launchers.__name__)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)


@pytest.mark.slow  # trains 8 points through the submitit executor: the full tier (test_sweep_local.py runs it as a user would)
def test_chunks_then_relaunch_skips_finished_points_before_submitting(tmp_path, in_process, launch_log):
    sweep = tmp_path / "s"
    multirun(*SWEEP, "hydra/launcher=local", "hydra.launcher.num_jobs=2", f"hydra.sweep.dir={sweep}")
    assert in_process == [[2, 2]]  # 4 points in 2 jobs
    recs = records(sweep)
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    assert any(line.startswith("4 points in") and line.endswith("0 completed and 0 diverged before (skipped), 4 to run")
               for line in launch_log)

    lost = sorted(recs)[0]
    (lost / "result.json").unlink()
    multirun(*SWEEP, "hydra/launcher=slurm", "hydra.launcher.points_per_job=3", f"hydra.sweep.dir={sweep}")
    assert launch_log[-3].endswith("3 completed and 0 diverged before (skipped), 1 to run")
    assert in_process == [[2, 2], [1]]
    assert records(sweep).keys() == recs.keys()
    assert all(records(sweep)[d] == recs[d] for d in recs if d != lost)  # the others untouched
    multirun(*SWEEP, "hydra/launcher=local", f"hydra.sweep.dir={sweep}")
    assert launch_log[-1].endswith("4 completed and 0 diverged before (skipped), 0 to run") and in_process == [[2, 2], [1]]


def test_the_batched_runner_trains_each_chunk_as_ensembles(tmp_path, in_process):
    """hydra.launcher.runner=mupbench.sweep.batched.run_chunk: a job's chunk trains as ensembles
    and every point gets its own record; the name it had before mupbench.sweep still works."""
    for runner in ("mupbench.sweep.batched.run_chunk", "mupbench.batched.run_chunk"):
        sweep = tmp_path / runner
        multirun("hydra/launcher=local", "hydra.launcher.num_jobs=1", f"hydra.launcher.runner={runner}",
                 "optimizer.lr=1e-3,1e-2", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}")
        recs = records(sweep).values()
        assert len(recs) == 4 and all(r["status"] == "completed" and r["batched"]["members"] == 4 for r in recs)


@pytest.mark.parametrize("launcher, setting, says", [
    ("local", "points_per_job=0", "hydra.launcher.points_per_job: 0 must be a positive integer"),
    ("slurm", "num_jobs=-2", "hydra.launcher.num_jobs: -2 must be a positive integer"),
    ("local", "skip_finished=maybe", "hydra.launcher.skip_finished: 'maybe' must be true or false"),
    ("local", "runner=nowhere.run", "hydra.launcher.runner: cannot use 'nowhere.run': No module named 'nowhere'"),
    ("batched", "forward=x", "hydra.launcher.forward: 'x': choose auto, bmm or vmap"),
    ("batched", "max_members=-1", "hydra.launcher.max_members: -1 must be an integer ≥ 0 (0 = by memory)"),
    ("batched", "lrs=2", "hydra.launcher.lrs: 2 must be true or false"),
])
def test_bad_launcher_setting_is_refused_before_anything_runs(tmp_path, in_process, launcher, setting, says):
    """Checked when Hydra sets the launcher up (not in __init__, whose errors Hydra wraps in
    "Error in call to target …"): the CLI says the message as it is."""
    with pytest.raises(launchers.LauncherError) as e:
        multirun(*SWEEP, f"hydra/launcher={launcher}", f"hydra.launcher.{setting}", f"hydra.sweep.dir={tmp_path / 's'}")
    assert str(e.value) == says
    assert in_process == [] and not (tmp_path / "s").exists()


def test_old_runner_names_resolve_to_their_new_home():
    assert chunks.resolve_runner("mupbench.launching.run_sequential") is chunks.run_sequential
    assert chunks.resolve_runner(chunks.DEFAULT_RUNNER) is chunks.run_sequential
    with pytest.raises(ValueError, match="package.module.function"):
        chunks.resolve_runner("run_sequential")
