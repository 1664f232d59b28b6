"""Run records: the one place that knows their file names, their fields and what makes one valid.

A run dir holds ``result.json`` (status, metrics, resolved config, environment) and
``metrics.csv`` (the evaluation history), always written atomically, and while a run is under
way its ``checkpoint.pt``. A record is self-describing, so analysis never parses directory
names. The trainer, ``mupbench-status``, the report and the launchers' skip check all read
records through :func:`read_record`, so "finished", "unfinished" and "unreadable" mean one thing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import socket
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mupbench.fileio import atomic_write

RESULT = "result.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
MULTIRUN = "multirun.yaml"  # Hydra writes it into a sweep dir at every launch
JOB_LOG = "train.log"  # the Hydra job log of mupbench-train, written before the first step
METRIC_COLUMNS = ("step", "train_loss", "val_loss", "elapsed_s", "lr")  # lr: k·s(t), the base lr of that step
STATUSES = ("completed", "diverged", "failed")
FINISHED = ("completed", "diverged")  # a run in one of these states is a result: never rerun
# files that show a run dir was started although it has no record yet
STARTED_MARKERS = (METRICS, CHECKPOINT, JOB_LOG)
# what every record carries: what analysis groups by and what the skip check compares
IDENTITY = ("status", "fingerprint", "setup", "model", "dataset", "parametrization", "optimizer", "width_mult",
            "width", "lr", "seed", "steps")
# ... and what a finished one adds
OUTCOME = ("steps_done", "diverged_step", "min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss")

# keys that do not change a run's numbers: out of the fingerprint (and, in conf/config.yaml's
# hydra.job.config.override_dirname.exclude_keys, out of run dir names)
NOT_IN_FINGERPRINT = ("name", "force", "print_params")
TRAIN_NOT_IN_FINGERPRINT = ("device", "log_every_s", "threads", "ckpt_every")
# keys added after runs were first recorded, each with the default that is the behaviour from
# before it existed: left out of the fingerprint at that value, so a finished run stays finished
# when mupbench gains an option (a key's absence can only mean its default: nothing is conflated).
# A new key with such a default goes here; tests/test_records_fingerprint.py checks these are the defaults.
ADDED_LATER = {
    "optimizer": {"eps_scaling": "none", "weight_decay": 0.0, "wd_mode": "coupled", "wd_on_vectors": False},
    "parametrization": {"depth_alpha": None, "depth_wd_follows_lr": False},
    "model": {"base_blocks": 6},
    "schedule": {"name": "constant"},
}


# ------------------------------------------------------------------------------ identity
def numbers_config(config: dict) -> dict:
    """A resolved config (a record's ``config``) less the keys that do not change a run's numbers."""
    c = json.loads(json.dumps(config))  # a deep copy
    for key in NOT_IN_FINGERPRINT:
        c.pop(key, None)
    for key in TRAIN_NOT_IN_FINGERPRINT:
        (c.get("train") or {}).pop(key, None)
    (c.get("dataset") or {}).pop("root", None)
    c.pop("logger", None)  # where a run is also logged to does not change it
    return c


def fingerprint(cfg: DictConfig) -> str:
    """A hash of everything that determines a run's numbers."""
    c = numbers_config(OmegaConf.to_container(cfg, resolve=True))
    for section, defaults in ADDED_LATER.items():
        node = c.get(section, {})
        for key, default in defaults.items():
            if key in node and node[key] == default and type(node[key]) is type(default):
                del node[key]
        if section in c and not node:
            del c[section]
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def summary(cfg: DictConfig) -> dict:
    """The identifying fields of a run record: what analysis groups and filters by."""
    m = cfg.model
    # a custom model is named by its factory's module (examples.resnet:build → resnet), so that
    # two factories on one dataset are two setups
    name = str(m.factory).rpartition(":")[0].rpartition(".")[2] if m.name == "custom" else m.name
    return {
        "setup": f"{name}_{cfg.dataset.name}",
        "model": m.name,
        "dataset": cfg.dataset.name,
        "parametrization": cfg.parametrization.name,
        "optimizer": cfg.optimizer.name,
        "width_mult": float(m.width_mult),
        "width": int(round(m.base_width * m.width_mult)),
        "lr": float(cfg.optimizer.lr),
        "seed": int(cfg.seed),
    }


def ensemble_key(cfg: DictConfig, lrs: bool = True) -> str:
    """What the members of one ensemble share: the whole config except the seed (and k, if
    ``lrs``). Points with equal keys can train as one stacked ensemble."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("seed", None)
    if lrs:
        c["optimizer"].pop("lr", None)
    return json.dumps(c, sort_keys=True)


# ------------------------------------------------------------------------------ reading
def problem(record: Any) -> str | None:
    """Why ``record`` is not a usable record (None if it is): the one definition of valid."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    need = IDENTITY + (OUTCOME if record["status"] in FINISHED else ())
    absent = [k for k in need if k not in record]
    return f"lacks {', '.join(absent)}" if absent else None


def load_record(run_dir: Path) -> tuple[dict | None, str | None]:
    """(record, None) for a valid ``result.json``; (None, why) for an unreadable or invalid one;
    (None, None) when there is none."""
    path = Path(run_dir) / RESULT
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"cannot be read: {e.strerror or e}"
    try:
        record = json.loads(text)
    except ValueError as e:
        return None, f"not valid JSON ({e})"
    why = problem(record)
    return (None, why) if why else (record, None)


def read_record(run_dir: Path) -> dict | None:
    """The run dir's valid record, or None (absent, unreadable or invalid: the run is not done)."""
    return load_record(run_dir)[0]


def finished_record(cfg: DictConfig, run_dir: Path, fp: str | None = None) -> dict | None:
    """The record in ``run_dir`` if it holds a finished run of this config (which is then not run
    again, unless ``force``), else None."""
    if cfg.get("force"):
        return None
    done = read_record(run_dir)
    if done and done["status"] in FINISHED and done["fingerprint"] == (fp or fingerprint(cfg)):
        return done
    return None


def unfinished_state(run_dir: Path) -> tuple[str, int]:
    """("started", last evaluated step) for a run dir with a checkpoint, metrics or job log but
    no record; ("pending", 0) otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return "pending", 0
    step = 0
    try:
        last = (run_dir / METRICS).read_text().strip().splitlines()[-1].split(",")[0]
        step = int(float(last)) if last and last[0].isdigit() else 0
    except (OSError, ValueError, IndexError):
        step = 0
    if step or any((run_dir / m).exists() for m in STARTED_MARKERS):
        return "started", step
    return "pending", 0


# ------------------------------------------------------------------------------ writing
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as f:
        f.write((json.dumps(obj, indent=2, allow_nan=True, default=str) + "\n").encode())


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(Path(run_dir) / METRICS) as f:
        f.write(buf.getvalue().encode())


def environment(device) -> dict:
    """Versions, device and scheduler ids: what a reader needs to trust or redo the numbers."""
    import torch

    import mupbench

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mupbench": mupbench.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "hostname": socket.gethostname(),
        "argv": sys.argv,
    }
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "SUBMITIT_EXECUTOR"):
        env[key.lower()] = os.environ.get(key)
    return env


def start_record(cfg: DictConfig, fp: str) -> dict:
    """A run's record as it stands before training: failed until it says otherwise."""
    return {"status": "failed", **summary(cfg), "fingerprint": fp, "steps": cfg.train.steps, "started_at": now()}


def describe_run(record: dict, run) -> None:
    """What the record says about an assembled run: its size, the environment, the data."""
    record.update(num_params=sum(p.numel() for p in run.model.parameters()), env=environment(run.device), data=run.splits.info)


def write_failed(cfg: DictConfig, run_dir: Path, record: dict, e: BaseException, wall_time_s: float) -> dict:
    """The record of a run that raised ``e``: status failed, with the error and its traceback."""
    record.update(error=f"{type(e).__name__}: {e}", traceback="".join(traceback.format_exception(e)), finished_at=now(),
                  wall_time_s=wall_time_s, config=OmegaConf.to_container(cfg, resolve=True))
    write_json(Path(run_dir) / RESULT, record)
    return record


def write_finished(cfg: DictConfig, run_dir: Path, record: dict, out, wall_time_s: float) -> dict:
    """Complete ``record`` from a training Outcome ``out``; write metrics.csv, then result.json
    (the record last: a run dir with a record is finished), then drop the checkpoint."""
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
    if record.get("flops_per_step"):  # training compute: forward + backward of every step taken (evaluations not counted)
        record["flops_total"] = record["flops_per_step"] * out.steps_done
    run_dir = Path(run_dir)
    write_metrics(run_dir, out.history)
    write_json(run_dir / RESULT, record)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return record
