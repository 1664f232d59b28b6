"""The report's tables as frames of strings (Markdown and HTML are both made from these): the
transfer verdicts, the regret, the basin and the compute accounting.

Each table names its group by setup and parametrization (the optimizer when several), and by every
other axis that takes more than one value in that table (:func:`mupbench.analysis.records.varying_axes`),
so a sweep that varies no new axis reads as the paper's. Tables of an analysis over depth (a frame
whose ``axis`` column says ``blocks``) label the transfer axis "blocks" where width tables say ζ.
"""

from __future__ import annotations

import pandas as pd

from .aggregate import AXIS_LABELS, PARAM_NAMES, axis_value, fmt
from .records import varying_axes

LABELS = {"min_train_loss": "min train", "min_val_loss": "min val", "final_train_loss": "final train",
          "final_val_loss": "final val"}
SYMBOL = {"width_mult": "ζ", "blocks": "blocks"}
ENDS = {"width_mult": ("narrowest", "widest"), "blocks": ("shallowest", "deepest")}


def axis_of(df: pd.DataFrame) -> str:
    """The transfer axis of an analysis frame (its ``axis`` column; width by default)."""
    return str(df["axis"].iloc[0]) if "axis" in df and len(df) else "width_mult"


def _group(df: pd.DataFrame, axis: str = "width_mult") -> dict:
    cols = {"setup": df["setup"], "param": df["parametrization"].map(lambda p: PARAM_NAMES.get(p, p))}
    if df["optimizer"].nunique() > 1:
        cols["optimizer"] = df["optimizer"]
    for col in varying_axes(df, exclude=(axis,) if axis != "blocks" else (axis, "width_mult")):
        cols[AXIS_LABELS[col]] = [axis_value(col, v) for v in df[col]]
    if axis == "blocks" and "width_mult" in df and df["width_mult"].nunique() > 1:
        cols["ζ"] = df["width_mult"].map(fmt)
    if "metric" in df:
        cols["metric"] = df["metric"].map(lambda m: LABELS.get(m, m))
    return cols


def _num(x, digits: int = 3) -> str:
    """``fmt`` with round-off shown as 0 (a drift of 3e-16 decades is 0)."""
    return fmt(round(float(x), 9) + 0.0, digits) if pd.notna(x) and abs(float(x)) != float("inf") else fmt(x, digits)


def _ci(x, lo, hi, digits: int = 3, pct: bool = False) -> str:
    """``x [lo, hi]``; in percent with ``pct``."""
    scale, unit = (100, " %") if pct else (1, "")
    return f"{_num(scale * x, digits)}{unit} [{_num(scale * lo, digits)}, {_num(scale * hi, digits)}]"


def verdict_table(v: pd.DataFrame) -> pd.DataFrame:
    """:func:`mupbench.analysis.drift.drift_verdicts` (optionally joined with "wider is better")."""
    axis = axis_of(v)
    sym, (lo_end, hi_end) = SYMBOL[axis], ENDS[axis]
    cols = _group(v, axis)
    cols[f"{sym} range"] = [f"{fmt(a)}–{fmt(b)}" for a, b in zip(v[f"{axis}_min"], v[f"{axis}_max"])]
    cols["verdict"] = [f"{a} {b}" if a == "drifts" else f"{a} (moves < 1 step {b})" if b else a
                       for a, b in zip(v["verdict"], v["direction"])]
    cols[f"k* ({lo_end} → {hi_end})"] = [f"{fmt(a)} → {fmt(b)}" for a, b in zip(v["lr_opt_min"], v["lr_opt_max"])]
    cols["drift, decades [95 % CI]"] = [_ci(*r, digits=2) for r in zip(v["drift_decades"], v["drift_lo"], v["drift_hi"])]
    cols["per doubling [95 % CI]"] = [_ci(*r, digits=2) for r in zip(v["slope_per_doubling"], v["slope_lo"], v["slope_hi"])]
    cols["grid step"] = v["grid_step"].map(lambda s: fmt(s, 2))
    cols["seeds"] = v["n_seeds"].astype(str)
    cols["seeds to decide"] = v["seeds_needed"].map(lambda n: "—" if pd.isna(n) else str(n))
    if "n_monotone" in v:
        better = "wider is better" if axis == "width_mult" else "deeper is better"
        cols[better] = [f"{m}/{n}" if pd.notna(n) else "—" for m, n in zip(v["n_monotone"], v["n_lr"])]
    return pd.DataFrame(cols)


