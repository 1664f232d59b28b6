"""Does the optimum move with width? The drift of log10 k* against width, with a CI and a verdict.

Per width the optimum is the quadratic-fit vertex of the seed-mean loss around its argmin
(``basis="fit"``, :func:`mupbench.analysis.bootstrap.fit_vertex`) or the grid argmin
(``basis="argmin"``); a cell with a diverged run is +inf. From those:

- ``drift_decades``: log10 k*(ζmax) − log10 k*(ζmin) (positive: the optimum moves to larger k);
- ``slope_per_doubling``: the least-squares slope of log10 k* against log2 ζ (decades per doubling);

each with a seed-bootstrap 95 % CI (optima re-found inside every resample). The verdict reads the
CI of the drift against the grid's step δ (decades):

- ``transfers``: the CI lies inside (−δ, +δ): over the whole width range the optimum moves by less
  than one grid step (should the CI also exclude 0, ``direction`` says which way it detectably
  moves, by less than a step);
- ``drifts``: otherwise, if the CI excludes 0 (``direction`` says to larger or smaller k);
- ``undetermined at this resolution``: otherwise. ``seeds_needed`` is how many seeds would decide
  it, from the bootstrap spread (the CI's half-width h shrinks as 1/√seeds): the half-width must
  fall to max(|c|, δ − |c|) for a CI centred on c, so seeds_needed = ⌈R · (h / that)²⌉ (at least
  R + 1); and
  ``moves_less_than`` is what the CI does say, that |drift| < max(|lo|, |hi|) decades. With fewer
  than ``bootstrap.MIN_SEEDS`` seeds there is no CI to judge by: always undetermined.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

import dataclasses

from .bootstrap import MIN_SEEDS, argmin_finite, cubes, draw, fit_vertex, group_fields, interval, resampled_means, seed_mean
from .records import frame

TRANSFERS, DRIFTS, UNDETERMINED = "transfers", "drifts", "undetermined at this resolution"


def _optima(cube, mean: np.ndarray, basis: str) -> np.ndarray:
    """log10 k* per width from seed means (..., W, K)."""
    if basis == "fit":
        return fit_vertex(cube.log_k, mean)[0]
    i = argmin_finite(mean)
    return np.where(i >= 0, cube.log_k[np.maximum(i, 0)], np.nan)


def _slope(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Least-squares slope of x (..., W) against t (W,)."""
    tc = t - t.mean()
    return ((x - x.mean(axis=-1, keepdims=True)) * tc).sum(axis=-1) / (tc**2).sum()


def verdict(lo: float, hi: float, drift: float, step: float, n_seeds: int) -> dict:
    """The verdict on a drift CI [lo, hi] (decades) read against grid step ``step``."""
    out = {"verdict": UNDETERMINED, "direction": "", "seeds_needed": pd.NA,
           "moves_less_than": max(abs(lo), abs(hi)) if np.isfinite([lo, hi]).all() else math.nan}
    if n_seeds < MIN_SEEDS:  # too few seeds for a bootstrap CI: no verdict, whatever the CI says
        out["seeds_needed"] = MIN_SEEDS if n_seeds > 1 else pd.NA
        return out
    if not np.isfinite([lo, hi, step]).all():
        return out
    if lo > 0 or hi < 0:  # a detectable drift (which may still be under one grid step: transfers)
        out["direction"] = "to larger k" if lo > 0 else "to smaller k"
    if -step < lo and hi < step:
        out["verdict"] = TRANSFERS
    elif out["direction"]:
        out["verdict"] = DRIFTS
    else:
        # the CI's own centre, not the point estimate: a bootstrap CI need not be symmetric about it
        half, centre = (hi - lo) / 2, (hi + lo) / 2
        target = max(abs(centre), step - abs(centre))
        if target > 0 and n_seeds > 0:  # more seeds than these, since these did not decide it
            out["seeds_needed"] = max(n_seeds + 1, int(math.ceil(n_seeds * (half / target) ** 2)))
    return out


def _signed(x: float) -> str:
    text = f"{x:+.2f}"
    return "0.00" if float(text) == 0 else text


AXIS_SYMBOL = {"width_mult": "ζ", "blocks": "blocks"}


