"""Analysis of run records: load a sweep into one tidy DataFrame, aggregate over seeds, Table 2,
transfer metrics with their uncertainty (regret, drift verdicts, basin), compute accounting, and
the paper's figures. The notebooks and ``mupbench-report`` use these."""

from .aggregate import diverged_counts, seed_stats, table2, table2_display, table2_latex, table2_markdown
from .basin import basin, basin_shift
from .budget import budget_comparison, draw_budget
from .compute import compute_savings
from .drift import drift_verdicts
from .figures import plot_coord_check, plot_optimal_lr, plot_sweep, save_figure, sweep_figures
from .records import (AXES, RecordError, Sweep, group_keys, load_curves, load_runs, load_sweep, missing_runs, read_runs,
                      save_runs, varying_axes)
from .regret import transfer_regret
from .report import analyse, analyse_axis, write_report
from .transfer import fit_optimum, optimal_lr, optimum_drift, transfer_summary, wider_is_better

__all__ = [
    "RecordError", "Sweep", "load_sweep", "load_runs", "load_curves", "missing_runs", "save_runs", "read_runs",
    "AXES", "group_keys", "varying_axes",
    "seed_stats", "diverged_counts", "table2", "table2_display", "table2_markdown", "table2_latex",
    "fit_optimum", "optimal_lr", "optimum_drift", "wider_is_better", "transfer_summary",
    "transfer_regret", "drift_verdicts", "basin", "basin_shift", "compute_savings", "budget_comparison", "draw_budget",
    "plot_sweep", "plot_optimal_lr", "sweep_figures", "plot_coord_check", "save_figure", "analyse", "analyse_axis", "write_report",
]
