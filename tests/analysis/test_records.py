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
    write_run(tmp_path / "d", train=1.0, fingerprint="other")  # the same run key, another config (batch size, say)
    sweep = A.load_sweep(tmp_path)
    assert sweep.conflicts == 1 and any(p.startswith("conflicts: 1") for p in sweep.problems())
    write_run(tmp_path / "e", train=0.5, steps=999, fingerprint="short")  # another horizon: another run, kept
    sweep = A.load_sweep(tmp_path)
    assert sorted(sweep.runs["steps"].tolist()) == [100, 999] and sweep.duplicates == 3 and sweep.conflicts == 1


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


def _axes_config(**kw) -> dict:
    """A record's config with the new axes set (the keys of a config composed today)."""
    opt = {"name": "adam", "lr": 1e-3, "weight_decay": kw.get("wd", 0.0), "wd_mode": kw.get("mode", "coupled"),
           "wd_on_vectors": kw.get("vectors", False), "eps_scaling": kw.get("eps", "none")}
    model = {"name": "transformer", "width_mult": 1.0, "blocks": kw.get("blocks", 6), "base_blocks": 2}
    return {"model": model, "optimizer": opt, "schedule": {"name": kw.get("schedule", "constant")},
            "parametrization": {"name": "mup", "depth_alpha": kw.get("alpha")}}


AXIS_VARIANTS = [{}, {"wd": 0.1}, {"mode": "independent"}, {"vectors": True}, {"eps": "grad"}, {"schedule": "cosine"},
                 {"alpha": 0.5}, {"alpha": 1.0}, {"blocks": 12}]


def test_runs_that_differ_in_any_axis_are_never_duplicates(tmp_path):
    for i, kw in enumerate(AXIS_VARIANTS):  # the same (setup, param, ζ, k, seed) every time
        write_run(tmp_path / f"v{i}", setup="transformer_tokens", config=_axes_config(**kw), fingerprint=f"fp{i}")
    write_run(tmp_path / "short", setup="transformer_tokens", config=_axes_config(), steps=10, fingerprint="short")
    sweep = A.load_sweep(tmp_path)
    runs = sweep.runs
    assert len(runs) == len(AXIS_VARIANTS) + 1 and sweep.duplicates == 0 and sweep.conflicts == 0
    assert set(A.records.AXES) <= set(runs.columns) and set(A.records.AXES) <= set(A.records.RUN)
    assert sorted(runs["weight_decay"].tolist()) == [0.0] * 9 + [0.1]
    assert runs["wd_mode"].value_counts().to_dict() == {"coupled": 9, "independent": 1}
    assert runs["wd_on_vectors"].sum() == 1 and (runs["eps_scaling"] == "grad").sum() == 1
    assert (runs["schedule"] == "cosine").sum() == 1
    assert runs["depth_alpha"].isna().sum() == 8 and sorted(runs["depth_alpha"].dropna()) == [0.5, 1.0]
    assert sorted(runs["blocks"].tolist()) == [6] * 9 + [12] and (runs["base_blocks"] == 2).all()
    assert sorted(runs["steps"].tolist()) == [10] + [100] * 9
    # NA (no depth rule) is a key value like any other: every run is its own group, none dropped
    assert len(A.seed_stats(runs)) == 10 and len(A.table2(runs)) == 10
    assert runs.groupby(A.records.GROUP, observed=True).ngroups < 10  # what plain pandas would have done


def test_an_older_record_without_the_axes_loads_with_their_defaults(tmp_path):
    write_run(tmp_path / "old")  # config: model {name, width_mult}, optimizer {name, lr}: no axis keys
    old = tmp_path / "older"
    write_run(old, seed=1)
    record = json.loads((old / "result.json").read_text())
    del record["config"]  # older still: no config at all
    (old / "result.json").write_text(json.dumps(record))
    runs = A.load_runs(tmp_path)
    assert len(runs) == 2
    for col, want in {"weight_decay": 0.0, "wd_mode": "coupled", "wd_on_vectors": False, "eps_scaling": "none",
                      "schedule": "constant", "steps": 100}.items():
        assert runs[col].tolist() == [want, want], col
    assert runs["depth_alpha"].isna().all() and runs["blocks"].isna().all() and runs["base_blocks"].isna().all()
    assert str(runs["blocks"].dtype) == "Int64" and str(runs["wd_on_vectors"].dtype) == "boolean"
    assert len(A.seed_stats(runs)) == 1 and A.seed_stats(runs)["n_runs"].item() == 2
    assert A.missing_runs(runs).empty
    # a table written before the axis columns existed reads back with them
    path = tmp_path / "old.csv"
    runs.drop(columns=["wd_mode", "blocks", "schedule"]).to_csv(path, index=False)
    back = A.read_runs(path)
    assert back["wd_mode"].tolist() == ["coupled"] * 2 and back["schedule"].tolist() == ["constant"] * 2
    assert back["blocks"].isna().all()


