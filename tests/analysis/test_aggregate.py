"""mupbench.analysis.aggregate: seed statistics, diverged counts and Table 2 on the synthetic sweep
of sweep_factory, whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sweep_factory import DIVERGED, FAILED, LOG_K, MISSING, SEED_FACTOR, WIDTHS, base_loss, runs, sweep_dir  # noqa: F401

from mupbench import analysis as A


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
