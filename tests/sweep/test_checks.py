"""Issue 11.3: every point of a sweep is validated (value checks, not only composition) before
the first run or submission — by the default sweeper, and by each launcher when another sweeper
launches — with one line per distinct problem naming the point; nothing is trained or written."""

from __future__ import annotations

import pytest
from sweep_helpers import TINY, multirun

from mupbench.config import ConfigError, compose
from mupbench.sweep import launchers
from mupbench.sweep.chunks import Point

BAD_WIDTH = ["model.width_mult=1,2,0.5", "seed=0,1", *TINY]  # issue 11.3's sweep: ζ = 0.5 are points #4, #5


def entrypoint_says(*overrides: str) -> str:
    """The one-line refusal the entrypoint gives this single point (mupbench.config's message)."""
    with pytest.raises(ConfigError) as e:
        compose(list(overrides))
    return str(e.value)


WIDTH_LINE = (f"mupbench: error: {entrypoint_says('model.width_mult=0.5', *TINY)} (point #4: "
              "model.width_mult=0.5 seed=0 " + " ".join(TINY) + " and 1 more point; nothing was run)")


def refused(capsys, *overrides):
    with pytest.raises(SystemExit) as e:
        multirun(*overrides)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    return err.strip().splitlines()


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=batched"], ["hydra/launcher=local"], ["hydra/launcher=slurm"]],
                         ids=["basic", "batched", "local", "slurm"])
def test_a_bad_point_stops_the_sweep_before_anything_runs(tmp_path, capsys, launcher):
    """The default sweeper checks all points first: nothing runs, nothing is written (not even
    multirun.yaml, which would change what mupbench-status shows of an earlier sweep there)."""
    assert refused(capsys, *launcher, *BAD_WIDTH, f"hydra.sweep.dir={tmp_path / 's'}") == [WIDTH_LINE]
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("launcher", ["batched", "local"])
def test_the_launchers_check_when_another_sweeper_launches(tmp_path, capsys, launcher):
    """With Hydra's own sweeper (which checks composition only) the launcher checks the values:
    no run dir, no job submitted."""
    lines = refused(capsys, "hydra/sweeper=basic", f"hydra/launcher={launcher}", *BAD_WIDTH, f"hydra.sweep.dir={tmp_path / 's'}")
    assert lines == [WIDTH_LINE]
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["multirun.yaml"]  # Hydra's sweeper wrote it; no runs, no .submitit


def test_one_line_per_distinct_problem(tmp_path, capsys):
    lines = refused(capsys, "model.width_mult=1,0.5", "optimizer.lr=1e-3,-1", "seed=0,1,2", *TINY, f"hydra.sweep.dir={tmp_path / 's'}")
    assert len(lines) == 2
    lr_says = entrypoint_says("optimizer.lr=-1", *TINY)
    assert lines[0].startswith(f"mupbench: error: {lr_says} (point #3: model.width_mult=1 optimizer.lr=-1 seed=0")
    assert lines[0].endswith("and 2 more points; nothing was run)")  # ζ = 0.5 points fail on ζ first: 3 with k = -1 here
    assert lines[1].startswith(f"mupbench: error: {entrypoint_says('model.width_mult=0.5', *TINY)} (point #6: ")
    assert not (tmp_path / "s").exists()


class FakeJob:
    def __init__(self, job_id, stderr="", error="Job 7 (task: 0) has not produced any output (state: CANCELLED by 0)"):
        self.job_id, self._stderr, self._error = job_id, stderr, error

    def stderr(self):
        return self._stderr


def test_a_bad_input_inside_a_job_is_reported_as_that_error_not_as_relaunch():
    """Issue 11.3: a config or data error said inside a job (mupbench: error: …) is that error —
    a relaunch would fail again; a job that was cancelled or killed is lost work: relaunch."""
    chunk = [Point(["seed=0", "dataset.root=/data"], 4)]
    said = FakeJob("12_1", stderr="[log] starting\nmupbench: error: dataset.root: /data is not a directory\n")
    msg = launchers._failure([(said, chunk, RuntimeError("x"))], 2)
    assert msg == "dataset.root: /data is not a directory — job 12_1, point #4: seed=0 dataset.root=/data"
    assert "relaunch" not in msg
    lost = FakeJob("12_0")
    msg = launchers._failure([(lost, chunk, RuntimeError(lost._error))], 2)
    assert msg.startswith("1 of 2 jobs (1 points) ended without results, e.g. job 12_0: Job 7 (task: 0) has not produced")
    assert msg.endswith("relaunch the same command to run them again (finished points are skipped)")


@pytest.mark.parametrize("override", ["train.steps=10", "model.width_mult=2"])
def test_an_override_of_what_the_budget_arms_set_stops_the_budget_sweep(tmp_path, capsys, override):
    """The arms set each run's width and steps, and a command-line value beats a config group's:
    typed beside a budget preset it would give every arm the same one. One line, nothing run."""
    lines = refused(capsys, "+experiment=mlp_california_budget_quick", "hydra/launcher=batched", override,
                    f"hydra.sweep.dir={tmp_path / 's'}")
    key = override.split("=")[0]
    assert len(lines) == 1 and lines[0].startswith(f"mupbench: error: {key}: the budget arms (conf/budget_arm/) set each run's")
    assert f"{override} would replace them in every arm; drop it" in lines[0] and "and 119 more points; nothing was run)" in lines[0]
    assert not (tmp_path / "s").exists()


def test_the_budget_preset_alone_and_a_single_run_with_steps_pass_the_check():
    from mupbench.sweep.checks import arm_clash

    assert arm_clash(["budget_arm=mlp_california_quick_short_1", "parametrization=sp", "seed=0"]) is None
    assert arm_clash(["train.steps=10", "model.width_mult=2"]) is None  # no arm: an ordinary sweep
