"""Seed statistics per grid cell, diverged counts, and the paper's Table 2.

Conventions (used by every analysis function):
- mean / std / n of a metric are over the *completed* runs of a cell (diverged and failed runs
  are left out of the average, as in the paper's figures);
- the *objective* of a cell is that mean, or +inf when any run of the cell diverged: a diverged
  run counts as an infinitely bad loss wherever a best value or an optimum is chosen, never as
  missing. Failed runs (crashes) are neither: they are reported and otherwise ignored.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from .records import CELL, GROUP, groupby, varying_axes, with_axes

METRICS = ("min_train_loss", "min_val_loss")
PARAM_ORDER = {"sp": 0, "mup": 1, "ntk": 2, "mf": 3}
PARAM_NAMES = {"sp": "SP", "mup": "μP", "ntk": "NTK", "mf": "MF"}
AXIS_LABELS = {"weight_decay": "λ (wd)", "wd_mode": "wd mode", "wd_on_vectors": "wd on vectors",
               "eps_scaling": "ε scaling", "schedule": "schedule", "depth_alpha": "α (depth)", "blocks": "blocks",
               "steps": "steps", "variant": "other settings", "width_mult": "ζ"}


def seed_stats(runs: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """One row per (setup, parametrization, optimizer, ζ, k): ``{m}_mean``, ``{m}_std``, ``{m}_n``
    and ``{m}_objective`` for each metric, plus ``n_runs``, ``n_completed``, ``n_diverged``,
    ``n_failed``."""
    runs = with_axes(runs)
    status = runs["status"].astype(str)
    flags = runs[CELL].assign(
        n_runs=1,
        n_completed=(status == "completed").astype(int),
        n_diverged=(status == "diverged").astype(int),
        n_failed=(status == "failed").astype(int),
    )
    out = groupby(flags, CELL).sum().reset_index()
    done = runs[status == "completed"]
    for m in metrics:
        vals = done[CELL + [m]].astype({m: "float64"})
        vals = vals[np.isfinite(vals[m])]
        stats = groupby(vals, CELL)[m].agg(["mean", "std", "count"])
        stats.columns = [f"{m}_mean", f"{m}_std", f"{m}_n"]
        out = out.merge(stats.reset_index(), on=CELL, how="left")
        out[f"{m}_n"] = out[f"{m}_n"].fillna(0).astype(int)
        out[f"{m}_objective"] = out[f"{m}_mean"].where(out["n_diverged"] == 0, math.inf)
    return out.sort_values(CELL).reset_index(drop=True)


def diverged_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Diverged runs per (setup, parametrization, optimizer, ζ), every one counted."""
    runs = with_axes(runs)
    keys = GROUP + ["width_mult"]
    flags = runs[keys].assign(n_runs=1, n_diverged=(runs["status"].astype(str) == "diverged").astype(int))
    return groupby(flags, keys).sum().reset_index()


def _best(stats: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per group, the cell with the lowest finite objective (its mean, std, ζ and k)."""
    col = f"{metric}_objective"
    ok = stats[np.isfinite(stats[col].astype(float))]
    best = ok.loc[groupby(ok, GROUP)[col].idxmin()]
    best = best[GROUP + [f"{metric}_mean", f"{metric}_std", f"{metric}_n", "width_mult", "lr"]]
    return best.rename(columns={
        f"{metric}_mean": metric, f"{metric}_std": f"{metric}_std", f"{metric}_n": f"{metric}_n",
        "width_mult": f"{metric}_width_mult", "lr": f"{metric}_lr",
    })


def table2(runs: pd.DataFrame, metrics=METRICS) -> pd.DataFrame:
    """The paper's Table 2: per (setup, parametrization, optimizer) the best network (the grid cell
    with the lowest seed-mean objective) by each metric, with its std, ζ and k, and the number of
    diverged (and failed) runs."""
    stats = seed_stats(runs, metrics)
    counts = groupby(stats, GROUP)[["n_runs", "n_diverged", "n_failed"]].sum().reset_index()
    out = counts[GROUP]
    for m in metrics:
        out = out.merge(_best(stats, m), on=GROUP, how="left")
    out = out.merge(counts, on=GROUP, how="left")
    return sort_groups(out)


def sort_groups(df: pd.DataFrame, keys=("setup", "optimizer")) -> pd.DataFrame:
    """Sort by ``keys``, then parametrization in the order SP, μP, NTK, MF (others last)."""
    rank = df["parametrization"].map(lambda p: PARAM_ORDER.get(p, len(PARAM_ORDER)))
    return df.assign(_rank=rank).sort_values([*keys, "_rank"], kind="stable").drop(columns="_rank").reset_index(drop=True)


# ---- formatting -------------------------------------------------------------------------------


def fmt(x, digits: int = 3) -> str:
    """A number for a table: 3 significant digits, '—' for none, '∞' for infinity."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "—"
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.{digits}g}"


def axis_value(col: str, v) -> str:
    """One axis value as a table shows it (α NA: "none", no depth rule; blocks NA: "—")."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "none" if col == "depth_alpha" else "—"
    return fmt(v) if isinstance(v, (float, np.floating)) else str(v)


def table2_display(t2: pd.DataFrame, metrics=METRICS, pm: str = "±") -> pd.DataFrame:
    """Table 2 as strings; ``pm`` is the plus-minus sign of the target format. The axes that vary
    among its rows get a column each."""
    rows = {"setup": t2["setup"], "param": t2["parametrization"].map(lambda p: PARAM_NAMES.get(p, p))}
    if t2["optimizer"].nunique() > 1:
        rows["optimizer"] = t2["optimizer"]
    for col in varying_axes(t2, exclude=("width_mult",)):
        rows[AXIS_LABELS[col]] = [axis_value(col, v) for v in t2[col]]
    for m in metrics:
        rows[m.replace("_", " ")] = [f"{fmt(v)} {pm} {fmt(s)}" for v, s in zip(t2[m], t2[f"{m}_std"])]
        rows[f"ζ, k ({m.split('_')[1]})"] = [
            f"{fmt(z)}, {fmt(k)}" if pd.notna(k) else "—" for z, k in zip(t2[f"{m}_width_mult"], t2[f"{m}_lr"])
        ]
    rows["diverged"] = [f"{d} / {n}" for d, n in zip(t2["n_diverged"], t2["n_runs"])]
    if t2["n_failed"].sum():
        rows["failed"] = t2["n_failed"].astype(str)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of strings (no extra dependency)."""
    cells = [list(map(str, df.columns))] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(df.columns))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])


def table2_markdown(t2: pd.DataFrame, metrics=METRICS) -> str:
    return markdown(table2_display(t2, metrics, "±"))


def table2_latex(t2: pd.DataFrame, metrics=METRICS) -> str:
    shown = table2_display(t2, metrics, r"$\pm$")
    subs = {"μP": r"$\mu$P", "∞": r"$\infty$", "—": "--", "_": r"\_"}
    shown = shown.map(lambda v: functools.reduce(lambda t, kv: t.replace(*kv), subs.items(), str(v)))
    greek = {"ζ": r"$\zeta$", "α": r"$\alpha$", "λ": r"$\lambda$", "ε": r"$\varepsilon$"}
    shown.columns = [functools.reduce(lambda t, kv: t.replace(*kv), greek.items(), c) for c in shown.columns]
    return shown.to_latex(index=False, escape=False)
