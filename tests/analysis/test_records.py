"""mupbench.analysis.records on fabricated run records (see sweep_factory): what is loaded, what
is reported as unfinished, unreadable, missing or duplicated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sweep_factory import INIT_TRAIN, INIT_VAL, WIDTHS, runs, sweep_dir, write_run  # noqa: F401 (fixtures)

from mupbench import analysis as A


def test_load_reads_records_not_names(sweep_dir):
    sweep = A.load_sweep([sweep_dir])
    runs = sweep.runs
    assert len(runs) == 2 * 4 * 5 * 3 - 1
    assert sorted(runs["width_mult"].unique()) == WIDTHS  # not 99, as the names claim
    assert set(runs["parametrization"]) == {"sp", "mup"}
    assert runs["status"].value_counts().to_dict() == {"completed": 115, "diverged": 3, "failed": 1}
    assert [json.loads(c)["optimizer"]["lr"] for c in runs["config"]] == runs["lr"].tolist()
    assert sorted(sweep.unfinished) == [str(sweep_dir / "interrupted"), str(sweep_dir / "started")]
    assert [Path(p).parent.name for p, _ in sweep.unreadable] == ["broken"]
    missing = sweep.missing()
    assert len(missing) == 1
    assert missing.iloc[0][["parametrization", "width_mult", "seed"]].tolist() == ["mup", 4.0, 2]
    assert np.isclose(missing.iloc[0]["lr"], 1e-4)
    problems = "\n".join(sweep.problems())
    assert "unfinished" in problems and "unreadable" in problems and "RuntimeError: boom" in problems
    assert "missing: 1 run" in problems
    assert sweep.summary() == "119 run records: 115 completed, 3 diverged, 1 failed, 2 unfinished, 1 missing"


def test_the_init_loss_comes_from_step_zero_or_the_record(runs, tmp_path):
    assert (runs["init_train_loss"] == INIT_TRAIN).all() and (runs["init_val_loss"] == INIT_VAL).all()
    write_run(tmp_path / "own", init_train_loss=3.5, init_val_loss=4.5)  # the record's own fields win
    no_zero = write_run(tmp_path / "late", seed=1)
    (no_zero / "metrics.csv").write_text("step,train_loss,val_loss,elapsed_s\n50,1.0,2.0,1.0\n")
    gone = write_run(tmp_path / "gone", seed=2)
    (gone / "metrics.csv").unlink()
    got = A.load_runs(tmp_path).set_index("seed")[["init_train_loss", "init_val_loss"]]
    assert got.loc[0].tolist() == [3.5, 4.5]
    assert got.loc[[1, 2]].isna().all().all()  # no step-0 row, no metrics file: unknown, not guessed


def test_a_record_is_valid_by_mupbench_records(tmp_path):
    """The one definition of a valid record: a bare {"status": "completed"} is unreadable here,
    as it is for mupbench-status and the trainer's skip check."""
    write_run(tmp_path / "good")
    for name, text in {"bare": '{"status": "completed"}', "list": "[1, 2]", "odd": '{"status": "running"}'}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(text)
    sweep = A.load_sweep(tmp_path)
    assert len(sweep.runs) == 1
    why = {Path(p).parent.name: w for p, w in sweep.unreadable}
    assert set(why) == {"bare", "list", "odd"}
    assert why["bare"].startswith("lacks ") and "fingerprint" in why["bare"]
    assert why["list"] == "not a JSON object" and "'running'" in why["odd"]


def test_flops_columns_are_read_when_present(tmp_path):
    write_run(tmp_path / "a", flops_per_step=1234, flops_total=123400)
    write_run(tmp_path / "b", seed=1)
    got = A.load_runs(tmp_path).set_index("seed")
    assert got.loc[0, "flops_per_step"] == 1234 and got.loc[0, "flops_total"] == 123400
    assert pd.isna(got.loc[1, "flops_per_step"]) and pd.isna(got.loc[1, "flops_total"])


def test_duplicate_records_keep_the_finished_latest(tmp_path):
    write_run(tmp_path / "a", train=3.0, finished_at="2025-01-01T00:00:00")
    write_run(tmp_path / "b", train=2.0, finished_at="2025-01-02T00:00:00")
    write_run(tmp_path / "c", status="failed", train=None, finished_at="2025-01-03T00:00:00")
    sweep = A.load_sweep([tmp_path, tmp_path / "a"])  # nested dirs: the same file is read once
    assert len(sweep.runs) == 1 and sweep.duplicates == 2 and sweep.conflicts == 0
    assert sweep.runs["min_train_loss"].item() == 2.0
    write_run(tmp_path / "d", train=1.0, steps=999, fingerprint="other")
    sweep = A.load_sweep(tmp_path)
    assert sweep.conflicts == 1 and any(p.startswith("conflicts: 1") for p in sweep.problems())


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_save_and_read_round_trip(runs, tmp_path, suffix):
    back = A.read_runs(A.save_runs(runs, tmp_path / f"runs{suffix}"))
    pd.testing.assert_frame_equal(back, runs)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(A.RecordError, match="not a directory"):
        A.load_sweep(tmp_path / "nope")
    assert A.load_sweep(tmp_path).runs.empty  # an empty sweep is not an error for the library


def test_load_curves(runs):
    curves = A.load_curves(runs.head(4))
    assert len(curves) == 8 and curves["step"].tolist()[:2] == [0, 50]
