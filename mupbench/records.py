"""Run records: result.json and metrics.csv in the run dir, always written atomically.

A record is self-describing (resolved config, environment, status, metrics), so analysis
never has to parse directory names.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mupbench.fileio import atomic_write

RESULT = "result.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
METRIC_COLUMNS = ("step", "train_loss", "val_loss", "elapsed_s")
FINISHED = ("completed", "diverged")  # a run in one of these states is a result: not rerun


def write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as f:
        f.write((json.dumps(obj, indent=2, allow_nan=True, default=str) + "\n").encode())


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(Path(run_dir) / METRICS) as f:
        f.write(buf.getvalue().encode())


def read_result(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # unreadable records count as unfinished: the run is done again


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
