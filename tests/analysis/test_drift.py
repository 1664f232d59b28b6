"""mupbench.analysis.drift_verdicts: sweeps built with a known drift per doubling come out
`drifts` / `transfers` / `undetermined at this resolution` as constructed."""

from __future__ import annotations

import numpy as np
import pytest
from sweep_factory import parabola_runs, runs, sweep_dir  # noqa: F401 (fixtures)

from mupbench import analysis as A
from mupbench.analysis.drift import DRIFTS, TRANSFERS, UNDETERMINED, verdict


@pytest.mark.parametrize("shift,centre,direction", [(-0.5, -1.75, "to smaller k"), (0.25, -2.5, "to larger k")])
def test_a_drifting_optimum_drifts(shift, centre, direction):
    # ζ 1–8, 8 seeds, grid −4 … −1 in steps of 0.25; every optimum inside the grid
    runs, _ = parabola_runs(np.random.default_rng(0), shift, centre=centre)
    v = A.drift_verdicts(runs, n_boot=300).iloc[0]
    assert (v["verdict"], v["direction"]) == (DRIFTS, direction) and not v["at_edge"]
    assert v["drift_decades"] == pytest.approx(3 * shift, abs=0.05) and v["slope_per_doubling"] == pytest.approx(shift, abs=0.02)
    assert v["drift_hi"] - v["drift_lo"] < 0.25  # 8 seeds at this noise: a CI narrower than one grid step
    assert v["sentence"].startswith(f"drifts {direction} over ζ 1–8")


def test_a_fixed_optimum_transfers():
    runs, _ = parabola_runs(np.random.default_rng(0), 0.0)
    v = A.drift_verdicts(runs, n_boot=300).iloc[0]
    assert v["verdict"] == TRANSFERS and v["grid_step"] == pytest.approx(0.25)
    assert -0.25 < v["drift_lo"] <= 0 <= v["drift_hi"] < 0.25
    assert v["sentence"].startswith("transfers over ζ 1–8: the optimum moves less than one grid step")


def test_two_seeds_give_no_verdict():
    """A clear drift (1.5 decades over ζ 1–8, little noise) with 2 seeds: their bootstrap has 3
    distinct resamples, too few for a 95 % CI, so no verdict; 3 seeds decide it."""
    runs, _ = parabola_runs(np.random.default_rng(0), -0.5, centre=-1.75, seeds=2)
    v = A.drift_verdicts(runs, n_boot=300).iloc[0]
    assert v["verdict"] == UNDETERMINED and v["seeds_needed"] == 3 and v["direction"] == ""
    assert v["sentence"] == ("undetermined at this resolution over ζ 1–8 with 2 seeds: too few for a bootstrap CI "
                             f"of its drift of {v['drift_decades']:+.2f} decades; at least 3 seeds give one")
    runs, _ = parabola_runs(np.random.default_rng(0), -0.5, centre=-1.75, seeds=3)
    assert A.drift_verdicts(runs, n_boot=300).iloc[0]["verdict"] == DRIFTS


@pytest.mark.parametrize("rng_seed", range(4))
def test_too_few_seeds_are_undetermined_and_more_decide(rng_seed):
    """The optimum moves 1.5 grid steps over ζ 1–8 under heavy noise: 4 seeds cannot tell it from
    0 nor bound it within a step; 256 seeds find the drift."""
    rng = np.random.default_rng(rng_seed)
    runs, _ = parabola_runs(rng, 0.125, seeds=4, noise_sd=0.2)
    v = A.drift_verdicts(runs, n_boot=300).iloc[0]
    assert v["verdict"] == UNDETERMINED and v["drift_lo"] < 0 < v["drift_hi"]
    assert v["drift_hi"] - v["drift_lo"] > 2 * 0.25 and v["seeds_needed"] > 4
    assert v["sentence"].startswith("undetermined at this resolution over ζ 1–8 with 4 seeds")
    assert f"about {v['seeds_needed']} seeds would decide it" in v["sentence"]
    runs, _ = parabola_runs(rng, 0.125, seeds=256, noise_sd=0.2)
    v = A.drift_verdicts(runs, n_boot=300).iloc[0]
    assert (v["verdict"], v["direction"]) == (DRIFTS, "to larger k") and v["drift_lo"] < 0.375 < v["drift_hi"]


