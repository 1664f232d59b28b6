"""mupbench.analysis on fabricated run records whose answers are known by construction.

The synthetic sweep (setup "mlp_synth", Adam, ζ ∈ {1, 2, 4, 8}, log10 k ∈ {-4, -3.5, -3, -2.5, -2},
seeds 0–2) has seed-mean train loss  exp((log10 k − x0)² − 0.1·log2 ζ)  exactly, with seed offsets
×(0.9, 1.0, 1.1) (std = 0.1 × mean) and val loss = 2 × train loss:
- SP:  x0 = −2.5 − 0.5·log2 ζ  (the optimum drifts 0.5 decades left per doubling; at ζ = 8 it sits on
  the grid's edge), 3 diverged runs (ζ = 4: 1, ζ = 8: 2, all at k = 1e-2, with a tempting tiny loss);
- μP:  x0 = −2.8 at every width (between grid points: only the fit finds it), one failed run,
  one run missing altogether.
Plus two unfinished run dirs (metrics.csv only; train.log only) and one unreadable result.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mupbench import analysis as A
from mupbench.analysis.report import main as report_main

WIDTHS = [1, 2, 4, 8]
LOG_K = [-4.0, -3.5, -3.0, -2.5, -2.0]
SEED_FACTOR = {0: 0.9, 1: 1.0, 2: 1.1}
DIVERGED = {("sp", 4, -2.0, 2), ("sp", 8, -2.0, 0), ("sp", 8, -2.0, 1)}
FAILED = {("mup", 2, -3.0, 1)}
MISSING = {("mup", 4, -4.0, 2)}


def x0(param: str, zeta: float) -> float:
    return -2.5 - 0.5 * math.log2(zeta) if param == "sp" else -2.8


def base_loss(param: str, zeta: float, log_k: float) -> float:
    return math.exp((log_k - x0(param, zeta)) ** 2 - 0.1 * math.log2(zeta))


def write_run(run_dir: Path, *, status="completed", param="sp", zeta=1.0, lr=1e-3, seed=0, train=1.0,
              val=2.0, setup="mlp_synth", optimizer="adam", steps=100, error=None, diverged_step=None,
              finished_at="2025-01-01T00:00:00", fingerprint=None) -> Path:
    """Fabricate a run dir as train.py writes it: result.json + metrics.csv."""
    run_dir.mkdir(parents=True, exist_ok=True)
    model, dataset = setup.split("_", 1)
    record = {
        "status": status, "setup": setup, "model": model, "dataset": dataset, "parametrization": param,
        "optimizer": optimizer, "width_mult": float(zeta), "width": int(16 * zeta), "lr": lr, "seed": seed,
        "num_params": 433, "steps": steps, "steps_done": steps if status == "completed" else steps // 2,
        "min_train_loss": train, "min_val_loss": val, "final_train_loss": train, "final_val_loss": val,
        "diverged_step": diverged_step, "wall_time_s": 1.5, "steps_per_s": 66.0, "error": error,
        "config": {"model": {"name": model, "width_mult": zeta}, "optimizer": {"name": optimizer, "lr": lr}},
        "env": {"python": "3.12", "torch": "2.13", "mupbench": "0.1.0", "device": "cpu"},
        "started_at": "2025-01-01T00:00:00", "finished_at": finished_at,
        "fingerprint": fingerprint or f"fp-{setup}-{param}-{steps}",
    }
    (run_dir / "result.json").write_text(json.dumps(record))
    pd.DataFrame({"step": [0, 50], "train_loss": [5.0, train], "val_loss": [6.0, val], "elapsed_s": [0.0, 1.0]}).to_csv(
        run_dir / "metrics.csv", index=False)
    return run_dir


def make_sweep(root: Path) -> Path:
    """The synthetic sweep described in the module docstring, under misleading directory names."""
    i = 0
    for param in ("sp", "mup"):
        for zeta in WIDTHS:
            for log_k in LOG_K:
                for seed, factor in SEED_FACTOR.items():
                    key = (param, zeta, log_k, seed)
                    if key in MISSING:
                        continue
                    i += 1
                    # the names lie on purpose: analysis must read the records, never the names
                    run_dir = root / f"mup_zeta99_lr1_seed7_{i:03d}"
                    loss = base_loss(param, zeta, log_k) * factor
                    if key in DIVERGED:
                        write_run(run_dir, status="diverged", param=param, zeta=zeta, lr=10**log_k, seed=seed,
                                  train=1e-6, val=1e-6, diverged_step=42)
                    elif key in FAILED:
                        write_run(run_dir, status="failed", param=param, zeta=zeta, lr=10**log_k, seed=seed,
                                  train=None, val=None, error="RuntimeError: boom")
                    else:
                        write_run(run_dir, param=param, zeta=zeta, lr=10**log_k, seed=seed, train=loss, val=2 * loss)
    unfinished = root / "interrupted"
    unfinished.mkdir()
    (unfinished / "metrics.csv").write_text("step,train_loss,val_loss,elapsed_s\n0,1.0,1.0,0.0\n")
    started = root / "started"  # killed before its first checkpoint: only Hydra's job log
    started.mkdir()
    (started / "train.log").write_text("[mupbench][INFO] - step 0/100\n")
    broken = root / "broken"
    broken.mkdir()
    (broken / "result.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def runs(sweep_dir) -> pd.DataFrame:
    return A.load_runs(sweep_dir)


# ---- records ----------------------------------------------------------------------------------


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


# ---- aggregation and Table 2 ------------------------------------------------------------------


def test_seed_stats(runs):
    stats = A.seed_stats(runs).set_index(["parametrization", "width_mult"]).sort_index()
    for param in ("sp", "mup"):
        for zeta in WIDTHS:
            for log_k in LOG_K:
                row = stats.loc[(param, float(zeta))].sort_values("lr").iloc[LOG_K.index(log_k)]
                n_div = sum((param, zeta, log_k, s) in DIVERGED for s in SEED_FACTOR)
                assert row["n_diverged"] == n_div
                if n_div:
                    assert row["min_train_loss_objective"] == math.inf
                    continue
                seeds = [s for s in SEED_FACTOR if (param, zeta, log_k, s) not in FAILED | MISSING]
                mean = base_loss(param, zeta, log_k) * np.mean([SEED_FACTOR[s] for s in seeds])
                assert row["min_train_loss_n"] == len(seeds)
                assert np.isclose(row["min_train_loss_mean"], mean, rtol=1e-12)
                assert np.isclose(row["min_val_loss_mean"], 2 * mean, rtol=1e-12)
                assert row["min_train_loss_objective"] == row["min_train_loss_mean"]
                if len(seeds) == 3:
                    assert np.isclose(row["min_train_loss_std"], 0.1 * mean, rtol=1e-9)


def test_diverged_counts(runs):
    counts = A.diverged_counts(runs)
    sp = counts[counts["parametrization"] == "sp"].set_index("width_mult")["n_diverged"].to_dict()
    assert sp == {1.0: 0, 2.0: 0, 4.0: 1, 8.0: 2}
    assert counts[counts["parametrization"] == "mup"]["n_diverged"].sum() == 0


def test_table2(runs):
    t2 = A.table2(runs).set_index("parametrization")
    assert list(t2.index) == ["sp", "mup"]
    # SP: log loss minimal (−0.3) at ζ = 8, k = 1e-4; the diverged runs' 1e-6 must not win
    sp, mup = t2.loc["sp"], t2.loc["mup"]
    assert np.isclose(sp["min_train_loss"], math.exp(-0.3)) and np.isclose(sp["min_train_loss_std"], 0.1 * math.exp(-0.3))
    assert (sp["min_train_loss_width_mult"], sp["min_train_loss_lr"]) == (8.0, pytest.approx(1e-4))
    assert np.isclose(sp["min_val_loss"], 2 * math.exp(-0.3)) and np.isclose(sp["min_val_loss_lr"], 1e-4)
    # μP: ζ = 8 and the grid point nearest −2.8, i.e. k = 1e-3: log loss 0.04 − 0.3
    assert np.isclose(mup["min_train_loss"], math.exp(0.04 - 0.3))
    assert (mup["min_train_loss_width_mult"], mup["min_train_loss_lr"]) == (8.0, pytest.approx(1e-3))
    assert (sp["n_diverged"], mup["n_diverged"], sp["n_failed"], mup["n_failed"]) == (3, 0, 0, 1)
    assert (sp["n_runs"], mup["n_runs"]) == (60, 59)


def test_table2_markdown_and_latex(runs):
    t2 = A.table2(runs)
    md = A.table2_markdown(t2).splitlines()
    assert len(md) == 4 and md[0].startswith("| setup") and set(md[1]) <= {"|", "-"}
    assert "| SP " in md[2] and "0.741 ± 0.0741" in md[2] and "8, 0.0001" in md[2] and "3 / 60" in md[2]
    assert "| μP " in md[3] and "0 / 59" in md[3] and md[3].rstrip().endswith("| 1      |")
    tex = A.table2_latex(t2)
    assert r"\begin{tabular}" in tex and r"$\mu$P" in tex and r"0.741 $\pm$ 0.0741" in tex


# ---- transfer ---------------------------------------------------------------------------------


def test_fit_optimum_recovers_a_known_minimum():
    log_k = np.linspace(-5, 0, 16)
    for true in (-3.3, -2.8, -1.07):
        loss = np.exp(0.7 * (log_k - true) ** 2 + 0.2)
        x, fitted = A.fit_optimum(log_k, loss)
        assert fitted and x == pytest.approx(true, abs=1e-9)
        x, fitted = A.fit_optimum(log_k, loss, window=2)
        assert fitted and x == pytest.approx(true, abs=1e-9)
    # on the edge: no extrapolation, the argmin and fitted=False; a diverged neighbour is +inf
    assert A.fit_optimum(log_k, np.exp(log_k)) == (-5.0, False)
    loss = np.exp((log_k + 2.8) ** 2)
    loss[np.argmin(loss) + 1] = np.inf
    x, fitted = A.fit_optimum(log_k, loss)
    assert not fitted and x == log_k[np.argmin(loss)]
    assert math.isnan(A.fit_optimum(log_k, np.full(16, np.inf))[0])


def test_optimal_lr_per_width(runs):
    opt = A.optimal_lr(runs, n_boot=50).set_index(["parametrization", "width_mult"])
    for zeta in WIDTHS:
        mup = opt.loc[("mup", float(zeta))]
        assert mup["fitted"] and np.log10(mup["lr_fit"]) == pytest.approx(-2.8, abs=1e-9)
        assert mup["lr_argmin"] == pytest.approx(1e-3)
        assert mup["lr_lo"] <= mup["lr_fit"] * (1 + 1e-9) and mup["lr_hi"] >= mup["lr_fit"] * (1 - 1e-9)
        sp = opt.loc[("sp", float(zeta))]
        assert np.log10(sp["lr_fit"]) == pytest.approx(x0("sp", zeta), abs=1e-9)
        assert sp["fitted"] == (zeta != 8)  # at ζ = 8 the optimum is the grid's edge
    # seed offsets are multiplicative and common to all k: every resample has the same optimum
    assert opt.loc[("mup", 1.0), "lr_lo"] == pytest.approx(10**-2.8) == opt.loc[("mup", 1.0), "lr_hi"]


def test_bootstrap_ci_brackets_a_noisy_optimum(tmp_path):
    # each seed has its own optimum −3.2, −3.0, −2.8: the CI over seeds spans around −3.0
    for seed, true in enumerate([-3.2, -3.0, -2.8]):
        for log_k in np.linspace(-4.5, -1.5, 13):
            write_run(tmp_path / f"r{seed}_{log_k:.2f}", zeta=1, lr=10**log_k, seed=seed,
                      train=math.exp((log_k - true) ** 2))
    opt = A.optimal_lr(A.load_runs(tmp_path), n_boot=300, seed=1).iloc[0]
    lo, fit, hi = np.log10(opt[["lr_lo", "lr_fit", "lr_hi"]].astype(float))
    assert fit == pytest.approx(-3.0, abs=0.02)
    assert -3.25 < lo < fit - 0.05 and fit + 0.05 < hi < -2.75


def test_drift_and_wider_is_better(runs):
    opt, summary = A.transfer_summary(runs, n_boot=0)
    s = summary.set_index("parametrization")
    assert s.loc["sp", "drift_decades"] == pytest.approx(-1.5)
    assert s.loc["sp", "drift_per_doubling"] == pytest.approx(-0.5)
    assert s.loc["sp", "slope_per_doubling"] == pytest.approx(-0.5)
    assert s.loc["sp", "drift_decades_argmin"] == pytest.approx(-1.5)
    assert s.loc["mup", "drift_decades"] == pytest.approx(0, abs=1e-9)
    assert s.loc["mup", "slope_per_doubling"] == pytest.approx(0, abs=1e-9)
    assert s.loc["mup", "drift_decades_argmin"] == 0
    assert (s.loc["mup", "n_monotone"], s.loc["mup", "n_lr"]) == (5, 5)
    assert (s.loc["sp", "n_monotone"], s.loc["sp", "n_lr"]) == (1, 5)
    wide = A.wider_is_better(runs).set_index("parametrization")
    assert wide.loc["sp", "lr_monotone"] == [pytest.approx(1e-4)]
    assert wide.loc["sp", "share"] == pytest.approx(0.2)


# ---- figures and the report command -----------------------------------------------------------


def test_figures(runs, tmp_path):
    fig = A.plot_sweep(runs, "mlp_synth")
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 4  # rows SP / μP × columns min train / min val
    assert [ax.get_xscale() for ax in axes] == ["log"] * 4
    assert axes[0].get_title().startswith("SP") and axes[2].get_title().startswith("μP")
    assert len(axes[0].get_lines()) == len(WIDTHS)  # one curve per ζ
    paths = A.save_figure(fig, tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_report_command(sweep_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert report_main([str(sweep_dir), "--out", str(out), "--n-boot", "20"]) == 0
    stdout = capsys.readouterr().out
    assert "119 run records" in stdout and "| SP " in stdout
    assert "mlp_synth sp adam [min_train_loss]: optimum drifts -1.5 decades" in stdout
    expected = {"runs.csv", "runs.parquet", "problems.txt", "seed_stats.csv", "table2.csv", "table2.md",
                "table2.tex", "optimal_lr.csv", "transfer.csv", "transfer.md", "figures/mlp_synth.png",
                "figures/mlp_synth.pdf", "figures/mlp_synth_optimum.png", "figures/mlp_synth_optimum.pdf"}
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == expected
    transfer = pd.read_csv(out / "transfer.csv")
    assert set(transfer["metric"]) == {"min_train_loss", "min_val_loss"}
    assert "unfinished" in (out / "problems.txt").read_text()


@pytest.mark.parametrize("make", [lambda p: p / "absent", lambda p: p])
def test_report_command_bad_input(tmp_path, capsys, make):
    assert report_main([str(make(tmp_path)), "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mupbench-report: error: ") and err.count("\n") == 1
