"""The paper's figures: Figures 2–5 (loss vs k, one curve per ζ) and Figure 1 (coordinate check);
over depth (``axis="blocks"``) the same figures with one curve per depth at a fixed width.

:func:`sweep_figures` draws one figure per (setup, optimizer, every other axis that varies in the
sweep), for the groups that hold more than one value of the transfer axis; a figure's rows are the
parametrizations, each with its depth rule α when the sweep varies α.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend), so
they work the same in a script, a test and a notebook; :func:`save_figure` writes PNG and PDF.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import cm, colors
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from .aggregate import METRICS, PARAM_NAMES, PARAM_ORDER
from .records import groupby, select, varies, varying_axes, with_axes
from .tables import AXIS_LABELS, axis_value
from .transfer import optimal_lr

CMAP = "viridis"
AXIS_NAMES = {"width_mult": "width multiplier ζ", "blocks": "blocks (depth)"}
SHORT = {"weight_decay": "wd", "wd_mode": "", "wd_on_vectors": "wdvec", "eps_scaling": "eps", "schedule": "",
         "depth_alpha": "alpha", "steps": "steps", "width_mult": "zeta", "blocks": "blocks",
         "variant": ""}


def _stem_value(col: str, v) -> str:
    """An axis value in a file stem; a variant's dotted keys with dashes (train-batch_size=32)."""
    text = axis_value(col, v)
    if col == "variant" and not pd.isna(v):
        text = "_".join(f"{k.replace('.', '-')}={val}" for k, _, val in (s.partition("=") for s in text.split(", ")))
    return text


def curve_families(runs: pd.DataFrame) -> list[tuple[str, float]]:
    """The (parametrization, depth α) pairs of ``runs``, SP, μP, … first, α none first."""
    pairs = with_axes(runs)[["parametrization", "depth_alpha"]].drop_duplicates()
    key = lambda p: (PARAM_ORDER.get(p[0], 9), -1.0 if pd.isna(p[1]) else float(p[1]))  # noqa: E731
    return sorted(((str(p), a) for p, a in pairs.itertuples(index=False)), key=key)


def _second_line(title: str) -> str:
    """The axis values of a figure (", λ = 0.1, wd mode = coupled") as a title's second line."""
    return f"\n{title.removeprefix(', ')}" if title else ""


def family_label(param: str, alpha, with_alpha: bool) -> str:
    name = PARAM_NAMES.get(param, param)
    return f"{name}, α = {axis_value('depth_alpha', alpha)}" if with_alpha else name


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
               metrics=METRICS, logy: bool = True, optimum: str = "lr_argmin", axis: str = "width_mult",
               title: str = "") -> Figure:
    """Figures 2–5: rows = parametrizations (SP, μP, …; with their depth rule α when ``runs`` holds
    several), columns = metrics; the seed mean of each metric against k (log axis), one curve per ζ
    (``axis="blocks"``: per depth) coloured on a log scale, a ±1 std band, the optimum of each curve
    marked by a star (``optimum``: "lr_argmin" or "lr_fit"), and an ✕ at the top of the panel at
    every (ζ, k) where a run diverged. Runs that differ in any other axis are averaged together:
    pass one setting of them (:func:`sweep_figures` does)."""
    runs = with_axes(runs)
    setup = setup or runs["setup"].iloc[0]
    runs = runs[runs["setup"] == setup]
    optimizer = optimizer or runs["optimizer"].iloc[0]
    runs = runs[runs["optimizer"] == optimizer]
    if runs.empty:
        raise ValueError(f"no runs of setup {setup!r} with optimizer {optimizer!r}")
    families = curve_families(runs)
    with_alpha = runs["depth_alpha"].nunique(dropna=False) > 1
    norm = _width_norm(runs[axis].astype(float))
    fig = Figure(figsize=(4.2 * len(metrics) + 1, 3.3 * len(families)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(families), len(metrics), sharex=True, squeeze=False))
    for r, (param, alpha) in enumerate(families):
        mine = select(runs, {"parametrization": param, "depth_alpha": alpha}).astype({axis: float})
        done = mine[mine["status"] == "completed"]
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            data = done[np.isfinite(done[metric].astype(float))]
            if not data.empty:
                sns.lineplot(data=data, x="lr", y=metric, hue=axis, hue_norm=norm, palette=CMAP,
                             errorbar="sd", estimator="mean", legend=False, ax=ax, linewidth=1.2)
            opt = optimal_lr(mine, metric, n_boot=0, axis=axis)
            opt = opt[np.isfinite(opt["loss_argmin"].astype(float))]
            if not opt.empty:  # the seed mean at the argmin is the plotted point; the fit shares its height
                ax.scatter(opt[optimum], opt["loss_argmin"], c=opt[axis].astype(float), cmap=CMAP, norm=norm,
                           marker="*", s=120, edgecolors="black", linewidths=0.6, zorder=5)
            div = mine[mine["status"] == "diverged"]
            if not div.empty:
                at_top = blended_transform_factory(ax.transData, ax.transAxes)
                cells = div.drop_duplicates([axis, "lr"])
                height = 0.97 - 0.03 * np.log2(cells[axis] / norm.vmin)  # stacked by ζ, not hidden
                ax.scatter(cells["lr"], height, c=cells[axis], cmap=CMAP, norm=norm,
                           marker="x", s=30, transform=at_top, zorder=5)
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            ax.set_title(f"{family_label(param, alpha, with_alpha)} — {metric.replace('_', ' ')}", fontsize=10)
            ax.set_xlabel("learning-rate multiplier k")
            ax.set_ylabel(metric.replace("_", " ") if c == 0 else "")
            ax.grid(True, which="major", alpha=0.3)
    _colorbar(fig, axes, norm, AXIS_NAMES[axis])
    fig.suptitle(f"{setup} ({optimizer}): mean ± 1 std over seeds; ★ optimum, ✕ diverged{_second_line(title)}")
    return fig