def test_verdict_rules():
    assert verdict(-0.1, 0.2, 0.05, 0.25, 8) | {"seeds_needed": None} == {
        "verdict": TRANSFERS, "direction": "", "seeds_needed": None, "moves_less_than": 0.2}
    # a detectable drift under one step: transfers at this grid's resolution, and which way it moves
    assert verdict(0.05, 0.2, 0.1, 0.25, 8) | {"seeds_needed": None} == {
        "verdict": TRANSFERS, "direction": "to larger k", "seeds_needed": None, "moves_less_than": 0.2}
    assert verdict(0.1, 0.9, 0.5, 0.25, 8) | {"seeds_needed": None} == {
        "verdict": DRIFTS, "direction": "to larger k", "seeds_needed": None, "moves_less_than": 0.9}
    assert verdict(-0.9, -0.3, -0.5, 0.25, 8)["direction"] == "to smaller k"
    assert verdict(-0.9, -0.3, -0.5, 0.25, 1)["verdict"] == UNDETERMINED  # one seed: no spread
    # half-width 0.4, point 0.1: the CI must shrink to max(0.1, 0.15) = 0.15: 8 × (0.4 / 0.15)² → 57
    und = verdict(-0.3, 0.5, 0.1, 0.25, 8)
    assert und["verdict"] == UNDETERMINED and und["seeds_needed"] == 57 and und["moves_less_than"] == 0.5
    assert verdict(float("nan"), 0.5, 0.1, 0.25, 8)["verdict"] == UNDETERMINED
    # the real CPU reproduction's μP (README): a CI [−0.01, +0.76] about a point 0.59, 16 seeds. Its
    # centre 0.375 is what must clear 0: 16 × (0.385 / 0.375)² → 17 seeds, never fewer than it had
    assert verdict(-0.01, 0.76, 0.59, 0.33, 16)["seeds_needed"] == 17
    assert verdict(-0.01, 0.9, 0.8, 0.33, 16)["seeds_needed"] == 17  # ⌈16 · (0.455/0.445)²⌉ = 17 > 16


def test_verdicts_on_the_synthetic_sweep(runs):
    v = A.drift_verdicts(runs, "min_train_loss", n_boot=100).set_index("parametrization")
    # seed factors are common to all k: every resample has the same optima, the CI is a point
    assert v.loc["sp", "verdict"] == DRIFTS and v.loc["sp", "direction"] == "to smaller k"
    assert v.loc["sp", "drift_decades"] == pytest.approx(-1.5) and v.loc["sp", "at_edge"]
    assert v.loc["sp", "drift_lo"] == pytest.approx(-1.5) and v.loc["sp", "slope_per_doubling"] == pytest.approx(-0.5)
    assert v.loc["mup", "verdict"] == TRANSFERS and not v.loc["mup", "at_edge"]
    assert np.log10(v.loc["mup", "lr_opt_min"]) == pytest.approx(-2.8)
    with pytest.raises(ValueError, match="n_boot"):
        A.drift_verdicts(runs, n_boot=-5)
    with pytest.raises(ValueError, match="basis"):
        A.drift_verdicts(runs, basis="median")
    arg = A.drift_verdicts(runs, "min_train_loss", basis="argmin", n_boot=50).set_index("parametrization")
    assert arg.loc["sp", "drift_decades"] == pytest.approx(-1.5) and arg.loc["mup", "drift_decades"] == 0


def test_one_seed_is_never_a_verdict():
    runs, _ = parabola_runs(np.random.default_rng(0), -0.5, centre=-1.75, seeds=1)
    v = A.drift_verdicts(runs, n_boot=50).iloc[0]
    assert v["verdict"] == UNDETERMINED and v["n_seeds"] == 1 and v["drift_decades"] == pytest.approx(-1.5, abs=0.05)
    assert v["sentence"] == ("undetermined at this resolution over ζ 1–8: one seed, no spread to judge its drift of "
                             f"{v['drift_decades']:+.2f} decades by")


def test_a_drift_under_one_grid_step_transfers_and_says_which_way():
    """The optimum moves 0.15 decades over ζ 1–8 (0.05 per doubling) on a grid of step 0.25, with
    32 seeds: the CI excludes 0 yet lies inside one step."""
    runs, _ = parabola_runs(np.random.default_rng(0), -0.05, seeds=32)
    v = A.drift_verdicts(runs, n_boot=300).iloc[0]
    assert (v["verdict"], v["direction"]) == (TRANSFERS, "to smaller k") and -0.25 < v["drift_lo"] < v["drift_hi"] < 0
    assert v["sentence"].startswith("transfers over ζ 1–8: the optimum moves less than one grid step, though "
                                    "detectably to smaller k (drift -0.1")
