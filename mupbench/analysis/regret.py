"""Transfer regret (SPEC-AXES §6.1): what it costs to tune at the base width and use that k wider.

With L̄_ζ(k) the seed mean at width ζ, k̂ = argmin_k L̄_base(k) (the k selected at the base
width) and k*_ζ = argmin_k L̄_ζ(k):

    regret_ζ = L̄_ζ(k̂) − L̄_ζ(k*_ζ) ≥ 0,   relative regret = regret_ζ / L̄_ζ(k*_ζ).

Selection uses +inf for a cell with a diverged run; the loss charged at k̂ caps runs at their loss
at initialisation (diverged runs are charged it), see :mod:`mupbench.analysis.bootstrap`. The CI
is a seed bootstrap that re-selects k̂ and k*_ζ inside every resample; ``p_same`` is the share of
resamples in which k̂ = k*_ζ. Because min over noisy means is biased low, the plain regret is
biased high; the **cross-fitted** regret selects k̂ and k*_ζ on one half of the seeds and charges
them on the other (both ways round, averaged), which removes that bias at the price of more
variance (it can come out negative).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .bootstrap import MIN_SEEDS, Cube, argmin_finite, cubes, draw, group_fields, interval, resampled_means, seed_mean, take
from .records import frame


def _regret(sel: np.ndarray, loss: np.ndarray, base: int):
    """On seed means (..., W, K): k̂ (...), k* (..., W), regret and relative regret (..., W)."""
    khat = argmin_finite(sel[..., base, :])
    kstar = argmin_finite(sel)
    khat_w = np.broadcast_to(khat[..., None], kstar.shape)
    best = take(loss, kstar)
    charged = take(loss, khat_w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return khat, kstar, charged - best, (charged - best) / best


def _halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n // 2), np.arange(n // 2, n)


def _cross_fit(sel_a, loss_a, sel_b, loss_b, base: int) -> np.ndarray:
    """Select on half a, charge on half b, and the other way round; the mean of both (..., W)."""
    out = []
    for s, ev in ((sel_a, loss_b), (sel_b, loss_a)):
        khat, kstar = argmin_finite(s[..., base, :]), argmin_finite(s)
        khat_w = np.broadcast_to(khat[..., None], kstar.shape)
        out.append(take(ev, khat_w) - take(ev, kstar))
    return (out[0] + out[1]) / 2


def _base_index(cube: Cube, base_width) -> int | None:
    """Where the group is tuned: ``base_width`` if given (None if the group lacks it), else its own
    base (``base_blocks``, over depth) when it has one, else its narrowest / shallowest."""
    want = cube.base if base_width is None else base_width
    at = np.flatnonzero(np.isclose(cube.widths, want)) if np.isfinite(want) else []
    if len(at):
        return int(at[0])
    return 0 if base_width is None else None


def _cube_regret(cube: Cube, metric: str, base_width, n_boot: int, rng, ci: float, joint: bool) -> list[dict]:
    base = _base_index(cube, base_width)
    if base is None:
        return []
    axis = cube.axis
    W, S, _ = cube.select.shape
    mean_loss = seed_mean(cube.loss)
    khat, kstar, reg, rel = _regret(seed_mean(cube.select), mean_loss, base)
    idx = draw(rng, n_boot, W, S, joint)
    b_khat, b_kstar, b_reg, b_rel = _regret(resampled_means(cube.select, idx), resampled_means(cube.loss, idx), base)
    a, b = _halves(S)
    if len(a) and len(b):
        cf = _cross_fit(seed_mean(cube.select[:, a]), seed_mean(cube.loss[:, a]),
                        seed_mean(cube.select[:, b]), seed_mean(cube.loss[:, b]), base)
        ia, ib = draw(rng, n_boot, W, a, joint), draw(rng, n_boot, W, b, joint)
        b_cf = _cross_fit(resampled_means(cube.select, ia), resampled_means(cube.loss, ia),
                          resampled_means(cube.select, ib), resampled_means(cube.loss, ib), base)
    else:
        cf, b_cf = np.full(W, np.nan), np.full((n_boot, W), np.nan)
    few = cube.n_seeds() < MIN_SEEDS  # a handful of distinct resamples: a CI would claim a certainty there is not
    if few:
        b_reg = b_rel = np.full_like(b_reg, np.nan)
    if min(len(a), len(b)) < MIN_SEEDS:  # the same within each half
        b_cf = np.full_like(b_cf, np.nan)
    reg_lo, reg_hi = interval(b_reg, ci)
    rel_lo, rel_hi = interval(b_rel, ci)
    cf_lo, cf_hi = interval(b_cf, ci)
    same = (b_khat[:, None] == b_kstar) & (b_kstar >= 0)
    lr = lambda i: cube.lrs[i] if i >= 0 else math.nan  # noqa: E731
    rows = []
    for w in range(W):
        if w == base:
            continue
        rows.append({
            **group_fields(cube, metric), f"base_{axis}": cube.widths[base], axis: cube.widths[w],
            "lr_selected": lr(khat), "lr_best": lr(kstar[w]),
            "shift_steps": int(kstar[w] - khat) if khat >= 0 and kstar[w] >= 0 else pd.NA,
            "loss_selected": take(mean_loss[w], khat).item(), "loss_best": take(mean_loss[w], kstar[w]).item(),
            "regret": reg[w], "regret_lo": reg_lo[w], "regret_hi": reg_hi[w],
            "rel_regret": rel[w], "rel_regret_lo": rel_lo[w], "rel_regret_hi": rel_hi[w],
            "p_same": math.nan if few else same[:, w].mean(),
            "regret_cf": cf[w], "regret_cf_lo": cf_lo[w], "regret_cf_hi": cf_hi[w],
            "n_seeds": cube.n_seeds(), "n_boot": n_boot, "axis": axis,
        })
    return rows


def transfer_regret(runs: pd.DataFrame, metric: str = "min_val_loss", base_width: float | None = None,
                    n_boot: int = 1000, seed: int = 0, ci: float = 0.95, joint: bool = True,
                    axis: str = "width_mult") -> pd.DataFrame:
    """Per group (setup, parametrization, optimizer, the other axes) and target width ζ ≠ base (with
    ``axis="blocks"``: target depth ≠ base, at a fixed width; columns ``base_blocks``, ``blocks``): ``lr_selected`` (k̂),
    ``lr_best`` (k*_ζ), ``shift_steps`` (grid steps from k̂ to k*_ζ), ``loss_selected``, ``loss_best``,
    ``regret`` and ``rel_regret`` with their ``_lo``/``_hi`` bootstrap CI, ``p_same`` (P̂(k̂ = k*_ζ)),
    the cross-fitted ``regret_cf`` with its CI, ``n_seeds`` and ``n_boot``.

    With fewer than ``bootstrap.MIN_SEEDS`` seeds the CIs and ``p_same`` are NaN (too few distinct
    resamples), and so is the cross-fitted CI when a half holds fewer; with one seed the cross-fitted
    regret itself is NaN. ``base_width``: the width (depth) tuned at (default: each group's narrowest; over depth its
    ``model.base_blocks`` when the sweep holds it, else its shallowest); groups without it are left out. ``joint``: one seed index set for every width (see :mod:`mupbench.analysis.bootstrap`).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1 (got {n_boot}): the CIs are bootstrap percentiles")
    rng = np.random.default_rng(seed)
    rows = []
    for cube in cubes(runs, metric, axis):
        rows += _cube_regret(cube, metric, base_width, n_boot, rng, ci, joint)
    return frame(rows)
