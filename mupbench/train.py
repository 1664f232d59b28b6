"""The one entrypoint: ``python -m mupbench.train`` (or ``mupbench-train``), a single run or,
with ``-m``, one point of a multirun. Each run leaves result.json and metrics.csv in its run dir.

Exit status: 0 for completed and diverged runs (divergence is a result), non-zero for errors.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mupbench import parametrization as P
from mupbench.assemble import build_models, build_run, make_plan
from mupbench.cli import hydra_app
from mupbench.config import ConfigError, validate
from mupbench.data import DataError, load_splits
from mupbench.loop import Outcome, train
from mupbench.records import (
    CHECKPOINT,
    RESULT,
    describe_run,
    fingerprint,
    finished_record,
    start_record,
    summary,
)
from mupbench.records import write_failed as write_failed_record
from mupbench.records import write_finished

log = logging.getLogger("mupbench")


def print_params(cfg: DictConfig) -> None:
    """The resolved per-parameter table, from models built on the meta device: no training."""
    spec = load_splits(cfg.dataset, torch.device("cpu")).spec
    model, base = build_models(cfg, spec, torch.device("meta"))
    plan = make_plan(cfg, model, base)
    print(P.format_plan(plan, cfg.optimizer.lr))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")


def finish_record(cfg: DictConfig, run_dir: Path, record: dict, out: Outcome, wall_time_s: float) -> dict:
    record = write_finished(cfg, run_dir, record, out, wall_time_s)
    tail = f"diverged at step {out.diverged_step}" if out.status == "diverged" else f"min val loss {record['min_val_loss']:.4g}"
    print(f"{out.status} ({tail}): {run_dir / RESULT}")
    return record


def run_one(cfg: DictConfig, run_dir: Path) -> dict:
    """Train one grid point into ``run_dir`` (or find it already done) and return its record."""
    validate(cfg)
    if cfg.print_params:
        print_params(cfg)
        return {}
    fp = fingerprint(cfg)
    done = finished_record(cfg, run_dir, fp)
    if done:
        log.info("skipping %s: already %s (force=true reruns it)", run_dir, done["status"])
        print(f"skipped (already {done['status']}): {run_dir / RESULT}")
        return done
    if cfg.force:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    record = start_record(cfg, fp)
    t0 = time.perf_counter()
    try:
        run = build_run(cfg)
        describe_run(record, run)
        log.info("%s: %s parameters on %s", record["setup"], f"{record['num_params']:,}", run.device)
        out = train(run, run_dir, fp)
    except (ConfigError, DataError):
        raise  # bad input: nothing was trained, nothing is written
    except Exception as e:
        write_failed_record(cfg, run_dir, record, e, time.perf_counter() - t0)
        raise
    return finish_record(cfg, run_dir, record, out, time.perf_counter() - t0)


def _task(cfg: DictConfig) -> None:
    run_one(cfg, Path(HydraConfig.get().runtime.output_dir))


main = hydra_app(_task, "config")


if __name__ == "__main__":
    main()
