"""The paper's figures: Figures 2–5 (loss vs k, one curve per ζ) and Figure 1 (coordinate check).

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend), so
they work the same in a script, a test and a notebook; :func:`save_figure` writes PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import cm, colors
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from .aggregate import METRICS, PARAM_NAMES, PARAM_ORDER
from .transfer import optimal_lr

CMAP = "viridis"


def _width_norm(widths) -> colors.Normalize:
    lo, hi = float(np.min(widths)), float(np.max(widths))
    return colors.LogNorm(lo, hi if hi > lo else lo * 2, clip=True)


def _colorbar(fig: Figure, axes, norm, label: str = "width multiplier ζ") -> None:
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=CMAP), ax=axes, pad=0.02, fraction=0.04)
    ticks = 2.0 ** np.arange(np.floor(np.log2(norm.vmin)), np.ceil(np.log2(norm.vmax)) + 1)
    bar.ax.minorticks_off()
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    bar.set_label(label)


def plot_sweep(runs: pd.DataFrame, setup: str | None = None, optimizer: str | None = None,
               metrics=METRICS, logy: bool = True, optimum: str = "lr_argmin") -> Figure:
    """Figures 2–5: rows = parametrizations (SP, μP, …), columns = metrics; the seed mean of each
    metric against k (log axis), one curve per ζ coloured on a log scale, a ±1 std band, the
    optimum of each curve marked by a star (``optimum``: "lr_argmin" or "lr_fit"), and an ✕ at the
    top of the panel at every (ζ, k) where a run diverged."""
    setup = setup or runs["setup"].iloc[0]
    runs = runs[runs["setup"] == setup]
    optimizer = optimizer or runs["optimizer"].iloc[0]
    runs = runs[runs["optimizer"] == optimizer]
    if runs.empty:
        raise ValueError(f"no runs of setup {setup!r} with optimizer {optimizer!r}")
    params = sorted(runs["parametrization"].unique(), key=lambda p: PARAM_ORDER.get(p, 9))
    norm = _width_norm(runs["width_mult"])
    fig = Figure(figsize=(4.2 * len(metrics) + 1, 3.3 * len(params)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(params), len(metrics), sharex=True, squeeze=False))
    done = runs[runs["status"] == "completed"]
    for r, param in enumerate(params):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            data = done[(done["parametrization"] == param) & np.isfinite(done[metric].astype(float))]
            if not data.empty:
                sns.lineplot(data=data, x="lr", y=metric, hue="width_mult", hue_norm=norm, palette=CMAP,
                             errorbar="sd", estimator="mean", legend=False, ax=ax, linewidth=1.2)
            opt = optimal_lr(runs[runs["parametrization"] == param], metric, n_boot=0)
            opt = opt[np.isfinite(opt["loss_argmin"].astype(float))]
            if not opt.empty:  # the seed mean at the argmin is the plotted point; the fit shares its height
                ax.scatter(opt[optimum], opt["loss_argmin"], c=opt["width_mult"], cmap=CMAP, norm=norm, marker="*",
                           s=120, edgecolors="black", linewidths=0.6, zorder=5)
            div = runs[(runs["parametrization"] == param) & (runs["status"] == "diverged")]
            if not div.empty:
                at_top = blended_transform_factory(ax.transData, ax.transAxes)
                cells = div.drop_duplicates(["width_mult", "lr"])
                height = 0.97 - 0.03 * np.log2(cells["width_mult"] / norm.vmin)  # stacked by ζ, not hidden
                ax.scatter(cells["lr"], height, c=cells["width_mult"], cmap=CMAP, norm=norm,
                           marker="x", s=30, transform=at_top, zorder=5)
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_title(f"{PARAM_NAMES.get(param, param)} — {metric.replace('_', ' ')}", fontsize=10)
            ax.set_xlabel("learning-rate multiplier k")
            ax.set_ylabel(metric.replace("_", " ") if c == 0 else "")
            ax.grid(True, which="major", alpha=0.3)
    _colorbar(fig, axes, norm)
    fig.suptitle(f"{setup} ({optimizer}): mean ± 1 std over seeds; ★ optimum, ✕ diverged")
    return fig


def sweep_figures(runs: pd.DataFrame, optima: pd.DataFrame | None = None, **kw) -> dict[str, Figure]:
    """One :func:`plot_sweep` figure per (setup, optimizer) in ``runs`` and, given ``optima``
    (:func:`optimal_lr` output), one :func:`plot_optimal_lr` figure each; keyed by a file stem."""
    out = {}
    for (setup, optimizer), _ in runs.groupby(["setup", "optimizer"], observed=True, sort=True):
        stem = setup if runs["optimizer"].nunique() == 1 else f"{setup}_{optimizer}"
        out[stem] = plot_sweep(runs, setup, optimizer, **kw)
        if optima is not None:
            out[f"{stem}_optimum"] = plot_optimal_lr(optima, setup, optimizer)
    return out


def plot_optimal_lr(opt: pd.DataFrame, setup: str | None = None, optimizer: str | None = None) -> Figure:
    """The optimal k against ζ (log–log), one line per parametrization with the bootstrap CI as
    error bars, one panel per metric; ``opt`` is :func:`optimal_lr` output (several metrics may be
    concatenated). Flat = the optimum transfers across widths."""
    setup = setup or opt["setup"].iloc[0]
    optimizer = optimizer or opt["optimizer"].iloc[0]
    opt = opt[(opt["setup"] == setup) & (opt["optimizer"] == optimizer)]
    metrics = list(opt["metric"].drop_duplicates())
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    palette = dict(zip(sorted(opt["parametrization"].unique(), key=lambda p: PARAM_ORDER.get(p, 9)), sns.color_palette()))
    for ax, metric in zip(axes, metrics):
        for param, color in palette.items():
            g = opt[(opt["metric"] == metric) & (opt["parametrization"] == param)].sort_values("width_mult")
            err = [(g["lr_fit"] - g["lr_lo"]).clip(lower=0), (g["lr_hi"] - g["lr_fit"]).clip(lower=0)]
            ax.errorbar(g["width_mult"], g["lr_fit"], yerr=err, color=color, marker="o", capsize=3,
                        label=PARAM_NAMES.get(param, param))
            ax.plot(g["width_mult"], g["lr_argmin"], color=color, marker="x", linestyle="none", alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"optimal k by {metric.replace('_', ' ')}", fontsize=10)
        ax.set_xlabel("width multiplier ζ")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("k* (quadratic fit, CI; ✕ argmin)")
    axes[0].legend()
    fig.suptitle(f"{setup} ({optimizer}): does the optimum transfer?")
    return fig


def plot_coord_check(df: pd.DataFrame, coords=None, steps=None, x: str = "width_mult") -> Figure:
    """Figure 1: mean |·| of each coordinate (columns) against width (log-log), one line per step
    (coloured by step), one row per parametrization. ``df`` is the tidy frame of
    :func:`mupbench.coordinates.coord_check` (columns parametrization, coord, step, width_mult,
    value, ...); values are averaged over seeds."""
    coords = list(coords or df["coord"].drop_duplicates())
    data = df[df["coord"].isin(coords)]
    if steps is not None:
        data = data[data["step"].isin(steps)]
    params = sorted(data["parametrization"].unique(), key=lambda p: PARAM_ORDER.get(p, 9))
    fig = Figure(figsize=(3.4 * len(coords) + 1, 2.9 * len(params)), layout="constrained")
    axes = fig.subplots(len(params), len(coords), sharex=True, squeeze=False)
    step_norm = colors.Normalize(data["step"].min(), max(data["step"].max(), data["step"].min() + 1))
    for r, param in enumerate(params):
        for c, coord in enumerate(coords):
            ax = axes[r, c]
            sub = data[(data["parametrization"] == param) & (data["coord"] == coord)]
            if not sub.empty:
                sns.lineplot(data=sub, x=x, y="value", hue="step", hue_norm=step_norm, palette="flare",
                             errorbar=None, marker="o", markersize=4, legend=False, ax=ax)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{PARAM_NAMES.get(param, param)}: {coord}", fontsize=9)
            ax.set_xlabel("width multiplier ζ" if x == "width_mult" else x)
            ax.set_ylabel("mean |·|" if c == 0 else "")
            ax.grid(True, alpha=0.3)
    bar = fig.colorbar(cm.ScalarMappable(norm=step_norm, cmap="flare"), ax=axes, pad=0.02, fraction=0.04)
    bar.set_label("step")
    return fig


def save_figure(fig: Figure, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf``; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    return paths

