"""The budget-matched comparison (SPEC-AXES §6.2): μTransfer vs SP tuned by short runs at the
target width vs naive transfer vs the oracle sweep, at tuning budgets β × U.

The structure is read from the records, never from directory names. Per group (setup,
parametrization, optimizer and every other axis except ``steps``): the full horizon T is the most
steps in it, the **base** width ζ_b the narrowest width trained for T, the **target** ζ_t the widest,
and the **short runs** those at ζ_t with fewer steps, one slice per step count T_s (a tuning budget).
A group without short runs holds no budget structure and is left out. U = C(ζ_t, T), the FLOPs of
one full target run; every cost is ``flops_per_step × steps`` of the records (what a run commits,
measured once per config by :mod:`mupbench.flops`), so the ratios are measured, not assumed.

Arms (``kind``), per budget β (the nominal β whose ⌊β·T/(|K|·R)⌋ gives T_s; the measured tuning
FLOPs / U sits beside it):

- ``transfer`` (**μT** for μP, **SP-naive** for SP): n_A = ⌊βU / (R·C(ζ_b, T))⌋ grid points of the
  base sweep, taken from the centre of K outward (capped at |K|), k̂ = their best at ζ_b; cost
  n_A·R·C(ζ_b, T) + U. n_A = 0: ``affordable`` is False and the arm has no k̂ and no loss.
  (SPEC-AXES: SP-naive's cost is "as in arm 1": the same n_A points, in SP.)
- ``short`` (**SP-short**, and **μP-short** as a bonus): k̂ = the best of K after T_s steps at ζ_t;
  cost the short runs' FLOPs + U.
- ``oracle`` (once per group, β NaN): the full sweep at ζ_t, k* its best; cost |K|·R·U.

Every arm's final run at k̂ is the target sweep's cell at k̂ (same config, same seeds): the final
target loss is that cell's seed mean, and the regret is it minus the oracle's L*_{ζ_t}. Selection
uses +inf for a cell with a diverged run, the loss charged caps runs at their loss at
initialisation (:mod:`mupbench.analysis.bootstrap`). CIs are a seed bootstrap: one index set per
resample for every slice and k (a seed fixes init and data order everywhere), every k̂ and k*
re-selected in every resample; ``p_oracle`` is the share of resamples in which k̂ = k*.

A short run at seed s is the start of the target run at seed s (same init and data order; with a
constant schedule its very prefix), so SP-short selects and is charged on correlated runs, as the
oracle is (the winner's curse biases both low). The **cross-fitted** regret (``regret_cf``, as in
:mod:`mupbench.analysis.regret`) selects k̂ and k* on one half of the seeds and charges both on the
other half, both ways round, averaged: free of that bias, noisier, and it can come out negative.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import PARAM_NAMES, fmt, sort_groups
from .bootstrap import (
    MIN_SEEDS,
    argmin_finite,
    cubes,
    draw,
    interval,
    resampled_means,
    seed_mean,
    take,
)
from .records import GROUP, frame

BETAS = (0.25, 0.5, 1.0, 2.0)  # the nominal budgets of SPEC-AXES §6.2, × U
ARM_NAMES = {("mup", "transfer"): "μT", ("sp", "transfer"): "SP-naive"}
COLUMNS = [
    "setup", "parametrization", "optimizer", "metric", "arm", "kind", "beta", "base_width_mult", "target_width_mult",
    "steps", "short_steps", "n_points", "affordable", "lr_selected", "lr_oracle", "loss", "loss_lo", "loss_hi",
    "regret", "regret_lo", "regret_hi", "rel_regret", "p_oracle", "regret_cf", "regret_cf_lo", "regret_cf_hi",
    "tuning_flops", "total_flops", "flops_unit",
    "tuning_per_U", "total_per_U", "n_seeds", "n_boot",
]


def arm_name(parametrization: str, kind: str) -> str:
    """μT, SP-naive, SP-short, μP-short, oracle (other parametrizations: NTK-transfer, …)."""
    if kind == "oracle":
        return "oracle"
    return ARM_NAMES.get((parametrization, kind), f"{PARAM_NAMES.get(parametrization, parametrization)}-{kind}")


def nominal_beta(short_steps: int, n_k: int, n_seeds: int, steps: int) -> float:
    """The β whose ⌊β·T/(|K|·R)⌋ (at least 1) is ``short_steps``: one of :data:`BETAS` when one
    fits (the nearest in log when several do), else the ratio T_s·|K|·R/T itself."""
    per = n_k * n_seeds / steps  # β per step of T_s
    lo, hi = (0.0 if short_steps <= 1 else short_steps * per), (short_steps + 1) * per
    fits = [b for b in BETAS if lo - 1e-12 <= b < hi - 1e-12]
    ratio = short_steps * per
    return min(fits, key=lambda b: abs(math.log(b / ratio))) if fits else float(f"{ratio:.3g}")


def centre_out(n: int) -> np.ndarray:
    """Grid indices 0..n-1 from the centre outward (ties: the smaller k first)."""
    return np.array(sorted(range(n), key=lambda i: (abs(i - (n - 1) / 2), i)), dtype=int)


def _group_keys(runs: pd.DataFrame) -> list[str]:
    return [c for c in GROUP if c != "steps" and c in runs.columns]


def _slices(g: pd.DataFrame):
    """(T, ζ_b, ζ_t, [base runs, target runs, short runs per T_s ascending]) or None."""
    steps = g["steps"].astype("float64")
    T = steps.max()
    width = g["width_mult"].astype("float64")
    full = steps == T
    if not full.any():
        return None
    zb, zt = width[full].min(), width[full].max()
    short = np.isclose(width, zt) & (steps < T)
    if zt <= zb or not short.any():
        return None
    parts = [g[full & np.isclose(width, zb)], g[full & np.isclose(width, zt)]]
    parts += [g[short & (steps == s)] for s in sorted(steps[short].unique())]
    return int(T), float(zb), float(zt), parts


def _planned_flops(part: pd.DataFrame) -> pd.Series:
    return part["flops_per_step"].astype("float64") * part["steps"].astype("float64")


def _cube(parts: list[pd.DataFrame], metric: str, T: int):
    """The group's runs as one bootstrap cube whose first axis is the slice (base, target, shorts)."""
    stacked = pd.concat([p.assign(width_mult=float(i), steps=T) for i, p in enumerate(parts)], ignore_index=True)
    (cube,) = cubes(stacked, metric)
    return cube