def regret_table(r: pd.DataFrame) -> pd.DataFrame:
    """:func:`mupbench.analysis.regret.transfer_regret`."""
    axis = axis_of(r)
    cols = _group(r, axis)
    cols[f"{SYMBOL[axis]} base → target"] = [f"{fmt(a)} → {fmt(b)}" for a, b in zip(r[f"base_{axis}"], r[axis])]
    cols["k̂ (base)"] = r["lr_selected"].map(fmt)
    cols["k* (target)"] = r["lr_best"].map(fmt)
    cols["shift (steps)"] = r["shift_steps"].map(lambda s: "—" if pd.isna(s) else f"{int(s):+d}")
    cols["regret [95 % CI]"] = [_ci(*x) for x in zip(r["regret"], r["regret_lo"], r["regret_hi"])]
    cols["relative [95 % CI]"] = [_ci(*x, pct=True) for x in zip(r["rel_regret"], r["rel_regret_lo"], r["rel_regret_hi"])]
    cols["P(k̂ = k*)"] = r["p_same"].map(lambda p: fmt(p, 2))
    cols["cross-fitted [95 % CI]"] = [_ci(*x) for x in zip(r["regret_cf"], r["regret_cf_lo"], r["regret_cf_hi"])]
    cols["seeds"] = r["n_seeds"].astype(str)
    return pd.DataFrame(cols)


def basin_table(b: pd.DataFrame) -> pd.DataFrame:
    """:func:`mupbench.analysis.basin.basin`, one row per (group, metric, ζ), one column per tolerance:
    "lo – hi (decades)", with ≤ / ≥ where the basin reaches the grid's end."""
    axis = axis_of(b)
    keys = [c for c in ("setup", "parametrization", "optimizer", *varying_axes(b, exclude=(axis,)), "metric", axis)
            if c in b]
    text = [f"{'≤' if ol else ''}{fmt(lo)} – {'≥' if oh else ''}{fmt(hi)} ({fmt(d, 2)})"
            for lo, hi, d, ol, oh in zip(b["lr_lo"], b["lr_hi"], b["decades"], b["open_lo"], b["open_hi"])]
    wide = b.assign(_text=text, _tol=[f"within {fmt(100 * t)} %" for t in b["tolerance"]])
    wide = wide.pivot_table(index=keys, columns="_tol", values="_text", aggfunc="first", sort=False,
                            dropna=False).reset_index()
    wide = wide[wide[[c for c in wide.columns if c not in keys]].notna().any(axis=1)]
    tols = [c for c in wide.columns if c not in keys]
    cols = _group(wide, axis)
    cols[SYMBOL[axis]] = wide[axis].map(fmt)
    for t in sorted(tols, key=lambda c: float(c.split()[1])):
        cols[f"{t}: k range (decades)"] = wide[t]
    return pd.DataFrame(cols)


def basin_shift_table(s: pd.DataFrame) -> pd.DataFrame:
    """:func:`mupbench.analysis.basin.basin_shift`."""
    cols = _group(s)
    cols["tolerance"] = s["tolerance"].map(lambda t: f"{fmt(100 * t)} %")
    cols["low edge (narrowest → widest)"] = [f"{fmt(a)} → {fmt(b)}" for a, b in zip(s["lr_lo_min"], s["lr_lo_max"])]
    cols["high edge (narrowest → widest)"] = [f"{fmt(a)} → {fmt(b)}" for a, b in zip(s["lr_hi_min"], s["lr_hi_max"])]
    cols["low edge / doubling"] = s["lo_per_doubling"].map(lambda x: _num(x, 2))
    cols["high edge / doubling"] = s["hi_per_doubling"].map(lambda x: _num(x, 2))
    cols["basin width change (decades)"] = s["decades_change"].map(lambda x: _num(x, 2))
    return pd.DataFrame(cols)


def compute_table(c: pd.DataFrame) -> pd.DataFrame:
    """:func:`mupbench.analysis.compute.compute_savings`."""
    cols = _group(c)
    cols["tuning at base ζ"] = [f"{fmt(f)} (ζ = {fmt(z)})" for f, z in zip(c["flops_tune_base"], c["base_width_mult"])]
    cols["tuning at every ζ"] = c["flops_tune_all"].map(fmt)
    cols["tuning at widest ζ"] = [f"{fmt(f)} (ζ = {fmt(z)})" for f, z in zip(c["flops_tune_widest"], c["widest_width_mult"])]
    cols["μTransfer to widest"] = c["flops_mutransfer_widest"].map(fmt)
    cols["saved (widest)"] = c["saving_widest"].map(lambda x: f"{fmt(x)}×")
    cols["μTransfer to every ζ"] = c["flops_mutransfer_all"].map(fmt)
    cols["saved (every ζ)"] = c["saving_all"].map(lambda x: f"{fmt(x)}×")
    return pd.DataFrame(cols)
