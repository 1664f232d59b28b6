"""mupbench.analysis.transfer: the per-width optimum (argmin and quadratic fit, with a bootstrap
CI), its point drift and "wider is better", on the synthetic sweep of sweep_factory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sweep_factory import WIDTHS, parabola_runs, runs, sweep_dir, write_run, x0  # noqa: F401 (fixtures)

from mupbench import analysis as A
from mupbench.analysis.bootstrap import fit_vertex


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


def test_the_vectorised_fit_equals_fit_optimum():
    rng = np.random.default_rng(3)
    log_k = np.sort(rng.uniform(-5, 0, 9))  # uneven spacing too
    means = np.exp(rng.uniform(0, 2, (200, 9)))
    means[rng.random((200, 9)) < 0.1] = np.inf
    means[0] = np.inf
    x, fitted = fit_vertex(log_k, means)
    for row, xi, fi in zip(means, x, fitted):
        want, want_fitted = A.fit_optimum(log_k, row)
        assert (fi, xi) == (want_fitted, pytest.approx(want, abs=1e-9, nan_ok=True))


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


def test_too_few_seeds_give_an_optimum_without_a_ci():
    """One or two seeds: the optimum, but no CI (a zero-width one claimed a certainty there is not)."""
    for seeds in (1, 2):
        runs, _ = parabola_runs(np.random.default_rng(0), 0.0, widths=(1, 2), seeds=seeds)
        opt = A.optimal_lr(runs, "min_val_loss", n_boot=50)
        assert opt["lr_fit"].notna().all() and opt["lr_lo"].isna().all() and opt["lr_hi"].isna().all()


@pytest.mark.parametrize("window", [1, 2])
def test_bootstrap_ci_brackets_a_noisy_optimum(tmp_path, window):
    # each seed has its own optimum −3.2, −3.0, −2.8: the CI over seeds spans around −3.0
    for seed, true in enumerate([-3.2, -3.0, -2.8]):
        for log_k in np.linspace(-4.5, -1.5, 13):
            write_run(tmp_path / f"r{seed}_{log_k:.2f}", zeta=1, lr=10**log_k, seed=seed,
                      train=math.exp((log_k - true) ** 2))
    opt = A.optimal_lr(A.load_runs(tmp_path), n_boot=300, seed=1, window=window).iloc[0]
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
