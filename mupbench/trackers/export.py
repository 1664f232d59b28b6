"""Log a finished sweep to a tracker afterwards, from its records alone (result.json and
metrics.csv): for sweeps run without a logger, or on a cluster without the tracker packages.

Runs go exactly where and as a live logger would put them (the same names, groups, parent run
and step history), and the run dirs' ``trackers.json`` ledger says what each destination already
has, so exporting twice, or exporting a sweep that was logged live, adds no run and no step twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mupbench.trackers.config import BACKENDS
from mupbench.trackers.core import RunInfo, check, metrics_rows, open_tracker, started_wall

# what `mupbench-export --OPTION` sets, per tracker (the same keys as the logger config group)
OPTIONS = {"tensorboard": ("dir",), "mlflow": ("tracking_uri", "experiment"), "wandb": ("mode", "project", "entity", "dir")}


@dataclass
class Exported:
    exported: int = 0  # runs handed to the tracker now
    already: int = 0  # runs the destination already had in full
    failed: list[str] = field(default_factory=list)  # "run dir: why" for each run the tracker refused
    skipped: list[str] = field(default_factory=list)  # what the sweep holds that is not a record

    def summary(self, to: str) -> str:
        parts = [f"{self.exported} run(s) exported to {to}", f"{self.already} already there"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


def export_sweep(sweep_dir: str | Path, to: str, options: dict | None = None, timeout_s: float = 600.0) -> Exported:
    """Log every run record under ``sweep_dir`` to the tracker ``to`` (see OPTIONS for ``options``)."""
    from mupbench.records import RESULT, STARTED_MARKERS, load_record

    if to not in BACKENDS:
        raise ValueError(f"--to {to}: choose one of {', '.join(BACKENDS)}")
    logger_cfg = {to: {"enabled": True, **{k: v for k, v in (options or {}).items() if v is not None}},
                  "finish_timeout_s": timeout_s}
    check(logger_cfg)
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"{sweep_dir} is not a directory")
    out = Exported()
    run_dirs = sorted({p.parent for p in sweep_dir.rglob(RESULT)})
    started = sorted({p.parent for m in STARTED_MARKERS for p in sweep_dir.rglob(m)} - set(run_dirs))
    out.skipped += [f"{d}: unfinished (no {RESULT})" for d in started if _is_run_dir(d, sweep_dir)]
    for run_dir in run_dirs:
        record, why = load_record(run_dir)
        if record is None:
            out.skipped.append(f"{run_dir}: {why}")
            continue
        config = dict(record.get("config") or {})
        config.pop("logger", None)
        run = RunInfo(Path(run_dir), sweep_dir, config, record)
        tracker = open_tracker(logger_cfg, run, backfill=False)
        if tracker is None:
            out.already += 1
            continue
        for row in metrics_rows(run.run_dir):
            tracker.log_eval(row, started_wall(run, row))
        tracker.finish(record)
        if tracker.failures:
            out.failed.append(f"{run_dir}: {'; '.join(tracker.failures)}")
        else:
            out.exported += 1
    return out


def _is_run_dir(path: Path, sweep_dir: Path) -> bool:
    """False for the trackers' own dirs inside a sweep (tensorboard/, mlruns/, wandb/)."""
    parts = path.relative_to(sweep_dir).parts
    return not any(p in ("tensorboard", "mlruns", "wandb") for p in parts)
