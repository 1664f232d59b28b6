"""Experiment trackers (TensorBoard, MLflow, Weights & Biases) as an optional extra.

``open_run(cfg, run_dir, record)`` gives the run's :class:`RunTracker` (None when ``logger``
selects none), whose ``log_eval(row)`` takes each metrics.csv row as it is written and
``finish(record)`` the final record. The tracker packages are imported only when selected
(install them with ``pip install -e ".[trackers]"``), every tracker call runs in a background
thread, and a tracker that fails is logged once and dropped: training never waits for, or fails
because of, a tracker. ``export_sweep`` does the same afterwards from a sweep's records alone.
This package never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from mupbench.trackers.core import (
    LEDGER,
    WORKER,
    RunInfo,
    RunTracker,
    TrackerError,
    check,
    missing,
    open_tracker,
    report,
    selected,
    settle,
)

__all__ = ["LEDGER", "RunInfo", "RunTracker", "TrackerError", "check", "flush", "missing", "open_run", "selected", "settle"]


def open_run(cfg, run_dir: Path, record: dict) -> RunTracker | None:
    """The trackers of the run in ``run_dir`` (its resolved ``cfg`` logged as hyperparameters,
    its record's identity as names and groups), or None when nothing is selected. Never raises:
    a tracker that cannot start is logged once and left out."""
    logger_cfg = cfg.get("logger") if cfg is not None else None
    if not selected(logger_cfg):
        return None
    try:
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(cfg, resolve=True)
        config.pop("logger", None)
        run_dir = Path(run_dir)
        return open_tracker(OmegaConf.to_container(logger_cfg, resolve=True), RunInfo(run_dir, run_dir.parent, config, dict(record)))
    except Exception as e:  # noqa: BLE001 - a tracker never fails a run
        report("logger", None, e)
        return None


def flush(timeout: float = 60.0) -> bool:
    """Wait up to ``timeout`` s for every queued tracker call in this process; True if all are done."""
    return WORKER.drain(timeout)
