"""Does the optimal learning rate transfer across widths (or depths)?

Every function takes ``axis``: ``"width_mult"`` (the default: per group, across ζ) or ``"blocks"``
(across depth at a fixed width; the group's keys are then
:func:`mupbench.analysis.records.group_keys` ``("blocks")``). The docs below say ζ for either.

- :func:`optimal_lr`: per (setup, parametrization, optimizer, ζ) the optimal k as the argmin of the
  seed mean and from a quadratic fit of log loss in log10 k around it, with a bootstrap CI over
  seeds;
- :func:`optimum_drift`: how far that optimum moves between the narrowest and the widest network
  (decades) and per doubling of ζ, as point estimates (the verdict with its CI is
  :func:`mupbench.analysis.drift.drift_verdicts`);
- :func:`wider_is_better`: the share of k values at which the loss falls monotonically with ζ.

A diverged run counts as +inf loss (so a cell with one is never the optimum); failed runs are
ignored (see :mod:`mupbench.analysis.aggregate`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .aggregate import seed_stats
from .bootstrap import MIN_SEEDS, draw, fit_vertex, resampled_means, seed_mean
from .records import frame, group_keys, groupby, with_axes

AXIS_PLURAL = {"width_mult": "widths", "blocks": "depths"}


def fit_optimum(log_k: np.ndarray, loss: np.ndarray, window: int = 1, log_loss: bool = True) -> tuple[float, bool]:
    """The minimiser in ``log_k`` of a parabola through the ``2·window + 1`` grid points around the
    argmin of ``loss`` (fitted to ``log(loss)`` by default). Returns ``(x, fitted)``; when no
    honest fit exists (the argmin lies on the grid's edge, fewer than 3 finite points, a parabola
    that opens downwards) it returns the argmin itself and ``fitted=False``. NaN if no point is
    finite."""
    log_k, loss = np.asarray(log_k, float), np.asarray(loss, float)
    finite = np.isfinite(loss)
    if not finite.any():
        return math.nan, False
    i = int(np.argmin(np.where(finite, loss, np.inf)))
    if i == 0 or i == len(loss) - 1:
        return float(log_k[i]), False
    sl = slice(max(i - window, 0), i + window + 1)
    x, y = log_k[sl], loss[sl]
    keep = np.isfinite(y) & ((y > 0) if log_loss else True)
    if keep.sum() < 3:
        return float(log_k[i]), False
    a, b, _ = np.polyfit(x[keep], np.log(y[keep]) if log_loss else y[keep], 2)
    if not a > 0:
        return float(log_k[i]), False
    return float(np.clip(-b / (2 * a), log_k[i - 1], log_k[i + 1])), True


def _loss_matrix(g: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(k grid, seeds × k losses): diverged = +inf, failed/absent = NaN."""
    status = g["status"].astype(str)
    value = g[metric].astype(float).where(status == "completed")
    value = value.where(status != "diverged", math.inf)
    m = g.assign(_v=value).pivot_table(index="seed", columns="lr", values="_v", aggfunc="first", dropna=False)
    return m.columns.to_numpy(float), m.to_numpy(float)


def _seed_mean(matrix: np.ndarray) -> np.ndarray:
    return seed_mean(matrix, axis=0)


def _boot_optima(log_k, matrix, window: int, log_loss: bool, n_boot: int, rng) -> np.ndarray:
    """Fit optima of ``n_boot`` resamples of the seeds (rows of ``matrix``, jointly across k); the
    finite ones. Vectorised for ``window=1``."""
    if n_boot == 0:
        return np.empty(0)
    if window == 1:
        cube = matrix[None]  # one width
        boots = fit_vertex(log_k, resampled_means(cube, draw(rng, n_boot, 1, len(matrix)))[:, 0], log_loss)[0]
    else:
        boots = np.array([fit_optimum(log_k, _seed_mean(matrix[rng.integers(0, len(matrix), len(matrix))]), window, log_loss)[0]
                          for _ in range(n_boot)])
    return boots[np.isfinite(boots)]


