"""``mupbench-report SWEEP_DIR... [--out DIR]``: the paper's figures, Table 2 and the transfer
verdicts of some sweeps, written into one report folder (CSV / Markdown / PNG / PDF and one
self-contained ``report.html``), with a short summary on stdout.

Every analysis runs per group, a group being one setting of every axis (weight decay, its mode,
schedule, ε scaling, depth rule α, blocks, steps); the tables and lines name the axes that vary in
the sweep. When a group varies ``model.blocks`` at a fixed width, depth is a transfer axis too: the
same verdicts, regret, basin and figures over depth (``*_depth`` files, tuned at ``base_blocks``
when the sweep holds it, else at the shallowest depth)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import pandas as pd

from mupbench import records as R

from . import tables
from .aggregate import (METRICS, PARAM_NAMES, markdown, seed_stats, sort_groups, table2, table2_display, table2_latex,
                        table2_markdown)
from .basin import basin, basin_shift
from .budget import budget_comparison, budget_display, draw_budget
from .compute import compute_savings, compute_sentences
from .drift import drift_verdicts
from .figures import save_figure, sweep_figures
from .html import Page
from .records import RecordError, Sweep, group_keys, groupby, load_sweep, save_runs, varies, varying_axes
from .regret import transfer_regret
from .tables import AXIS_LABELS, SYMBOL, axis_value
from .transfer import transfer_summary

N_BOOT = 1000
NO_FLOPS = "the records carry no FLOPs (flops_per_step): compute accounting skipped"


def _write(path: Path, text: str) -> Path:
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def _csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


ORDER = ("setup", "optimizer", "metric")
TRANSFER_EXTRA = ["n_monotone", "n_lr", "wider_is_better", "drift_decades_argmin", "slope_per_doubling_argmin"]


def _cat(frames) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return sort_groups(pd.concat(frames, ignore_index=True), ORDER) if frames else pd.DataFrame()


def analyse_axis(runs: pd.DataFrame, axis: str = "width_mult", n_boot: int = N_BOOT, seed: int = 0,
                 metrics=METRICS) -> dict[str, pd.DataFrame]:
    """The transfer analysis along one axis (``"width_mult"`` or ``"blocks"``): ``optima`` (per
    ζ or depth), ``transfer`` (per group: the drift with its CI and verdict, joined with the point
    summary and "wider (deeper) is better"), ``regret`` and ``basin``."""
    keys = group_keys(axis)
    optima, transfer, regret, basins = [], [], [], []
    for metric in metrics:
        opt, summary = transfer_summary(runs, metric, axis=axis, n_boot=n_boot, seed=seed)
        verdicts = drift_verdicts(runs, metric, n_boot=n_boot, seed=seed, axis=axis)
        if len(verdicts) and len(summary):
            verdicts = verdicts.merge(summary[keys + TRANSFER_EXTRA], on=keys, how="left")
        transfer.append(verdicts)
        optima.append(opt)
        regret.append(transfer_regret(runs, metric, n_boot=n_boot, seed=seed, axis=axis))
        basins.append(basin(runs, metric, axis=axis))
    return {"optima": _cat(optima), "transfer": _cat(transfer), "regret": _cat(regret), "basin": _cat(basins)}


def analyse(runs: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0, metrics=METRICS) -> dict[str, pd.DataFrame]:
    """Every table of the report: ``table2``, :func:`analyse_axis` over width (``optima``,
    ``transfer``, ``regret``, ``basin``) and ``basin_shift``, over depth (the same with a
    ``_depth`` suffix; empty unless a group varies ``blocks``), ``compute`` (empty without FLOPs
    in the records, or without a group that varies width) and ``budget``
    (:func:`mupbench.analysis.budget.budget_comparison`; empty unless the sweep holds short runs)."""
    width = analyse_axis(runs, "width_mult", n_boot, seed, metrics)
    deep = varies(runs, "blocks")
    depth = analyse_axis(deep, "blocks", n_boot, seed, metrics) if len(deep) else {k: pd.DataFrame() for k in width}
    wide = varies(runs, "width_mult")
    basins = width["basin"]
    return {
        "table2": table2(runs, metrics), **width,
        "basin_shift": _shifts(basins),
        **{f"{k}_depth": v for k, v in depth.items()},
        "compute": compute_savings(wide) if len(wide) else pd.DataFrame(),
        "budget": budget_comparison(runs, "min_val_loss", n_boot=n_boot, seed=seed),
    }


def _shifts(basins: pd.DataFrame) -> pd.DataFrame:
    """:func:`basin_shift` of the groups with more than one width."""
    shift = basin_shift(basins) if len(basins) else pd.DataFrame()
    return sort_groups(shift[shift["n_widths"] > 1], ORDER).reset_index(drop=True) if len(shift) else shift


def _axes_text(row, shown) -> str:
    return "".join(f" {AXIS_LABELS[c]} = {axis_value(c, getattr(row, c))}" for c in shown)


def _label(row, shown=()) -> str:
    return (f"{row.setup} {PARAM_NAMES.get(row.parametrization, row.parametrization)} {row.optimizer}"
            f"{_axes_text(row, shown)} [{row.metric}]")


def _shown(df: pd.DataFrame, axis: str) -> list[str]:
    """The axes a line names: those that vary in ``df``, but the one it is about."""
    return varying_axes(df, exclude=(axis,) if axis == "width_mult" else (axis, "width_mult")) + (
        ["width_mult"] if axis == "blocks" and df["width_mult"].nunique() > 1 else [])


def verdict_lines(transfer: pd.DataFrame) -> list[str]:
    """One line per group and metric: the verdict, never a bare point estimate."""
    if transfer.empty:
        return []
    axis = tables.axis_of(transfer)
    shown = _shown(transfer, axis)
    return [f"{_label(r, shown)}: {r.sentence}" for r in transfer.itertuples()]


def regret_lines(regret: pd.DataFrame) -> list[str]:
    """Per group and metric, the regret at the widest (deepest) target."""
    lines = []
    if regret.empty:
        return lines
    axis = tables.axis_of(regret)
    shown, sym = [c for c in _shown(regret, axis) if c != axis], SYMBOL[axis]
    for _, g in groupby(regret, group_keys(axis) + ["metric"], sort=False):
        r = g.sort_values(axis).iloc[-1]
        ci = (f"95 % CI {r.regret_lo:.3g} … {r.regret_hi:.3g}; " if pd.notna(r.regret_lo) else "one seed, no CI; ")
        lines.append(f"{_label(r, shown)}: tuned at {sym} = {r[f'base_{axis}']:g}, used at {sym} = {r[axis]:g}: regret "
                     f"{r.regret:.3g} ({ci}{100 * r.rel_regret:.3g} % of the best), cross-fitted {r.regret_cf:.3g}; "
                     f"P(k̂ = k*) = {r.p_same:.2f}")
    return lines


def _html(sweep: Sweep, result: dict, figures: dict, sweep_dirs, budget_png: Path | None = None) -> str:
    page = Page("mupbench report: " + ", ".join(map(str, sweep_dirs)))
    page.text(sweep.summary())
    varied = [c for c in varying_axes(sweep.runs) if c != "width_mult"]
    if varied:
        page.text("Axes varied in this sweep (every analysis is per setting of them): " + "; ".join(
            f"{AXIS_LABELS[c]} ∈ {{{', '.join(axis_value(c, v) for v in sweep.runs[c].drop_duplicates().sort_values())}}}"
            for c in varied))
    page.heading("Problems")
    page.items(sweep.problems() or ["none"])
    _transfer_sections(page, result, "")
    page.heading("Compute")
    if len(result["compute"]):
        page.items(compute_sentences(result["compute"]))
        page.table(tables.compute_table(result["compute"]))
    else:
        page.text(compute_note(sweep.runs), "muted")
    if len(result["transfer_depth"]) or len(result["regret_depth"]):
        _transfer_sections(page, result, "_depth")
    if len(result["budget"]):
        page.heading("Budget-matched tuning")
        page.text("SPEC-AXES §6.2: the final target loss of μTransfer (full runs at the base width), SP tuned by short "
                  "runs at the target width, SP naive transfer and the oracle sweep, at tuning budgets β × one target "
                  "run (min val loss; regret against the oracle, seed-bootstrap 95 % CIs).", "muted")
        page.table(budget_display(result["budget"]))
        if budget_png is not None:
            page.image("budget", budget_png)
    page.heading("Table 2: the best network per parametrization")
    page.table(table2_display(result["table2"]))
    page.heading("Figures")
    for name, fig in figures.items():
        page.figure(name, fig)
    return page.render()


SECTIONS = {  # per transfer axis: (heading, note) of the verdicts, the regret and the basin
    "": (("Does the optimal k transfer? Verdicts",
          "The optimum per width is the quadratic-fit vertex of the seed-mean loss; the drift is its move from the "
          "narrowest to the widest width, with a seed-bootstrap 95 % CI. transfers = the CI lies within one grid "
          "step of 0; drifts = the CI excludes 0; otherwise undetermined at this resolution."),
         ("Transfer regret",
          "Loss at the k selected at the base width minus the best loss at the target width (SPEC-AXES §6.1); "
          "diverged runs are charged their loss at initialisation. Cross-fitted: selected on half the seeds, "
          "charged on the other half."),
         ("Basin of good k",
          "Per width, the range of k whose seed-mean loss is within 1 %, 5 %, 10 % of that width's best "
          "(grid values; ≤ / ≥: the basin reaches the grid's end), and how its edges move with width.")),
    "_depth": (("Does the optimal k transfer across depth? Verdicts",
                "The same analysis over model.blocks at a fixed width: the optimum per depth (quadratic-fit vertex of "
                "the seed-mean loss), its drift from the shallowest to the deepest model with a seed-bootstrap 95 % "
                "CI, per doubling of depth."),
               ("Transfer regret across depth",
                "Tuned at model.base_blocks when the sweep holds that depth, else at the shallowest; charged at "
                "every other depth, as over width."),
               ("Basin of good k per depth", "As over width, per depth.")),
}


def _transfer_sections(page: Page, result: dict, suffix: str) -> None:
    """The verdicts, regret and basin of one transfer axis (``""``: width, ``"_depth"``)."""
    (verdict_head, verdict_note), (regret_head, regret_note), (basin_head, basin_note) = SECTIONS[suffix]
    verdicts, regret, basins = (result[f"{name}{suffix}"] for name in ("transfer", "regret", "basin"))
    page.heading(verdict_head)
    page.text(verdict_note, "muted")
    page.items(verdict_lines(verdicts), "verdict")
    if len(verdicts):
        page.table(tables.verdict_table(verdicts))
    page.heading(regret_head)
    page.text(regret_note, "muted")
    if len(regret):
        page.table(tables.regret_table(regret))
    page.heading(basin_head)
    page.text(basin_note, "muted")
    if len(basins):
        page.table(tables.basin_table(basins))
    if not suffix and len(result["basin_shift"]):
        page.table(tables.basin_shift_table(result["basin_shift"]))


def compute_note(runs: pd.DataFrame) -> str:
    """Why there is no compute accounting."""
    if runs["flops_per_step"].notna().any() and varies(runs, "width_mult").empty:
        return "no group varies the width: no μTransfer over width to account the compute of"
    return NO_FLOPS


def write_report(sweep_dirs, out: str | Path, n_boot: int = N_BOOT, seed: int = 0, figures: bool = True) -> dict:
    """Everything the report command writes; returns the tables of :func:`analyse` plus ``sweep``
    and ``files``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RecordError(f"--out {out} is an existing file; give a directory (created if absent) or remove the file")
    sweep = load_sweep(sweep_dirs)
    runs = sweep.runs
    if runs.empty:
        raise RecordError(f"no run records ({R.RESULT}) under {', '.join(map(str, sweep_dirs))}")
    result = analyse(runs, n_boot, seed)
    out.mkdir(parents=True, exist_ok=True)
    files = [save_runs(runs, out / "runs.csv"), save_runs(runs, out / "runs.parquet")]
    files.append(_write(out / "problems.txt", "\n".join(sweep.problems()) or "none"))
    files.append(_csv(seed_stats(runs), out / "seed_stats.csv"))
    t2 = result["table2"]
    files += [_csv(t2, out / "table2.csv"), _write(out / "table2.md", table2_markdown(t2)), _write(out / "table2.tex", table2_latex(t2))]
    files += [_csv(result["optima"], out / "optimal_lr.csv"), _csv(result["transfer"], out / "transfer.csv")]
    if len(result["transfer"]):
        files.append(_write(out / "transfer.md", markdown(tables.verdict_table(result["transfer"]))))
    for name, table in (("regret", tables.regret_table), ("basin", tables.basin_table), ("compute", tables.compute_table),
                        ("transfer_depth", tables.verdict_table), ("regret_depth", tables.regret_table),
                        ("basin_depth", tables.basin_table)):
        if len(result[name]):
            files += [_csv(result[name], out / f"{name}.csv"), _write(out / f"{name}.md", markdown(table(result[name])))]
    if len(result["optima_depth"]):
        files.append(_csv(result["optima_depth"], out / "optimal_lr_depth.csv"))
    if len(result["basin_shift"]):
        files.append(_csv(result["basin_shift"], out / "basin_shift.csv"))
    budget_png = None
    if len(result["budget"]):
        files += [_csv(result["budget"], out / "budget.csv"),
                  _write(out / "budget.md", markdown(budget_display(result["budget"])))]
        if figures:
            drawn = draw_budget(result["budget"], out / "figures" / "budget")
            files += drawn
            budget_png = next((p for p in drawn if p.suffix == ".png"), None)
    figs = {**sweep_figures(runs, result["optima"]), **sweep_figures(runs, result["optima_depth"], axis="blocks")} if figures else {}
    for stem, fig in figs.items():
        files += save_figure(fig, out / "figures" / stem)
    files.append(_write(out / "report.html", _html(sweep, result, figs, sweep_dirs, budget_png)))
    return {**result, "sweep": sweep, "files": files}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other refusal of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _whole(least: int, what: str):
    """An argparse type: a whole number ≥ ``least``, else a one-line refusal saying why."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = least - 1
        if n < least:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {least} (got {text!r}): {what}")
        return n
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="mupbench-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help=f"directories searched for {R.RESULT}")
    parser.add_argument("--out", help="report folder (default: SWEEP_DIR/report of the first sweep)")
    parser.add_argument("--n-boot", type=_whole(1, "the CIs and verdicts are percentiles of the bootstrap resamples; "
                                                   "1000 or more give stable ones"),
                        default=N_BOOT, help=f"bootstrap resamples for every CI (default {N_BOOT})")
    parser.add_argument("--seed", type=_whole(0, "the seed of the bootstrap"), default=0, help="seed of the bootstrap")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only, never a window
    out = Path(args.out) if args.out else Path(args.sweep_dirs[0]) / "report"
    try:
        result = write_report(args.sweep_dirs, out, args.n_boot, args.seed, not args.no_figures)
    except (RecordError, OSError, ValueError) as e:
        print(f"mupbench-report: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    sweep = result["sweep"]
    print(sweep.summary())
    for line in sweep.problems()[:10]:
        print(f"  ! {line}")
    print(table2_markdown(result["table2"]))
    for line in (verdict_lines(result["transfer"]) + regret_lines(result["regret"])
                 + verdict_lines(result["transfer_depth"]) + regret_lines(result["regret_depth"])):
        print(line)
    for line in compute_sentences(result["compute"]) if len(result["compute"]) else [compute_note(sweep.runs)]:
        print(line)
    print(f"report: {len(result['files'])} files in {out} (open {out / 'report.html'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
