"""``mupbench-report SWEEP_DIR... [--out DIR]``: the paper's figures, Table 2 and the transfer
metrics of some sweeps, written into one report folder, with a short summary on stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import pandas as pd

from .aggregate import METRICS, PARAM_NAMES, fmt, markdown, seed_stats, sort_groups, table2, table2_latex, table2_markdown
from .figures import save_figure, sweep_figures
from .records import RecordError, load_sweep, save_runs
from .transfer import transfer_summary


def _write(path: Path, text: str) -> Path:
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def _transfer_markdown(summary: pd.DataFrame) -> str:
    small = lambda x: fmt(round(x, 9))  # noqa: E731  (a drift of 3e-16 decades is 0)
    shown = pd.DataFrame({
        "setup": summary["setup"], "param": summary["parametrization"].map(lambda p: PARAM_NAMES.get(p, p)),
        "optimizer": summary["optimizer"],
        "metric": summary["metric"],
        "ζ range": [f"{fmt(a)}–{fmt(b)}" for a, b in zip(summary["width_mult_min"], summary["width_mult_max"])],
        "k* (narrowest → widest)": [f"{fmt(a)} → {fmt(b)}" for a, b in zip(summary["lr_opt_min"], summary["lr_opt_max"])],
        "drift (decades)": summary["drift_decades"].map(small),
        "per doubling": summary["slope_per_doubling"].map(small),
        "wider is better": [f"{m}/{n}" for m, n in zip(summary["n_monotone"], summary["n_lr"])],
    })
    return markdown(shown)


def write_report(sweep_dirs, out: str | Path, n_boot: int = 200, seed: int = 0, figures: bool = True) -> dict:
    """Everything the report command writes; returns ``{"sweep", "table2", "transfer", "files"}``."""
    sweep = load_sweep(sweep_dirs)
    runs = sweep.runs
    if runs.empty:
        raise RecordError(f"no run records (result.json) under {', '.join(map(str, sweep_dirs))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [save_runs(runs, out / "runs.csv"), save_runs(runs, out / "runs.parquet")]
    files.append(_write(out / "problems.txt", "\n".join(sweep.problems()) or "none"))
    seed_stats(runs).to_csv(out / "seed_stats.csv", index=False)
    files.append(out / "seed_stats.csv")
    t2 = table2(runs)
    t2.to_csv(out / "table2.csv", index=False)
    files += [out / "table2.csv", _write(out / "table2.md", table2_markdown(t2)), _write(out / "table2.tex", table2_latex(t2))]
    optima, summaries = [], []
    for metric in METRICS:
        opt, summary = transfer_summary(runs, metric, n_boot=n_boot, seed=seed)
        optima.append(opt)
        summaries.append(summary)
    optima, transfer = pd.concat(optima, ignore_index=True), pd.concat(summaries, ignore_index=True)
    transfer = sort_groups(transfer, ("setup", "optimizer", "metric"))
    optima.to_csv(out / "optimal_lr.csv", index=False)
    transfer.to_csv(out / "transfer.csv", index=False)
    files += [out / "optimal_lr.csv", out / "transfer.csv", _write(out / "transfer.md", _transfer_markdown(transfer))]
    if figures:
        for stem, fig in sweep_figures(runs, optima).items():
            files += save_figure(fig, out / "figures" / stem)
    return {"sweep": sweep, "table2": t2, "transfer": transfer, "files": files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mupbench-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="directories searched for result.json")
    parser.add_argument("--out", help="report folder (default: SWEEP_DIR/report of the first sweep)")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the optimum's CI")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only, never a window
    out = Path(args.out) if args.out else Path(args.sweep_dirs[0]) / "report"
    try:
        result = write_report(args.sweep_dirs, out, args.n_boot, args.seed, not args.no_figures)
    except (RecordError, OSError, ValueError) as e:
        print(f"mupbench-report: error: {e}", file=sys.stderr)
        return 1
    sweep, transfer = result["sweep"], result["transfer"]
    print(sweep.summary())
    for line in sweep.problems()[:10]:
        print(f"  ! {line}")
    print(table2_markdown(result["table2"]))
    for row in transfer.itertuples():
        print(f"{row.setup} {row.parametrization} {row.optimizer} [{row.metric}]: optimum drifts "
              f"{fmt(round(row.drift_decades, 9))} decades over ζ {fmt(row.width_mult_min)}–{fmt(row.width_mult_max)} "
              f"({fmt(round(row.slope_per_doubling, 9))}/doubling); wider is better at {row.n_monotone}/{row.n_lr} k")
    print(f"report: {len(result['files'])} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
