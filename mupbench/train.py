"""The one entrypoint: ``python -m mupbench.train`` (or ``mupbench-train``), a single run or,
with ``-m``, one point of a multirun. Each run leaves result.json and metrics.csv in its run dir.

Exit status: 0 for completed and diverged runs (divergence is a result), non-zero for errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
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
    FINISHED,
    RESULT,
    environment,
    now,
    read_result,
    write_json,
    write_metrics,
)

log = logging.getLogger("mupbench")

# keys that do not change a run's numbers (the same list keeps them out of run dir names)
_NOT_IN_FINGERPRINT = ("name", "force", "print_params")
_TRAIN_NOT_IN_FINGERPRINT = ("device", "log_every_s", "threads", "ckpt_every")


def fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that determines a run's numbers."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_IN_FINGERPRINT:
        c.pop(key, None)
    for key in _TRAIN_NOT_IN_FINGERPRINT:
        c["train"].pop(key, None)
    c["dataset"].pop("root", None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def summary(cfg: DictConfig) -> dict:
    """The identifying fields of a run record: what analysis groups and filters by."""
    m = cfg.model
    return {
        "setup": f"{m.name}_{cfg.dataset.name}",
        "model": m.name,
        "dataset": cfg.dataset.name,
        "parametrization": cfg.parametrization.name,
        "optimizer": cfg.optimizer.name,
        "width_mult": float(m.width_mult),
        "width": int(round(m.base_width * m.width_mult)),
        "lr": float(cfg.optimizer.lr),
        "seed": int(cfg.seed),
    }


def print_params(cfg: DictConfig) -> None:
    """The resolved per-parameter table, from models built on the meta device: no training."""
    spec = load_splits(cfg.dataset, torch.device("cpu")).spec
    model, base = build_models(cfg, spec, torch.device("meta"))
    plan = make_plan(cfg, model, base)
    print(P.format_plan(plan, cfg.optimizer.lr))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters")


def finished_record(cfg: DictConfig, run_dir: Path, fp: str) -> dict | None:
    """The record in ``run_dir`` if it holds a finished run of this config (which is then not
    run again, unless ``force``), else None."""
    done = read_result(run_dir)
    if done and done.get("status") in FINISHED and done.get("fingerprint") == fp and not cfg.force:
        return done
    return None


def start_record(cfg: DictConfig, fp: str) -> dict:
    """A run's record as it stands before training: failed until it says otherwise."""
    return {"status": "failed", **summary(cfg), "fingerprint": fp, "steps": cfg.train.steps, "started_at": now()}


def describe_run(record: dict, run) -> None:
    """What the record says about the assembled run: its size, the environment, the data."""
    record.update(num_params=sum(p.numel() for p in run.model.parameters()), env=environment(run.device), data=run.splits.info)


def write_failed_record(cfg: DictConfig, run_dir: Path, record: dict, e: BaseException, wall_time_s: float) -> None:
    record.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(), finished_at=now(),
                  wall_time_s=wall_time_s, config=OmegaConf.to_container(cfg, resolve=True))
    write_json(run_dir / RESULT, record)


def finish_record(cfg: DictConfig, run_dir: Path, record: dict, out: Outcome, wall_time_s: float) -> dict:
    """Complete ``record`` from a finished training ``out``; write result.json and metrics.csv."""
    finite = [h for h in out.history if h["train_loss"] == h["train_loss"]]
    record.update(
        status=out.status,
        min_train_loss=min((h["train_loss"] for h in finite), default=None),
        min_val_loss=min((h["val_loss"] for h in finite), default=None),
        final_train_loss=finite[-1]["train_loss"] if finite else None,
        final_val_loss=finite[-1]["val_loss"] if finite else None,
        diverged_step=out.diverged_step,
        steps_done=out.steps_done,
        resumed_from=out.resumed_from,
        wall_time_s=wall_time_s,
        train_time_s=out.train_time_s,
        steps_per_s=out.session_steps / out.session_time_s if out.session_time_s > 0 else None,
        error=None,
        config=OmegaConf.to_container(cfg, resolve=True),
        finished_at=now(),
    )
    write_metrics(run_dir, out.history)
    write_json(run_dir / RESULT, record)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
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
