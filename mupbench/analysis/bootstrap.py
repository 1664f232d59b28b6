"""The seed bootstrap behind every CI of the transfer verdicts (SPEC-AXES §6.1), vectorised.

A group (setup, parametrization, optimizer and every other axis) becomes a :class:`Cube`: arrays
indexed ``[width, seed, k]`` on the grid observed in the group, two of them (with ``axis="blocks"``
the first index is the depth, at a fixed width: :func:`mupbench.analysis.records.group_keys`):

- ``select``, what an optimum is chosen on: the metric of a completed run, **+inf** for a diverged
  run (a cell with one never wins: the seed mean is +inf), NaN for a failed or missing run (left
  out of the seed mean);
- ``loss``, what a chosen k is charged: the metric capped at the run's loss at initialisation,
  ``min(ℓ, ℓ_init)`` (Wortsman's capping), and for a diverged run ``ℓ_init`` itself (its own
  metric, the minimum before it blew up, is not a result at that k). ``ℓ_init`` is the record's
  ``init_*_loss`` or the step-0 row of its metrics file (:mod:`mupbench.analysis.records`); a
  diverged run without one is charged +inf.

A resample draws seed *indices* with replacement and uses the same index set at every k of a width
(seeds share init and data order across k). In mupbench the seed also fixes the data order at every
width, so by default one index set serves every width too (``joint=True``, SPEC-AXES: "jointly if
data order is shared across widths"); ``joint=False`` draws each width's independently. Optima are
re-selected inside every resample, so selection noise propagates into every CI. A resample of R
seeds is one of only C(2R−1, R) distinct draws (1 for one seed, 3 for two, 10 for three, 35 for
four): below ``MIN_SEEDS`` no CI is given (optimum, regret, budget) and no verdict is read.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .records import INIT, group_keys, groupby, with_axes

MIN_SEEDS = 3  # the fewest seeds whose bootstrap is more than a handful of distinct resamples (10; two seeds: 3)

CHUNK = 512  # resamples gathered at once (bounds memory: CHUNK × widths × seeds × k floats)


@dataclass
class Cube:
    key: tuple  # the group's values of ``names``
    widths: np.ndarray  # (W,) ζ (or blocks, see ``axis``), ascending
    lrs: np.ndarray  # (K,) k, ascending
    seeds: np.ndarray  # (S,)
    select: np.ndarray  # (W, S, K)
    loss: np.ndarray  # (W, S, K)
    axis: str = "width_mult"  # what ``widths`` holds
    names: tuple = ()  # the key's column names (default: group_keys(axis))
    base: float = math.nan  # the group's own base along the axis (base_blocks), NaN if none

    @property
    def log_k(self) -> np.ndarray:
        return np.log10(self.lrs)

    @property
    def grid_step(self) -> float:
        """The grid's spacing in decades (the median, should it be uneven)."""
        return float(np.median(np.diff(self.log_k))) if len(self.lrs) > 1 else math.nan

    def n_seeds(self) -> int:
        """Seeds with at least one result at every width (the fewest over the widths)."""
        have = np.isfinite(self.select) | np.isinf(self.select)
        return int(have.any(axis=2).sum(axis=1).min()) if self.select.size else 0


def cubes(runs: pd.DataFrame, metric: str, axis: str = "width_mult") -> list[Cube]:
    """One :class:`Cube` of ``metric`` per group of ``runs`` (followed along ``axis``)."""
    init_col = INIT["val" if "val" in metric else "train"]
    names = tuple(group_keys(axis))
    out = []
    for key, g in groupby(with_axes(runs), list(names), sort=True):
        status = g["status"].astype(str).to_numpy()
        value = g[metric].astype("float64").to_numpy(na_value=np.nan)
        init = g[init_col].astype("float64").to_numpy(na_value=np.nan)
        done, diverged = status == "completed", status == "diverged"
        select = np.where(done, value, np.where(diverged, np.inf, np.nan))
        init_or_inf = np.where(np.isnan(init), np.inf, init)
        loss = np.where(done, np.fmin(value, init), np.where(diverged, init_or_inf, np.nan))
        widths, w = np.unique(g[axis].to_numpy(float, na_value=np.nan), return_inverse=True)
        lrs, k = np.unique(g["lr"].to_numpy(float), return_inverse=True)
        seeds, s = np.unique(g["seed"].to_numpy(int), return_inverse=True)
        sel_cube = np.full((len(widths), len(seeds), len(lrs)), np.nan)
        loss_cube = sel_cube.copy()
        sel_cube[w, s, k], loss_cube[w, s, k] = select, loss
        base = g["base_blocks"].dropna() if axis == "blocks" else g.iloc[:0, 0]
        out.append(Cube(key if isinstance(key, tuple) else (key,), widths, lrs, seeds, sel_cube, loss_cube, axis, names,
                        float(base.iloc[0]) if len(base) else math.nan))
    return out


