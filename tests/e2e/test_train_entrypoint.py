"""The real CLI end to end, in a subprocess, into tmp_path: records, multiruns, divergence, relaunch.
(Bad input: tests/test_cli.py in-process, and three real commands in tests/e2e/test_bad_input_cli.py.)"""

from __future__ import annotations

import csv
import json
import math

import pytest

from conftest import TINY

RECORD_KEYS = {
    "status", "min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss", "diverged_step",
    "num_params", "steps_done", "wall_time_s", "steps_per_s", "config", "env", "setup", "model", "dataset",
    "parametrization", "optimizer", "width_mult", "width", "lr", "seed", "steps",
}

pytestmark = pytest.mark.slow  # the full tier: a Python process per command


def records(root):
    return {p.parent.name: json.loads(p.read_text()) for p in root.rglob("result.json")}


def test_single_run_writes_a_valid_record(cli, tmp_path):
    out = cli(*TINY, "model.width_mult=2", "optimizer.lr=3e-3", "seed=7")
    assert out.returncode == 0, out.stderr
    (name, rec), = records(tmp_path / "outputs").items()
    assert RECORD_KEYS <= rec.keys()
    assert rec["status"] == "completed" and rec["diverged_step"] is None
    assert (rec["width_mult"], rec["width"], rec["lr"], rec["seed"]) == (2.0, 32, 3e-3, 7)
    assert rec["num_params"] == 8 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    assert rec["steps_done"] == 30 and rec["config"]["optimizer"]["lr"] == 3e-3
    assert rec["env"]["torch"] and rec["env"]["device"] == "cpu"
    rows = list(csv.DictReader((tmp_path / "outputs" / "default" / name / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 10, 20, 30]  # every eval_every, plus after the last update
    assert rec["min_train_loss"] == min(float(r["train_loss"]) for r in rows)
    assert rec["min_val_loss"] == min(float(r["val_loss"]) for r in rows)
    assert rec["final_val_loss"] == float(rows[-1]["val_loss"])
    assert rec["min_val_loss"] < float(rows[0]["val_loss"])  # it learned something
    assert str(tmp_path / "outputs" / "default" / name / "result.json") in out.stdout


def test_same_config_same_numbers_and_seed_changes_them(cli, tmp_path):
    cli(*TINY, "name=a"), cli(*TINY, "name=b"), cli(*TINY, "name=c", "seed=1")
    a, b, c = (json.loads(next((tmp_path / "outputs" / n).rglob("result.json")).read_text()) for n in "abc")
    assert a["min_val_loss"] == b["min_val_loss"] and a["final_train_loss"] == b["final_train_loss"]
    assert a["min_val_loss"] != c["min_val_loss"]


def test_multirun_of_four_points_then_relaunch_skips(cli, tmp_path):
    args = ["-m", *TINY, "model.width_mult=1,2", "seed=0,1", "name=sweep"]
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    recs = records(tmp_path / "outputs" / "sweep")
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    assert {(r["width_mult"], r["seed"]) for r in recs.values()} == {(1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)}
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "outputs").rglob("result.json")}
    again = cli(*args)
    assert again.returncode == 0 and again.stdout.count("skipped (already completed)") == 4
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    forced = cli(*args, "force=true")
    assert forced.returncode == 0 and "skipped" not in forced.stdout


def test_huge_lr_is_recorded_as_diverged_with_exit_zero(cli, tmp_path):
    out = cli(*TINY, "optimizer=sgd", "optimizer.lr=1e4", "train.eval_every=5")
    assert out.returncode == 0, out.stderr
    (rec,) = records(tmp_path / "outputs").values()
    assert rec["status"] == "diverged"
    assert isinstance(rec["diverged_step"], int) and 0 < rec["diverged_step"] < 30
    assert rec["steps_done"] == rec["diverged_step"]
    assert math.isfinite(rec["min_train_loss"])  # the minimum is over the finite evaluations before it


def test_console_script_is_installed():
    import shutil

    assert shutil.which("mupbench-train"), "pip install -e . installs the mupbench-train command"
