"""mupbench-status (mupbench.sweep.progress): every multirun can be read — a plain one given
on the command line too, batched or not — a result.json is done only if it is a valid record,
and bad arguments are one line."""

from __future__ import annotations

import json
import sys
import shutil

import pytest
from sweep_helpers import multirun, records

from mupbench.status import main as status
from mupbench.sweep.progress import load_sweep

# issue 11.1's command: `mupbench-train -m seed=0,1 optimizer.lr=1e-3,1e-2 train.steps=60
# train.eval_every=20 hydra.sweep.dir=outputs/plain && mupbench-status outputs/plain`
PLAIN = ["seed=0,1", "optimizer.lr=1e-3,1e-2", "train.steps=60", "train.eval_every=20"]


@pytest.fixture(scope="module")
def plain_sweep(tmp_path_factory):
    """The plain 4-point sweep of issue 11.1, run once in this process; tests get a copy."""
    sweep = tmp_path_factory.mktemp("sweeps") / "plain"
    multirun(*PLAIN, "train.device=cpu", "train.threads=1", f"hydra.sweep.dir={sweep}")
    return sweep


@pytest.fixture
def sweep(plain_sweep, tmp_path):
    shutil.copytree(plain_sweep, tmp_path / "plain")
    return tmp_path / "plain"


def run_status(capsys, *args):
    """mupbench-status in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        status([str(a) for a in args])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)  # what the interpreter prints for sys.exit("…")
    out = capsys.readouterr()
    return code, out.out, out.err


def test_status_of_a_plain_multirun_without_a_preset(sweep, capsys):
    """Issue 11.1: the README's first multirun form (no preset: sweeper.params is null)."""
    code, out, err = run_status(capsys, sweep)
    assert code == 0 and err == ""
    assert "4 points" in out and "all done" in out and "4/4 done" in out
    code, out, _ = run_status(capsys, sweep, "--json")
    s = json.loads(out)
    assert code == 0 and s["points"] == 4 and s["total"]["completed"] == 4 and s["unreadable"] == []


def test_status_of_a_batched_plain_multirun(tmp_path, capsys):
    """Issue 11.1, batched: the same plain sweep through hydra/launcher=batched."""
    multirun("hydra/launcher=batched", *PLAIN, "train.device=cpu", "train.threads=1", f"hydra.sweep.dir={tmp_path / 'b'}")
    assert {r["batched"]["members"] for r in records(tmp_path / "b").values()} == {4}
    code, out, err = run_status(capsys, tmp_path / "b")
    assert code == 0 and err == "" and "4/4 done" in out and "all done" in out


def test_a_result_of_only_a_status_is_not_done(sweep, capsys):
    """Issue 11.8: {"status": "completed"} is not a record (mupbench.records' rule, the report's
    and the skip check's): the point is not done, and status says why."""
    run_dir = sorted(records(sweep))[0]
    (run_dir / "result.json").write_text(json.dumps({"status": "completed"}))
    _, points = load_sweep(sweep)
    assert sorted(p.state for p in points) == ["completed", "completed", "completed", "started"]
    code, out, err = run_status(capsys, sweep)
    assert code == 0 and "3/4 done" in out and "all done" not in out
    assert "1 result.json not a valid record" in out and "lacks fingerprint" in out
    code, out, _ = run_status(capsys, sweep, "--json")
    assert json.loads(out)["unreadable"][0]["run_dir"] == str(run_dir)


def test_lost_and_failed_points_and_the_eta(sweep, capsys):
    recs = records(sweep)
    lost, failed = sorted(recs)[:2]
    shutil.rmtree(lost)
    (failed / "result.json").write_text(json.dumps({**recs[failed], "status": "failed", "error": "RuntimeError: boom"}))
    _, points = load_sweep(sweep)
    assert sorted(p.state for p in points) == ["completed", "completed", "failed", "pending"]
    code, out, _ = run_status(capsys, sweep)
    assert code == 0 and "mlp_synthetic" in out and "50.0%" in out and "ETA" in out
    assert "1 failed (error in each result.json): relaunching the same command runs them again" in out


@pytest.mark.parametrize("watch", ["-1", "0", "nan", "soon"])
def test_watch_must_be_a_positive_number_of_seconds(sweep, capsys, watch):
    """Issue 11.5: --watch -1 (and 0) refused in one line, before reading anything."""
    code, out, err = run_status(capsys, sweep, f"--watch={watch}")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"mupbench-status: error: argument --watch: {watch}: give a number of seconds > 0 "
                                        "(leave --watch out to print once) (--help lists the options)"]


@pytest.mark.parametrize("args, says", [([], "the following arguments are required: sweep_dir"),
                                        (["x", "--jsn"], "unrecognized arguments: --jsn")])
def test_bad_arguments_are_one_line(capsys, args, says):
    code, out, err = run_status(capsys, *args)
    assert code == 2 and out == "" and err.strip().splitlines() == [f"mupbench-status: error: {says} (--help lists the options)"]


def test_status_of_a_dir_without_a_sweep_is_one_line_error(tmp_path, capsys):
    code, _, err = run_status(capsys, tmp_path)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "multirun.yaml" in err and "Traceback" not in err
    (tmp_path / "multirun.yaml").write_text("a: [\n")
    code, _, err = run_status(capsys, tmp_path)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "not readable YAML" in err
    (tmp_path / "multirun.yaml").write_text("a: 1\n")
    code, _, err = run_status(capsys, tmp_path)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "not a multirun.yaml written by Hydra" in err


def test_watch_on_a_terminal_redraws_in_place_and_in_a_log_appends(sweep, capsys, monkeypatch):
    """Issue 15 item 5: --watch is a live display on a terminal (the screen redrawn, bar and ETA
    in place) and plain tables one after another elsewhere (SLURM logs stay readable)."""
    from mupbench.status import CLEAR

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    code, out, _ = run_status(capsys, sweep, "--watch=1")
    assert code == 0 and out.startswith(CLEAR) and "all done" in out and "[###" in out
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    code, out, _ = run_status(capsys, sweep, "--watch=1")
    assert code == 0 and CLEAR not in out and "all done" in out
