"""Compute accounting: what tuning cost at the base width, at every width, and what μTransfer saved.

A run's FLOPs are its record's ``flops_total``, else ``flops_per_step × steps_done`` (both measured
by :func:`mupbench.flops.flops_per_step`: forward + backward, the optimizer step not counted); a
*full run* at a width is ``flops_per_step × steps`` (its median over the width's runs). Per group:

- tuning at the base width = the FLOPs of every run there (all k, all seeds), as run;
- tuning at a width directly = the same at that width; tuning at every width = the whole sweep;
- μTransfer to width ζ = tuning at the base width + one full run at ζ; to every width = tuning at
  the base + one full run at each other width. ``saving_*`` is direct / μTransfer (× less).

Groups whose records lack the FLOPs (records written before they were measured) are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregate import fmt
from .records import GROUP, frame, groupby, with_axes


def _flops(g: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    per_step = g["flops_per_step"].astype("float64")
    spent = g["flops_total"].astype("float64").fillna(per_step * g["steps_done"].astype("float64"))
    return spent, per_step * g["steps"].astype("float64")


def compute_savings(runs: pd.DataFrame, base_width: float | None = None) -> pd.DataFrame:
    """One row per group whose every run has FLOPs (see the module docstring); empty otherwise."""
    rows = []
    if not {"flops_per_step", "flops_total"} <= set(runs.columns):
        return frame(rows)
    runs = with_axes(runs)
    for key, g in groupby(runs, GROUP, sort=True):
        spent, full = _flops(g)
        if spent.isna().any() or full.isna().all():
            continue
        widths = np.sort(g["width_mult"].unique().astype(float))
        base = widths[0] if base_width is None else base_width
        if not np.isclose(widths, base).any():
            continue
        at = lambda z: np.isclose(g["width_mult"].astype(float), z)  # noqa: E731
        one_run = {z: float(full[at(z)].median()) for z in widths}
        tune = {z: float(spent[at(z)].sum()) for z in widths}
        widest = widths[-1]
        mutransfer_all = tune[base] + sum(v for z, v in one_run.items() if not np.isclose(z, base))
        rows.append({
            **dict(zip(GROUP, key)), "base_width_mult": base, "widest_width_mult": widest,
            "flops_tune_base": tune[base], "flops_tune_all": float(spent.sum()), "flops_tune_widest": tune[widest],
            "flops_run_widest": one_run[widest], "flops_mutransfer_widest": tune[base] + one_run[widest],
            "saving_widest": tune[widest] / (tune[base] + one_run[widest]),
            "flops_mutransfer_all": mutransfer_all, "saving_all": float(spent.sum()) / mutransfer_all,
            "n_runs": len(g),
        })
    return frame(rows)


def compute_sentences(savings: pd.DataFrame) -> list[str]:
    """One line per setup (its μP group when there is one, else its first group)."""
    lines = []
    for setup, g in savings.groupby("setup", sort=True):
        row = (g[g["parametrization"] == "mup"] if (g["parametrization"] == "mup").any() else g).iloc[0]
        lines.append(
            f"{setup}: tuning at ζ = {fmt(row.base_width_mult)} took {fmt(row.flops_tune_base)} FLOPs, tuning at every "
            f"width {fmt(row.flops_tune_all)}; μTransfer to ζ = {fmt(row.widest_width_mult)} (the base sweep + one "
            f"full run, {fmt(row.flops_mutransfer_widest)}) costs {fmt(row.saving_widest)}× less than tuning there "
            f"({fmt(row.flops_tune_widest)}), and to every width {fmt(row.saving_all)}× less than the whole sweep")
    return lines