def _flops_at(part: pd.DataFrame, lrs: np.ndarray, chosen: np.ndarray) -> float:
    at = np.isin(np.round(part["lr"].astype("float64").to_numpy(), 15), np.round(lrs[chosen], 15))
    return float(_planned_flops(part)[at].sum())


class _Stats:
    """Point estimates and bootstrap samples of one group's seed means (slice, k)."""

    def __init__(self, cube, n_boot: int, rng):
        S, W = len(cube.seeds), cube.select.shape[0]
        self.few = cube.n_seeds() < MIN_SEEDS  # too few distinct resamples for a CI (mupbench.analysis.bootstrap)
        self.sel, self.loss = seed_mean(cube.select), seed_mean(cube.loss)
        idx = draw(rng, n_boot, W, S, True)
        self.b_sel, self.b_loss = resampled_means(cube.select, idx), resampled_means(cube.loss, idx)
        self.kstar, self.b_kstar = argmin_finite(self.sel[1]), argmin_finite(self.b_sel[:, 1])
        self.best, self.b_best = take(self.loss[1], self.kstar), take(self.b_loss[:, 1], self.b_kstar)
        # cross-fitting: the seed halves' means, as they are and resampled within each half
        halves = (np.arange(S // 2), np.arange(S // 2, S))
        self.halves = [(seed_mean(cube.select[:, h]), seed_mean(cube.loss[:, h])) for h in halves] if S >= 2 else None
        self.halves_resampled = S // 2 >= MIN_SEEDS
        if self.halves:
            ih = [draw(rng, n_boot, W, h, True) for h in halves]
            self.b_halves = [(resampled_means(cube.select, i), resampled_means(cube.loss, i)) for i in ih]

    @staticmethod
    def _cross_fit(halves, sl: int, pick) -> np.ndarray:
        """Select k̂ (on slice ``sl``) and k* (at the target) on one half of the seeds, charge both at the
        target on the other half, and the other way round: the mean of the two regrets."""
        out = []
        for (sel, _), (_, ev) in ((halves[0], halves[1]), (halves[1], halves[0])):
            khat, kstar = pick(sel[..., sl, :]), argmin_finite(sel[..., 1, :])
            out.append(take(ev[..., 1, :], khat) - take(ev[..., 1, :], kstar))
        return (out[0] + out[1]) / 2

    def arm(self, sl: int, mask: np.ndarray | None, ci: float) -> dict:
        """k̂ chosen on slice ``sl`` among ``mask`` (None: all k), charged at the target."""
        pick = lambda m: argmin_finite(m if mask is None else np.where(mask, m, np.inf))
        khat, b_khat = pick(self.sel[sl]), pick(self.b_sel[:, sl])
        final, b_final = take(self.loss[1], khat), take(self.b_loss[:, 1], b_khat)
        b_reg = b_final - self.b_best
        if self.few:  # a handful of distinct resamples: a CI would claim a certainty there is not
            b_final = b_reg = np.full_like(b_reg, np.nan)
        (lo, hi), (rlo, rhi) = interval(b_final, ci), interval(b_reg, ci)
        cf, (cflo, cfhi) = math.nan, (math.nan, math.nan)
        if self.halves:
            cf = float(self._cross_fit(self.halves, sl, pick))
            if self.halves_resampled:  # as above, within each half
                cflo, cfhi = interval(self._cross_fit(self.b_halves, sl, pick), ci)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = (final - self.best) / self.best
        same = (b_khat == self.b_kstar) & (self.b_kstar >= 0)
        return {"khat": int(khat), "loss": float(final), "loss_lo": float(lo), "loss_hi": float(hi),
                "regret": float(final - self.best), "regret_lo": float(rlo), "regret_hi": float(rhi),
                "rel_regret": float(rel), "p_oracle": math.nan if self.few else float(same.mean()),
                "regret_cf": cf, "regret_cf_lo": float(cflo), "regret_cf_hi": float(cfhi)}


def _group_rows(key: dict, g: pd.DataFrame, metric: str, n_boot: int, rng, ci: float) -> list[dict]:
    found = _slices(g)
    if found is None:
        return []
    T, zb, zt, parts = found
    if any(_planned_flops(p).isna().any() for p in parts[:2]):
        return []  # records without FLOPs (written before they were measured): no costs, no budgets
    cube = _cube(parts, metric, T)
    st = _Stats(cube, n_boot, rng)
    lrs, K = cube.lrs, len(cube.lrs)
    U = float(_planned_flops(parts[1]).median())
    C_b = float(_planned_flops(parts[0]).median())
    R = int(parts[0]["seed"].nunique())
    base_k = np.flatnonzero(np.isin(lrs, parts[0]["lr"].astype("float64").unique()))
    order = base_k[centre_out(len(base_k))]
    lr = lambda i: float(lrs[i]) if i >= 0 else math.nan
    common = {**key, "metric": metric, "base_width_mult": zb, "target_width_mult": zt, "steps": T,
              "flops_unit": U, "n_seeds": cube.n_seeds(), "n_boot": n_boot, "lr_oracle": lr(int(st.kstar))}
    p = key.get("parametrization", "")

    def row(kind, beta, short_steps, n_points, res, tuning, total):
        out = {**common, "arm": arm_name(p, kind), "kind": kind, "beta": beta, "short_steps": short_steps,
               "n_points": n_points, "affordable": res is not None, "tuning_flops": tuning, "total_flops": total,
               "tuning_per_U": tuning / U, "total_per_U": total / U}
        res = res or {"khat": -1, **{c: math.nan for c in ("loss", "loss_lo", "loss_hi", "regret", "regret_lo",
                                                             "regret_hi", "rel_regret", "p_oracle", "regret_cf",
                                                             "regret_cf_lo", "regret_cf_hi")}}
        return {**out, "lr_selected": lr(res.pop("khat")), **res}

    rows = []
    oracle_cost = float(_planned_flops(parts[1]).sum())
    rows.append(row("oracle", math.nan, pd.NA, int(parts[1]["lr"].nunique()), st.arm(1, None, ci), oracle_cost, oracle_cost))
    for sl, part in enumerate(parts[2:], start=2):
        Ts = int(part["steps"].iloc[0])
        beta = nominal_beta(Ts, int(part["lr"].nunique()), int(part["seed"].nunique()), T)
        tuning = float(_planned_flops(part).sum())
        rows.append(row("short", beta, Ts, int(part["lr"].nunique()), st.arm(sl, None, ci), tuning, tuning + U))
        n_a = min(len(order), math.floor(beta * U / (R * C_b) + 1e-9))
        if n_a == 0:
            rows.append(row("transfer", beta, pd.NA, 0, None, math.nan, math.nan))
            continue
        mask = np.zeros(K, bool)
        mask[order[:n_a]] = True
        tuning = _flops_at(parts[0], lrs, order[:n_a])
        rows.append(row("transfer", beta, pd.NA, n_a, st.arm(0, mask, ci), tuning, tuning + U))
    return rows


def budget_comparison(runs: pd.DataFrame, metric: str = "min_val_loss", n_boot: int = 1000, seed: int = 0,
                      ci: float = 0.95) -> pd.DataFrame:
    """One row per (group, arm, β) of SPEC-AXES §6.2 (see the module docstring): ``arm`` (μT,
    SP-naive, SP-short, μP-short, oracle), ``kind``, ``beta`` (nominal; NaN for the oracle),
    ``short_steps``, ``n_points`` (the k values tuned over; 0 = ``affordable`` False), ``lr_selected``
    (k̂), ``lr_oracle`` (k*), the final target ``loss`` and ``regret`` with ``_lo``/``_hi`` CIs,
    ``rel_regret``, ``p_oracle`` (P̂(k̂ = k*)), the cross-fitted ``regret_cf`` with its CI, ``tuning_flops``, ``total_flops``, ``flops_unit`` (U),
    ``tuning_per_U``, ``total_per_U``, ``n_seeds``, ``n_boot``. Empty (these columns) when no group
    holds a budget structure. With one seed the CIs and ``p_oracle`` are NaN; with fewer than two
    seeds ``regret_cf`` is NaN, with fewer than four its CI (a half of one seed resamples to itself)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1 (got {n_boot}): the CIs are bootstrap percentiles")
    rng = np.random.default_rng(seed)
    keys = _group_keys(runs)
    rows = []
    if len(runs) and {"flops_per_step", "steps", metric} <= set(runs.columns):
        for key, g in runs.groupby(keys, observed=True, dropna=False, sort=True):
            rows += _group_rows(dict(zip(keys, key if isinstance(key, tuple) else (key,))), g, metric, n_boot, rng, ci)
    extra = [k for k in keys if k not in COLUMNS]
    table = frame(rows, columns=COLUMNS[:3] + extra + COLUMNS[3:])  # the keys in the tidy frame's dtypes
    if table.empty:
        return table
    # β-major: at each β the arms side by side (transfer, short; μP before SP as PARAM_ORDER has it), the oracles last
    table = sort_groups(table, keys=("setup", "optimizer", *extra))
    kind_rank = table["kind"].map({"transfer": 0, "short": 1, "oracle": 2})
    order = ["setup", "optimizer", *extra, "target_width_mult", "beta", "_k"]
    return (table.assign(_k=kind_rank).sort_values(order, kind="stable", na_position="last").drop(columns="_k")
            .reset_index(drop=True))


def budget_display(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as strings (one row per arm and β), for Markdown / HTML tables."""
    def ci(v, lo, hi):
        return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]" if pd.notna(lo) else fmt(v)

    rows = []
    for r in table.itertuples(index=False):
        ok = bool(r.affordable)
        rows.append({
            "setup": r.setup, "arm": r.arm if r.kind != "oracle" else f"oracle {PARAM_NAMES.get(r.parametrization, r.parametrization)}",
            "β": "—" if pd.isna(r.beta) else fmt(r.beta),
            "ζ_b → ζ_t": f"{fmt(r.base_width_mult)} → {fmt(r.target_width_mult)}",
            "k searched": str(r.n_points), "k̂": fmt(r.lr_selected) if ok else "not affordable",
            "target loss [95 % CI]": ci(r.loss, r.loss_lo, r.loss_hi) if ok else "—",
            "regret [95 % CI]": ci(r.regret, r.regret_lo, r.regret_hi) if ok else "—",
            "regret, cross-fitted": ci(r.regret_cf, r.regret_cf_lo, r.regret_cf_hi) if ok else "—",
            "P(k̂ = k*)": fmt(r.p_oracle) if ok else "—",
            "tuning / U": fmt(r.tuning_per_U) if ok else "—", "total / U": fmt(r.total_per_U) if ok else "—",
        })
    return pd.DataFrame(rows)


ARM_STYLE = {"μT": ("C0", "o", "-"), "μP-short": ("C0", "s", ":"), "SP-naive": ("C3", "o", "-"),
             "SP-short": ("C3", "s", ":")}


def draw_budget(table: pd.DataFrame, path: Path) -> list[Path]:
    """Final target loss (mean, 95 % CI) against total FLOPs / U, one line per arm over β and the
    oracles as points with a dashed level; a panel per (setup, target width, group). Writes
    ``path`` as PNG and PDF (its suffix replaced); returns the paths ([] for an empty table)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .figures import save_figure  # matplotlib only when drawing

    if table.empty:
        return []
    keys = [c for c in table.columns[: table.columns.get_loc("metric")] if c != "parametrization"] + ["target_width_mult"]
    panels = list(table.groupby(keys, observed=True, dropna=False, sort=False))
    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, g) in zip(axes, panels):
        for arm, a in g[g["affordable"].astype(bool)].groupby("arm", sort=False):
            a = a.sort_values("total_per_U")
            err = np.vstack([a["loss"] - a["loss_lo"], a["loss_hi"] - a["loss"]]).clip(min=0)
            if arm == "oracle":
                for o in a.itertuples():
                    color = "C0" if o.parametrization == "mup" else "C3"
                    ax.axhline(o.loss, color=color, ls="--", lw=0.8, alpha=0.6)
                    ax.errorbar([o.total_per_U], [o.loss], yerr=err[:, [a.index.get_loc(o.Index)]], color=color,
                                marker="*", ms=11, ls="none", capsize=3,
                                label=f"oracle {PARAM_NAMES.get(o.parametrization, o.parametrization)}")
                continue
            color, marker, ls = ARM_STYLE.get(arm, ("C2", "^", "-."))
            ax.errorbar(a["total_per_U"], a["loss"], yerr=np.nan_to_num(err), color=color, marker=marker, ls=ls,
                        capsize=3, label=arm)
            for (x, y), same in a.groupby(["total_per_U", "loss"], sort=False):  # one label per point, its β joined
                ax.annotate("β=" + ",".join(fmt(b) for b in same["beta"]), (x, y), fontsize=6,
                            xytext=(3, -9 if same["kind"].iloc[0] == "transfer" else 3),
                            textcoords="offset points", color=color)
        missing = g[~g["affordable"].astype(bool)]
        if len(missing):
            ax.text(0.01, 0.01, "not affordable: " + ", ".join(f"{r.arm} β={fmt(r.beta)}" for r in missing.itertuples()),
                    transform=ax.transAxes, fontsize=6, va="bottom")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("total FLOPs / U (U = one full target run)")
        ax.set_ylabel(f"final target {g['metric'].iloc[0].replace('_', ' ')}")
        k = dict(zip(keys, key))
        ax.set_title(f"{k['setup']}: ζ = {fmt(g['base_width_mult'].iloc[0])} → {fmt(k['target_width_mult'])}", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, Path(path).with_suffix(""))