def _setting_config(batch=16, warmup=None, base_blocks=2, follows=False, threads=1, name="a") -> dict:
    """A record's config as composed today, with settings that have no column of their own."""
    cfg = _axes_config(schedule="cosine" if warmup is not None else "constant")
    cfg["model"]["base_blocks"] = base_blocks
    cfg["train"] = {"batch_size": batch, "threads": threads, "steps": 100}
    cfg["parametrization"]["depth_wd_follows_lr"] = follows
    if warmup is not None:
        cfg["schedule"].update(warmup_frac=warmup, min_lr_ratio=0.0)
    if not follows:  # a record written before the key existed: it ran with the default
        del cfg["parametrization"]["depth_wd_follows_lr"]
    return {**cfg, "name": name, "seed": 0}


def test_runs_that_differ_only_in_a_setting_without_a_column_are_kept_apart_and_named(tmp_path):
    """A batch size, a warmup fraction, a base depth: each run is its own curve (a "variant"),
    never a conflict; a key that does not change the numbers (threads, the sweep's name) and a key
    absent from an older record at its default make no variant."""
    cases = {"b16": {}, "b32": {"batch": 32}, "base4": {"base_blocks": 4}, "follows": {"follows": True},
             "w05": {"warmup": 0.05}, "w10": {"warmup": 0.1}, "threads": {"threads": 2, "name": "b"}}
    for zeta in (1.0, 2.0):
        for name, kw in cases.items():
            cfg = _setting_config(**kw)
            cfg["model"]["width_mult"] = zeta
            fp = f"{'b16' if name == 'threads' else name}-{zeta}"  # threads: b16's run, as its fingerprint says
            write_run(tmp_path / f"{name}-{zeta}", setup="transformer_tokens", zeta=zeta, config=cfg, fingerprint=fp,
                      finished_at="2025-01-02" if name == "threads" else "2025-01-01")
    sweep = A.load_sweep(tmp_path)
    kept = sweep.runs.assign(case=lambda d: d["run_dir"].map(lambda p: Path(p).name.split("-")[0]))
    assert sweep.duplicates == 2 and sweep.conflicts == 0 and len(kept) == 12  # threads' records replace b16's
    got = kept.groupby("case")["variant"].agg(lambda v: sorted(set(v.fillna("NA"))))
    constant = "model.base_blocks={}, parametrization.depth_wd_follows_lr={}, train.batch_size={}"
    assert got.to_dict() == {
        "threads": [constant.format(2, False, 16)], "b32": [constant.format(2, False, 32)],
        "base4": [constant.format(4, False, 16)], "follows": [constant.format(2, True, 16)],
        "w05": ["schedule.warmup_frac=0.05"], "w10": ["schedule.warmup_frac=0.1"],  # compared within cosine only
    }
    assert A.records.settings({"optimizer": {"betas": [0.9, 0.99]}})["optimizer.betas"] == "[0.9,0.99]"  # no ", " inside
    assert "variant" in A.records.GROUP and A.varying_axes(kept) == ["schedule", "variant", "width_mult"]
    assert len(A.seed_stats(kept)) == 12  # 6 curves (threads = b16) × 2 widths
    t2 = A.table2_display(A.table2(kept))
    assert "other settings" in t2.columns and t2["other settings"].str.contains("train.batch_size=32").any()


def test_real_records_vary_in_no_setting_across_widths_rates_and_seeds_but_do_in_a_batch_size(tmp_path):
    """Records written by the trainer: ζ, k and seed are columns, so a sweep of only those has no
    variant; the same sweep at another batch size is two curves, told apart by it."""
    from conftest import cfgs

    from mupbench.lifecycle import run_point

    base = ["train.device=cpu", "train.eval_batches=2", "train.steps=4", "train.eval_every=2", "train.threads=1"]
    for batch in (16, 32):
        for i, cfg in enumerate(cfgs([*base, f"train.batch_size={batch}"], [(s, k) for k in (1e-3, 1e-2) for s in (0, 1)])):
            run_point(cfg, tmp_path / f"b{batch}" / f"p{i}")
    one = A.load_sweep(tmp_path / "b16")
    assert len(one.runs) == 4 and one.runs["variant"].isna().all() and not one.problems()
    both = A.load_sweep(tmp_path)
    assert both.duplicates == 0 and both.conflicts == 0 and not both.problems()
    assert sorted(both.runs["variant"].unique()) == ["train.batch_size=16", "train.batch_size=32"]