def sweep_figures(runs: pd.DataFrame, optima: pd.DataFrame | None = None, axis: str = "width_mult",
                  **kw) -> dict[str, Figure]:
    """One :func:`plot_sweep` figure per (setup, optimizer, each other axis that varies in ``runs``)
    among the groups that hold more than one value of ``axis`` and, given ``optima``
    (:func:`optimal_lr` output along ``axis``), one :func:`plot_optimal_lr` figure each; keyed by a
    file stem: the setup, then the optimizer when several, the varying axes' values, and ``depth``
    for ``axis="blocks"`` (a sweep that varies nothing new keeps the paper's stems)."""
    runs = with_axes(runs)
    many_opt = runs["optimizer"].nunique() > 1
    runs = varies(runs, axis)
    out = {}
    if runs.empty:
        return out
    split = [c for c in varying_axes(runs, exclude=(axis, "depth_alpha")) if not (axis == "width_mult" and c == "width_mult")]
    keys = ["setup", "optimizer", *split]
    for key, g in groupby(runs, keys, sort=True):
        values = dict(zip(keys, key))
        parts = [values["setup"]] + ([values["optimizer"]] if many_opt else [])
        parts += [f"{SHORT[c]}{_stem_value(c, values[c])}" for c in split] + (["depth"] if axis == "blocks" else [])
        stem = re.sub(r"[^\w=+-]", "", "_".join(parts).replace(".", "p").replace(",", "_"))  # a dot would read as the suffix
        title = "".join(f", {AXIS_LABELS[c]} = {axis_value(c, values[c])}" for c in split)
        out[stem] = plot_sweep(g, values["setup"], values["optimizer"], axis=axis, title=title, **kw)
        if optima is not None:
            mine = select(optima, {c: v for c, v in values.items() if c in optima})
            if len(mine):
                out[f"{stem}_optimum"] = plot_optimal_lr(mine, values["setup"], values["optimizer"], axis, title)
    return out


def plot_optimal_lr(opt: pd.DataFrame, setup: str | None = None, optimizer: str | None = None,
                    axis: str = "width_mult", title: str = "") -> Figure:
    """The optimal k against ζ (``axis="blocks"``: against depth) (log–log), one line per
    parametrization (and depth rule α, when several) with the bootstrap CI as error bars, one panel
    per metric; ``opt`` is :func:`optimal_lr` output (several metrics may be concatenated). Flat =
    the optimum transfers."""
    opt = with_axes(opt)
    setup = setup or opt["setup"].iloc[0]
    optimizer = optimizer or opt["optimizer"].iloc[0]
    opt = opt[(opt["setup"] == setup) & (opt["optimizer"] == optimizer)]
    metrics = list(opt["metric"].drop_duplicates())
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    with_alpha = opt["depth_alpha"].nunique(dropna=False) > 1
    palette = dict(zip(curve_families(opt), sns.color_palette()))
    for ax, metric in zip(axes, metrics):
        for (param, alpha), color in palette.items():
            g = select(opt[opt["metric"] == metric], {"parametrization": param, "depth_alpha": alpha}).sort_values(axis)
            x = g[axis].astype(float)
            err = [(g["lr_fit"] - g["lr_lo"]).clip(lower=0), (g["lr_hi"] - g["lr_fit"]).clip(lower=0)]
            ax.errorbar(x, g["lr_fit"], yerr=err, color=color, marker="o", capsize=3,
                        label=family_label(param, alpha, with_alpha))
            ax.plot(x, g["lr_argmin"], color=color, marker="x", linestyle="none", alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"optimal k by {metric.replace('_', ' ')}", fontsize=10)
        ax.set_xlabel(AXIS_NAMES[axis])
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("k* (quadratic fit, CI; ✕ argmin)")
    axes[0].legend()
    fig.suptitle(f"{setup} ({optimizer}): does the optimum transfer{' across depth' if axis == 'blocks' else ''}?"
                 f"{_second_line(title)}")
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