def sentence(row) -> str:
    """The report's line for one group: the verdict first, the numbers as its evidence."""
    axis = getattr(row, "axis", "width_mult")
    where = f"{AXIS_SYMBOL[axis]} {getattr(row, axis + '_min'):g}–{getattr(row, axis + '_max'):g}"
    lo, hi = _signed(row.drift_lo), _signed(row.drift_hi)
    ci = f"drift {_signed(row.drift_decades)} decades, 95 % CI [{lo}, {hi}]"
    step = f"grid step {row.grid_step:.2g} decades"
    edge = "; an optimum sits on the grid's edge, so the drift there is a bound" if row.at_edge else ""
    if row.verdict == TRANSFERS:
        though = f", though detectably {row.direction}" if row.direction else ""
        return f"transfers over {where}: the optimum moves less than one grid step{though} ({ci}; {step}{edge})"
    if row.verdict == DRIFTS:
        return (f"drifts {row.direction} over {where} ({ci}; {_signed(row.slope_per_doubling)} decades per doubling, "
                f"CI [{_signed(row.slope_lo)}, {_signed(row.slope_hi)}]{edge})")
    if row.n_seeds < 2:
        return (f"undetermined at this resolution over {where}: one seed, no spread to judge its drift of "
                f"{_signed(row.drift_decades)} decades by")
    if row.n_seeds < MIN_SEEDS:
        return (f"undetermined at this resolution over {where} with {row.n_seeds} seeds: too few for a bootstrap CI "
                f"of its drift of {_signed(row.drift_decades)} decades; at least {MIN_SEEDS} seeds give one")
    need = f"; about {row.seeds_needed} seeds would decide it" if pd.notna(row.seeds_needed) else ""
    return (f"undetermined at this resolution over {where} with {row.n_seeds} seeds: the drift's 95 % CI [{lo}, {hi}] "
            f"decades holds 0 and reaches past one {step} (it moves less than {row.moves_less_than:.2g} decades){need}{edge}")


def drift_verdicts(runs: pd.DataFrame, metric: str = "min_val_loss", basis: str = "fit", n_boot: int = 1000,
                   seed: int = 0, ci: float = 0.95, joint: bool = True, axis: str = "width_mult") -> pd.DataFrame:
    """Per group (setup, parametrization, optimizer, the other axes): the optimum at the narrowest
    and widest width (with ``axis="blocks"``: the shallowest and deepest model at a fixed width; the
    columns are then ``blocks_min``, ``blocks_max``, ``n_depths`` and the slope is per doubling of
    depth)
    (``lr_opt_min``, ``lr_opt_max``), ``drift_decades`` and ``slope_per_doubling`` with ``_lo``/``_hi``
    CIs (``drift_lo``, ``drift_hi``, ``slope_lo``, ``slope_hi``), ``grid_step`` (decades), the
    ``verdict`` (see the module docstring) with ``direction``, ``seeds_needed``, ``moves_less_than``,
    ``at_edge`` (an optimum on the grid's edge at some width: the drift there is a bound), and
    ``sentence``, the verdict as one line. Widths without any finite cell are left out."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1 (got {n_boot}): the verdicts read bootstrap CIs")
    if basis not in ("fit", "argmin"):
        raise ValueError(f"basis must be 'fit' or 'argmin', got {basis!r}")
    rng = np.random.default_rng(seed)
    rows = []
    plural = {"width_mult": "widths", "blocks": "depths"}[axis]
    for cube in cubes(runs, metric, axis):
        mean = seed_mean(cube.select)
        keep = np.isfinite(mean).any(axis=1)
        if keep.sum() < 2:
            continue
        cube = dataclasses.replace(cube, widths=cube.widths[keep], select=cube.select[keep], loss=cube.loss[keep])
        t = np.log2(cube.widths)
        x = _optima(cube, seed_mean(cube.select), basis)
        boot = _optima(cube, resampled_means(cube.select, draw(rng, n_boot, len(t), len(cube.seeds), joint)), basis)
        drift, b_drift = x[-1] - x[0], boot[:, -1] - boot[:, 0]
        (d_lo, d_hi), (s_lo, s_hi) = interval(b_drift, ci), interval(_slope(t, boot), ci)
        i = argmin_finite(seed_mean(cube.select))
        row = {
            **group_fields(cube, metric), "basis": basis, "axis": axis,
            f"{axis}_min": cube.widths[0], f"{axis}_max": cube.widths[-1],
            "lr_opt_min": 10 ** x[0], "lr_opt_max": 10 ** x[-1],
            "drift_decades": drift, "drift_lo": float(d_lo), "drift_hi": float(d_hi),
            "slope_per_doubling": float(_slope(t, x)), "slope_lo": float(s_lo), "slope_hi": float(s_hi),
            "grid_step": cube.grid_step, "at_edge": bool(((i == 0) | (i == len(cube.lrs) - 1)).any()),
            f"n_{plural}": len(t), "n_seeds": cube.n_seeds(), "n_boot": n_boot,
        }
        row.update(verdict(row["drift_lo"], row["drift_hi"], drift, row["grid_step"], row["n_seeds"]))
        rows.append(row)
    out = frame(rows)
    if len(out):
        out["sentence"] = [sentence(r) for r in out.itertuples()]
    return out