def seed_mean(a: np.ndarray, axis: int = -2) -> np.ndarray:
    """Mean over seeds, NaN (failed/missing) left out, +inf (diverged) kept."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells
        return np.nanmean(a, axis=axis)


def draw(rng: np.random.Generator, n_boot: int, n_widths: int, seeds: np.ndarray | int, joint: bool = True) -> np.ndarray:
    """(n_boot, W, len(seeds)) seed indices drawn with replacement from ``seeds`` (an index array,
    or a count meaning ``arange(count)``); the same per width when ``joint``."""
    seeds = np.arange(seeds) if np.isscalar(seeds) else np.asarray(seeds)
    picks = rng.integers(0, len(seeds), (n_boot, 1 if joint else n_widths, len(seeds)))
    return np.broadcast_to(seeds[picks], (n_boot, n_widths, len(seeds)))


def resampled_means(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Seed means of ``a`` (W, S, K) under index sets ``idx`` (B, W, S'): (B, W, K)."""
    W = a.shape[0]
    out = []
    for lo in range(0, len(idx), CHUNK):
        part = idx[lo:lo + CHUNK]
        out.append(seed_mean(a[np.arange(W)[None, :, None], part], axis=2))
    return np.concatenate(out) if out else np.empty((0, W, a.shape[2]))


def argmin_finite(m: np.ndarray) -> np.ndarray:
    """argmin over the last axis among finite values; -1 where none is finite."""
    clean = np.where(np.isfinite(m), m, np.inf)
    i = np.argmin(clean, axis=-1)
    return np.where(np.isfinite(np.take_along_axis(clean, i[..., None], -1)[..., 0]), i, -1)


def take(m: np.ndarray, i: np.ndarray) -> np.ndarray:
    """``m[..., i]`` per leading index; NaN where ``i`` is -1."""
    got = np.take_along_axis(m, np.maximum(i, 0)[..., None], -1)[..., 0]
    return np.where(i >= 0, got, np.nan)


def fit_vertex(log_k: np.ndarray, mean: np.ndarray, log_loss: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`mupbench.analysis.transfer.fit_optimum` with ``window=1``: over the last
    axis of ``mean``, the vertex of the parabola through the argmin and its two neighbours (in
    ``log(loss)`` by default), clipped to the neighbours; the argmin itself (``fitted`` False) on the
    grid's edge, next to a non-finite value or for a flat triple; NaN where nothing is finite."""
    K = mean.shape[-1]
    i = argmin_finite(mean)
    base = np.where(i >= 0, log_k[np.maximum(i, 0)], np.nan)
    inner = (i > 0) & (i < K - 1)
    j = np.clip(i, 1, K - 2) if K >= 3 else np.zeros_like(i)
    if K < 3:
        return base, np.zeros(i.shape, bool)
    x0, x1, x2 = log_k[j - 1], log_k[j], log_k[j + 1]
    ys = [take(mean, j + d) for d in (-1, 0, 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        if log_loss:
            ys = [np.log(np.where(y > 0, y, np.nan)) for y in ys]
        y0, y1, y2 = ys
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
        vertex = np.clip(-b / (2 * a), x0, x2)
    fitted = inner & np.isfinite(y0) & np.isfinite(y1) & np.isfinite(y2) & (a > 0)
    return np.where(fitted, vertex, base), fitted


def interval(samples: np.ndarray, ci: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval over ``axis``, NaN resamples left out (NaN where all are)."""
    q = [(1 - ci) / 2, (1 + ci) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(samples, q, axis=axis) if samples.size else (np.nan, np.nan)
    return lo, hi


def group_fields(cube: Cube, metric: str) -> dict:
    return {**dict(zip(cube.names or group_keys(cube.axis), cube.key)), "metric": metric}
