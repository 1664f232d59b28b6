"""mupbench.analysis.basin / basin_shift: the basin edges of a constructed, noiseless sweep.

Loss at log10 k = x: 1 + a_L·(x − c)² left of c = −2.5 and 1 + a_R(ζ)·(x − c)² right of it, on a
grid of step 0.25 (c on the grid, so the best loss is 1 at every width). a_L = 0.09 puts the low
edge 1, 2, 4 steps below c at 1 %, 5 %, 10 %; a_R = 0.09, 0.14, 0.22, 0.36 at ζ = 1, 2, 4, 8 puts the
high edge (1, 2, 4), (1, 2, 3), (0, 1, 2), (0, 1, 2) steps above c, except that at ζ = 2 one run at
c + 2 steps diverged, which cuts its basin there to (1, 1, 1). Three seeds with factors 0.9, 1, 1.1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sweep_factory import GRID

from mupbench import analysis as A

A_RIGHT = {1: 0.09, 2: 0.14, 4: 0.22, 8: 0.36}
HIGH_STEPS = {1: (1, 2, 4), 2: (1, 1, 1), 4: (0, 1, 2), 8: (0, 1, 2)}
LOW_STEPS = (1, 2, 4)


def constructed() -> pd.DataFrame:
    rows = []
    for zeta, a_right in A_RIGHT.items():
        for x in GRID:
            d = x + 2.5
            loss = 1 + (0.09 if d < 0 else a_right) * d**2
            for seed, factor in enumerate((0.9, 1.0, 1.1)):
                diverged = zeta == 2 and np.isclose(d, 0.5) and seed == 1
                rows.append({"setup": "mlp_basin", "parametrization": "mup", "optimizer": "adam", "width_mult": float(zeta),
                             "lr": 10**x, "seed": seed, "status": "diverged" if diverged else "completed",
                             "min_val_loss": np.nan if diverged else loss * factor, "init_val_loss": 10.0})
    return pd.DataFrame(rows)


def test_basin_edges_equal_the_constructed_ones():
    b = A.basin(constructed()).set_index(["width_mult", "tolerance"])
    assert len(b) == 4 * 3
    for zeta, highs in HIGH_STEPS.items():
        for tol, low, high in zip((0.01, 0.05, 0.10), LOW_STEPS, highs):
            row = b.loc[(float(zeta), tol)]
            assert np.log10(row["lr_lo"]) == pytest.approx(-2.5 - 0.25 * low)
            assert np.log10(row["lr_hi"]) == pytest.approx(-2.5 + 0.25 * high)
            assert row["decades"] == pytest.approx(0.25 * (low + high)) and row["n_points"] == low + high + 1
            assert np.log10(row["lr_best"]) == pytest.approx(-2.5) and row["loss_best"] == pytest.approx(1.0)
            assert not row["open_lo"] and not row["open_hi"]


def test_how_the_edges_move_with_width():
    s = A.basin_shift(A.basin(constructed())).set_index("tolerance")
    ten = s.loc[0.10]
    assert np.log10(ten["lr_lo_min"]) == pytest.approx(-3.5) == np.log10(ten["lr_lo_max"])
    assert np.log10(ten["lr_hi_min"]) == pytest.approx(-1.5) and np.log10(ten["lr_hi_max"]) == pytest.approx(-2.0)
    assert ten["lo_per_doubling"] == pytest.approx(0, abs=1e-12)
    # high edges at log2 ζ = 0, 1, 2, 3: +1, +0.25, +0.5, +0.5 decades → least-squares slope −0.625 / 5
    assert ten["hi_per_doubling"] == pytest.approx(-0.125)
    assert ten["decades_change"] == pytest.approx(-0.5) and ten["n_widths"] == 4


def test_a_basin_reaching_the_grid_end_is_open():
    b = A.basin(constructed(), tolerances=(10.0,))
    assert b["open_lo"].all() and b["open_hi"].sum() == 3  # ζ = 2 stops at its diverged cell
    assert (b["lr_lo"] == 10 ** GRID[0]).all()
