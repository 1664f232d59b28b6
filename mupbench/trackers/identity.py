"""A run as the trackers see it: its dirs, names and groups, its hyperparameters, its numbers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

NOT_LOGGED = ("logger",)  # config keys that are not hyperparameters of a run


@dataclass
class RunInfo:
    """One run as the trackers see it: where it is, what it is called, what it was."""

    run_dir: Path
    sweep_dir: Path
    config: dict  # the resolved config, logger left out
    record: dict  # the run's record (its identity fields at least)
    name: str = ""  # the run dir relative to the sweep dir

    def __post_init__(self):
        self.run_dir, self.sweep_dir = Path(self.run_dir).resolve(), Path(self.sweep_dir).resolve()
        if not self.name:
            try:
                self.name = self.run_dir.relative_to(self.sweep_dir).as_posix()
            except ValueError:
                self.name = self.run_dir.name

    @property
    def fingerprint(self) -> str:
        return str(self.record.get("fingerprint") or "")

    def field(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)

    @property
    def curve(self) -> str:
        """setup/parametrization/optimizer: one curve of the width-transfer plots."""
        r = self.record
        return f"{r.get('setup')}/{r.get('parametrization')}/{r.get('optimizer', 'adam')}"

    @property
    def group(self) -> str:
        """(setup, parametrization, optimizer, ζ, k): the runs that differ only in seed."""
        return f"{self.curve}/ζ={_num(self.field('width_mult'))}/k={_num(self.field('lr'))}"

    @property
    def family(self) -> str:
        """(setup, parametrization, optimizer, k): a width family, every ζ and seed."""
        return f"{self.curve}/k={_num(self.field('lr'))}"

    @property
    def title(self) -> str:
        r = self.record
        return f"{self.curve} ζ={_num(r.get('width_mult'))} k={_num(r.get('lr'))} seed={r.get('seed')}"

    def run_id(self, destination: str) -> str:
        """A stable id for this run at ``destination``: the same after a resume or a re-export."""
        text = f"{destination}|{self.run_dir}|{self.fingerprint}"
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def started_epoch(self) -> float | None:
        try:
            return datetime.fromisoformat(str(self.record["started_at"])).timestamp()
        except (KeyError, ValueError):
            return None


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def hyperparameters(config: dict) -> dict[str, Any]:
    """The config flattened to dotted keys with scalar values (lists and None as JSON text)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, (bool, int, float, str)):
            out[prefix[:-1]] = node
        else:
            out[prefix[:-1]] = json.dumps(node)

    walk({k: v for k, v in config.items() if k not in NOT_LOGGED}, "")
    return out


FINAL = ("min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss", "steps_done", "diverged_step",
         "wall_time_s", "train_time_s", "steps_per_s", "num_params")


def final_metrics(record: dict) -> dict[str, float]:
    """A finished record's numbers that trackers show next to the hyperparameters."""
    return {k: float(record[k]) for k in FINAL if isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)}


def eval_metrics(row: dict) -> tuple[int, dict[str, float]]:
    """(step, {metric: value}) from one metrics.csv row (step, train_loss, val_loss, elapsed_s, lr…)."""
    step = int(float(row["step"]))
    metrics = {}
    for k, v in row.items():
        if k == "step" or v is None or v == "":
            continue
        try:
            metrics[k] = float(v)
        except (TypeError, ValueError):
            continue
    return step, metrics