def optimal_lr(runs: pd.DataFrame, metric: str = "min_train_loss", window: int = 1, n_boot: int = 200,
               ci: float = 0.95, seed: int = 0, log_loss: bool = True, axis: str = "width_mult") -> pd.DataFrame:
    """Per (setup, parametrization, optimizer, ζ): ``lr_argmin`` (with its seed-mean
    ``loss_argmin``), ``lr_fit`` (the quadratic-fit optimum; ``fitted`` says whether a fit was
    possible), ``lr_lo``/``lr_hi`` (bootstrap CI of the fit optimum: seeds resampled with
    replacement, jointly across k; NaN with fewer than ``bootstrap.MIN_SEEDS`` seeds) and ``n_seeds``."""
    rng = np.random.default_rng(seed)
    rows = []
    keys = group_keys(axis) + [axis]
    for key, g in groupby(with_axes(runs), keys, sort=True):
        lrs, matrix = _loss_matrix(g, metric)
        log_k = np.log10(lrs)
        mean = _seed_mean(matrix)
        x_fit, fitted = fit_optimum(log_k, mean, window, log_loss)
        finite = np.isfinite(mean)
        i = int(np.argmin(np.where(finite, mean, np.inf))) if finite.any() else None
        # too few seeds for a bootstrap (bootstrap.MIN_SEEDS): no CI, rather than one of width 0
        boots = _boot_optima(log_k, matrix, window, log_loss, n_boot if len(matrix) >= MIN_SEEDS else 0, rng)
        lo, hi = (np.quantile(boots, [(1 - ci) / 2, (1 + ci) / 2]) if len(boots) else (math.nan, math.nan))
        rows.append({
            **dict(zip(keys, key)),
            "lr_argmin": lrs[i] if i is not None else math.nan,
            "loss_argmin": mean[i] if i is not None else math.nan,
            "lr_fit": 10**x_fit, "lr_lo": 10**lo, "lr_hi": 10**hi, "fitted": fitted,
            "n_seeds": int(len(matrix)), "metric": metric,
        })
    return frame(rows, columns=[*keys, "lr_argmin", "loss_argmin", "lr_fit", "lr_lo", "lr_hi", "fitted",
                                       "n_seeds", "metric"])


def optimum_drift(opt: pd.DataFrame, basis: str = "lr_fit", axis: str = "width_mult") -> pd.DataFrame:
    """Per (setup, parametrization, optimizer): the optimal k at the narrowest and widest ζ, the
    drift between them in decades (``log10 k*(ζmax) − log10 k*(ζmin)``; negative = to the left),
    that drift spread over the doublings in between, and the least-squares slope of
    ``log10 k*`` against ``log2 ζ`` over every width (decades per doubling)."""
    rows = []
    keys = group_keys(axis)
    for key, g in groupby(opt, keys, sort=True):
        g = g[np.isfinite(g[basis].astype(float))].sort_values(axis)
        if g.empty:
            continue
        x, y = np.log2(g[axis].to_numpy(float)), np.log10(g[basis].to_numpy(float))
        doublings = x[-1] - x[0]
        rows.append({
            **dict(zip(keys, key)),
            f"{axis}_min": g[axis].iloc[0], f"{axis}_max": g[axis].iloc[-1],
            "lr_opt_min": g[basis].iloc[0], "lr_opt_max": g[basis].iloc[-1],
            "drift_decades": y[-1] - y[0],
            "drift_per_doubling": (y[-1] - y[0]) / doublings if doublings > 0 else math.nan,
            "slope_per_doubling": np.polyfit(x, y, 1)[0] if len(g) > 1 and doublings > 0 else math.nan,
            f"n_{AXIS_PLURAL[axis]}": len(g), "basis": basis,
        })
    return frame(rows)


def wider_is_better(runs: pd.DataFrame, metric: str = "min_train_loss", axis: str = "width_mult") -> pd.DataFrame:
    """Per (setup, parametrization, optimizer): of the k values with a result at every ζ, how many
    have a seed-mean objective that falls strictly at each step up in width (a diverged cell = +inf
    never falls)."""
    stats = seed_stats(runs, [metric])
    col = f"{metric}_objective"
    rows = []
    keys = group_keys(axis)
    for key, g in groupby(stats, keys, sort=True):
        table = g.pivot_table(index=axis, columns="lr", values=col, aggfunc="first", dropna=False).sort_index()
        table = table.loc[:, table.notna().all()]
        with np.errstate(invalid="ignore"):  # inf - inf
            falls = (np.diff(table.to_numpy(float), axis=0) < 0).all(axis=0) if len(table) > 1 else np.zeros(table.shape[1], bool)
        rows.append({
            **dict(zip(keys, key)), "n_lr": table.shape[1], "n_monotone": int(falls.sum()),
            "share": falls.mean() if table.shape[1] else math.nan,
            "lr_monotone": [float(k) for k in table.columns[falls]], "metric": metric,
        })
    return frame(rows)


def transfer_summary(runs: pd.DataFrame, metric: str = "min_train_loss", axis: str = "width_mult",
                     **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per-width optima, per-group summary)``: the summary joins :func:`optimum_drift` (on the
    fit and on the argmin) and :func:`wider_is_better` (for depth: deeper is better)."""
    opt = optimal_lr(runs, metric, axis=axis, **kw)
    keys = group_keys(axis)
    drift = optimum_drift(opt, "lr_fit", axis)
    if drift.empty:
        return opt, drift
    arg = optimum_drift(opt, "lr_argmin", axis)[keys + ["drift_decades", "slope_per_doubling"]]
    summary = drift.drop(columns="basis").merge(arg, on=keys, suffixes=("", "_argmin"))
    wide = wider_is_better(runs, metric, axis)[keys + ["n_lr", "n_monotone", "share"]]
    summary = summary.merge(wide.rename(columns={"share": "wider_is_better"}), on=keys, how="left")
    return opt, summary.assign(metric=metric)
