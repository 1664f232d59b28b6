"""The basin of good learning rates: per width, the k whose seed-mean loss is within 1 %, 5 % or
10 % of that width's best, and how its edges move with width.

The basin at tolerance τ is the run of consecutive grid points around the width's argmin whose
seed-mean objective (+inf for a cell with a diverged run, so a basin never spans one) is at most
(1 + τ) × the best; its edges are grid values (``lr_lo``, ``lr_hi``), its width
``log10(lr_hi / lr_lo)`` decades, and ``open_lo``/``open_hi`` say that it reaches the grid's end
(the true edge lies beyond it). Losses are assumed positive (a relative tolerance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import argmin_finite, cubes, group_fields, seed_mean
from .records import frame, group_keys, groupby

TOLERANCES = (0.01, 0.05, 0.10)


def _edges(mean: np.ndarray, tol: float) -> tuple[int, int] | None:
    i = int(argmin_finite(mean))
    if i < 0:
        return None
    inside = np.isfinite(mean) & (mean <= (1 + tol) * mean[i])
    lo = hi = i
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(mean) - 1 and inside[hi + 1]:
        hi += 1
    return lo, hi


def basin(runs: pd.DataFrame, metric: str = "min_val_loss", tolerances=TOLERANCES, axis: str = "width_mult") -> pd.DataFrame:
    """One row per (group, ζ, tolerance): ``lr_best``, ``loss_best``, ``lr_lo``, ``lr_hi``,
    ``decades``, ``n_points``, ``open_lo``, ``open_hi`` (``axis="blocks"``: per depth)."""
    rows = []
    for cube in cubes(runs, metric, axis):
        for w, mean in enumerate(seed_mean(cube.select)):
            for tol in tolerances:
                edges = _edges(mean, tol)
                if edges is None:
                    continue
                lo, hi = edges
                i = int(argmin_finite(mean))
                rows.append({
                    **group_fields(cube, metric), axis: cube.widths[w], "tolerance": tol,
                    "lr_best": cube.lrs[i], "loss_best": mean[i], "lr_lo": cube.lrs[lo], "lr_hi": cube.lrs[hi],
                    "decades": cube.log_k[hi] - cube.log_k[lo], "n_points": hi - lo + 1,
                    "open_lo": lo == 0, "open_hi": hi == len(mean) - 1, "axis": axis,
                })
    return frame(rows)


def basin_shift(basins: pd.DataFrame, axis: str = "width_mult") -> pd.DataFrame:
    """How the edges move with width, per group and tolerance: the least-squares slope of log10 of
    each edge against log2 ζ (``lo_per_doubling``, ``hi_per_doubling``, decades per doubling), the
    edges at the narrowest and the widest width, and the change of the basin's width in decades."""
    keys = [c for c in [*group_keys(axis), "metric", "tolerance"] if c in basins]
    rows = []
    for key, g in groupby(basins, keys, sort=True):
        g = g.sort_values(axis)
        t = np.log2(g[axis].to_numpy(float))
        slope = (lambda y: float(np.polyfit(t, np.log10(y), 1)[0]) if len(t) > 1 else np.nan)  # noqa: E731
        first, last = g.iloc[0], g.iloc[-1]
        rows.append({
            **dict(zip(keys, key)), f"{axis}_min": first[axis], f"{axis}_max": last[axis],
            "lr_lo_min": first["lr_lo"], "lr_lo_max": last["lr_lo"], "lr_hi_min": first["lr_hi"], "lr_hi_max": last["lr_hi"],
            "lo_per_doubling": slope(g["lr_lo"].to_numpy(float)), "hi_per_doubling": slope(g["lr_hi"].to_numpy(float)),
            "decades_change": last["decades"] - first["decades"],
            "n_widths" if axis == "width_mult" else "n_depths": len(g),
        })
    return frame(rows)
