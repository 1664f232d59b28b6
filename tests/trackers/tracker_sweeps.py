"""Helpers of the tracker tests: tiny sweeps of records (result.json + metrics.csv) made without
training, and a simulated trainer that calls the tracker hooks as mupbench's trainer does."""

from __future__ import annotations

import csv
import functools
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mupbench import trackers
from mupbench.records import RESULT, fingerprint, start_record, write_json, write_metrics

STEPS, EVERY = 400, 100


@functools.lru_cache(maxsize=None)
def _base(overrides: tuple[str, ...]) -> DictConfig:
    from mupbench.config import compose

    return compose(list(overrides))


def point_cfg(zeta: float = 1.0, lr: float = 1e-3, seed: int = 0, logger: tuple[str, ...] = ()) -> DictConfig:
    """A composed config of one grid point (composed once per logger selection, then edited)."""
    cfg = _base((f"train.steps={STEPS}", f"train.eval_every={EVERY}", "name=trk",
                 *([f"logger=[{','.join(logger)}]"] if logger else [])))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    cfg.model.width_mult, cfg.optimizer.lr, cfg.seed = zeta, lr, seed
    return cfg


def grid(members: int = 3, logger: tuple[str, ...] = ()) -> list[DictConfig]:
    """``members`` points that differ in seed and k (one batched ensemble's members)."""
    return [point_cfg(zeta=2.0, lr=1e-3 * 2 ** (i % 4), seed=i // 4, logger=logger) for i in range(members)]


def run_dir_of(sweep: Path, cfg: DictConfig) -> Path:
    return Path(sweep) / f"model.width_mult={cfg.model.width_mult:g},optimizer.lr={cfg.optimizer.lr:g},seed={cfg.seed}"


def history(cfg: DictConfig) -> list[dict]:
    """A plausible evaluation history, different for every point (values with full float64 digits)."""
    rows = []
    for step in range(0, STEPS + 1, EVERY):
        decay = math.exp(-step / 300) / (1 + cfg.seed) + cfg.optimizer.lr
        rows.append({"step": step, "train_loss": 1.0 + decay / 3, "val_loss": 1.1 + decay / 7,
                     "elapsed_s": round(step / 97.0, 3), "lr": cfg.optimizer.lr * (1 - step / (2 * STEPS))})
    return rows


def finished(cfg: DictConfig, record: dict, rows: list[dict]) -> dict:
    return {**record, "status": "completed", "steps_done": STEPS, "diverged_step": None,
            "min_train_loss": min(r["train_loss"] for r in rows), "min_val_loss": min(r["val_loss"] for r in rows),
            "final_train_loss": rows[-1]["train_loss"], "final_val_loss": rows[-1]["val_loss"], "wall_time_s": 4.2,
            "error": None, "config": OmegaConf.to_container(cfg, resolve=True), "finished_at": "2026-01-01T00:00:10+00:00"}


def simulate(cfg: DictConfig, sweep: Path, start: int = 0, stop: int | None = None, finish: bool = True,
             drain: bool = True) -> tuple[Path, dict]:
    """Train (pretend) one point: open its trackers, log rows start..stop as each is written to
    metrics.csv, write the record and finish. ``finish=False`` is a run killed after ``stop``;
    with ``drain=False`` it is interrupted in this process, its tracker calls still queued."""
    run_dir = run_dir_of(sweep, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = history(cfg)
    record = {**start_record(cfg, fingerprint(cfg)), "started_at": "2026-01-01T00:00:00+00:00"}
    tracker = trackers.open_run(cfg, run_dir, record)
    for i, row in enumerate(rows):
        if row["step"] < start or (stop is not None and row["step"] > stop):
            continue
        write_metrics(run_dir, rows[: i + 1])
        if tracker is not None:
            tracker.log_eval(row)
    if not finish:
        if drain:
            trackers.flush()
        return run_dir, record
    record = finished(cfg, record, rows)
    write_json(run_dir / RESULT, record)
    if tracker is not None:
        tracker.finish(record)
    return run_dir, record


def records_only(cfg: DictConfig, sweep: Path) -> Path:
    """A finished run's records as a sweep run without a logger leaves them."""
    run_dir = run_dir_of(sweep, cfg)
    rows = history(cfg)
    write_metrics(run_dir, rows)
    write_json(run_dir / RESULT, finished(cfg, {**start_record(cfg, fingerprint(cfg)), "started_at": "2026-01-01T00:00:00+00:00"}, rows))
    return run_dir


def csv_rows(run_dir: Path) -> list[dict]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
