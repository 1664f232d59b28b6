"""What ``mupbench-status`` shows: each planned point's state (from ``multirun.yaml`` and the run
dirs), counts per setup × parametrization, the remaining compute and an ETA.

The plan is the grid Hydra's basic sweeper launches (``rundirs.expand_grid``); a point's state
comes from its record as ``mupbench.records`` reads it (the one definition of a valid record,
shared with the report and the skip check): a ``result.json`` that is not a valid record is not
a result, and the point counts as unfinished until it is run again.
"""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mupbench.records import MULTIRUN, RESULT, load_record, unfinished_state
from mupbench.sweep.rundirs import GridError, expand_grid, override_key, run_dir_function

STATES = ("completed", "diverged", "failed", "started", "pending")


class SweepDirError(ValueError):
    """The dir cannot be read as a sweep; the message says why."""


@dataclass
class PointState:
    overrides: list[str]
    run_dir: Path | None
    setup: str
    parametrization: str
    width_mult: float
    steps: int
    state: str = "pending"
    steps_done: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    unreadable: str | None = None  # why its result.json is not a valid record, if it has one


class _Defaults:
    """What a point gets from the sweep's own config unless its overrides say otherwise."""

    KEYS = ("model.width_mult", "train.steps")
    GROUPS = ("model", "dataset", "parametrization")

    def __init__(self, cfg: DictConfig):
        choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
        self.groups = {g: str(choices.get(g) or OmegaConf.select(cfg, f"{g}.name", default="?")) for g in self.GROUPS}
        self.values = {k: OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False) for k in self.KEYS}

    def of(self, overrides: list[str]) -> dict[str, Any]:
        given = {override_key(o): o.split("=", 1)[1] for o in overrides}
        out = {g: given.get(g, given.get(f"{g}.name", v)) for g, v in self.groups.items()}
        out.update({k: given.get(k, v) for k, v in self.values.items()})
        return out


def _read_plan(sweep_dir: Path) -> DictConfig:
    path = sweep_dir / MULTIRUN
    if not path.exists():
        raise SweepDirError(f"{path} not found: SWEEP_DIR must be the dir of a multirun (e.g. outputs/<name>)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 — a truncated or foreign file: say so in one line
        raise SweepDirError(f"{path} is not readable YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    need = ("hydra.sweeper", "hydra.overrides.task", "hydra.sweep.subdir", "hydra.job.config.override_dirname")
    absent = [k for k in need if OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False) is None
              and not OmegaConf.is_missing(cfg, k) and k != "hydra.sweep.subdir"] if isinstance(cfg, DictConfig) else list(need)
    if absent:
        raise SweepDirError(f"{path} is not a multirun.yaml written by Hydra: it lacks {', '.join(absent)}")
    return cfg


def load_sweep(sweep_dir: Path) -> tuple[DictConfig, list[PointState]]:
    """The sweep's plan and every planned point's state."""
    sweep_dir = Path(sweep_dir)
    cfg = _read_plan(sweep_dir)
    try:
        grid = expand_grid(cfg)
    except GridError as e:
        raise SweepDirError(str(e)) from None
    run_dir_of = run_dir_function(cfg, sweep_dir)
    points = []
    defaults = _Defaults(cfg)
    for overrides in grid:
        d = defaults.of(overrides)
        try:
            width, steps = float(d["model.width_mult"]), int(float(d["train.steps"]))
        except (TypeError, ValueError):
            width, steps = 1.0, 0
        p = PointState(overrides=overrides, run_dir=run_dir_of(overrides), setup=f"{d['model']}_{d['dataset']}",
                       parametrization=d["parametrization"], width_mult=width, steps=steps)
        if p.run_dir is not None:
            rec, why = load_record(p.run_dir)
            if rec is not None:
                p.state, p.record = rec["status"], rec
                p.steps_done = int(rec.get("steps_done") or 0)
                p.setup = rec.get("setup", p.setup)
                p.parametrization = rec.get("parametrization", p.parametrization)
            else:
                p.unreadable = why
                p.state, p.steps_done = unfinished_state(p.run_dir)
        points.append(p)
    return cfg, points


# ---------------------------------------------------------------------------------- the ETA
def _timestamp(s: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(s)).timestamp()
    except (TypeError, ValueError):
        return None


def estimate(points: list[PointState]) -> dict[str, Any]:
    """Remaining compute from measured steps/s, and an ETA at the concurrency seen so far (failed
    points are not counted: they run again only when the sweep is relaunched).

    A point's speed is the mean steps/s of finished points of the same setup and width; failing
    that, of the same setup scaled as 1/width (wider is slower); failing that, unknown."""
    speed: dict[tuple, list[float]] = defaultdict(list)
    for p in points:
        sps = p.record.get("steps_per_s") if p.record else None
        if sps:
            speed[(p.setup, p.width_mult)].append(float(sps))
    mean = {k: sum(v) / len(v) for k, v in speed.items()}
    remaining_s, unknown = 0.0, 0
    for p in points:
        if p.state not in ("pending", "started"):
            continue
        left = max(p.steps - p.steps_done, 0)
        sps = mean.get((p.setup, p.width_mult))
        if sps is None:
            same = [(w, s) for (setup, w), s in mean.items() if setup == p.setup]
            if same:  # nearest measured width, throughput ∝ 1/width
                w, s = min(same, key=lambda ws: abs(math.log(ws[0] / p.width_mult)))
                sps = s * w / p.width_mult
        if sps:
            remaining_s += left / sps
        else:
            unknown += 1
    # concurrency: compute-seconds of finished runs per wall second over the time they span
    spans = [(_timestamp(p.record.get("started_at")), _timestamp(p.record.get("finished_at")), p.record.get("wall_time_s"))
             for p in points if p.record]
    spans = [(a, b, w) for a, b, w in spans if a and b and w]
    concurrency = None
    if spans:
        wall = max(b for _, b, _ in spans) - min(a for a, _, _ in spans)
        concurrency = max(sum(w for _, _, w in spans) / wall, 1.0) if wall > 0 else 1.0
    eta = remaining_s / concurrency if concurrency else None
    return {"remaining_compute_s": remaining_s, "unknown_speed": unknown, "concurrency": concurrency, "eta_s": eta}


# ---------------------------------------------------------------------------------- output
def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h}:{m:02d}:{s:02d}"


def bar(done: int, total: int, width: int = 30) -> str:
    frac = done / total if total else 1.0
    full = int(frac * width)
    return "[" + "#" * full + "." * (width - full) + f"] {100 * frac:5.1f}%"


def summarize(points: list[PointState]) -> dict[str, Any]:
    """Counts of each state per (setup, parametrization), and in all."""
    table: dict[tuple, dict[str, int]] = OrderedDict()
    for p in points:
        row = table.setdefault((p.setup, p.parametrization), {s: 0 for s in STATES})
        row[p.state] += 1
    total = {s: sum(r[s] for r in table.values()) for s in STATES}
    return {"rows": table, "total": total, "points": len(points)}


def render(sweep_dir: Path, points: list[PointState]) -> str:
    """The table, the progress bar and the ETA, as the terminal shows them."""
    s, eta = summarize(points), estimate(points)
    head = f"{'setup':<28} {'param':<6} " + " ".join(f"{h:>9}" for h in STATES) + "  progress"
    lines = [f"sweep {sweep_dir}: {s['points']} points", head, "-" * len(head)]
    for (setup, param), row in s["rows"].items():
        n = sum(row.values())
        lines.append(f"{setup:<28} {param:<6} " + " ".join(f"{row[h]:>9}" for h in STATES)
                     + "  " + bar(row["completed"] + row["diverged"], n, 20))
    t = s["total"]
    done = t["completed"] + t["diverged"]  # results; a failed point runs again on relaunch
    lines.append("-" * len(head))
    lines.append(f"{'all':<35} " + " ".join(f"{t[h]:>9}" for h in STATES))
    lines.append(f"{bar(done, s['points'])}  {done}/{s['points']} done")
    if t["failed"]:
        lines.append(f"{t['failed']} failed (error in each result.json): relaunching the same command runs them again")
    bad = [p for p in points if p.unreadable]
    if bad:
        lines.append(f"{len(bad)} {RESULT} not a valid record, counted as not done (e.g. {bad[0].run_dir / RESULT}: "
                     f"{bad[0].unreadable}): relaunching the same command runs them again")
    if t["pending"] + t["started"] == 0:
        lines.append("nothing left to run" if t["failed"] else "all done")
    else:
        conc, left = eta["concurrency"], t["pending"] + t["started"]
        if eta["unknown_speed"] == left:
            lines.append("ETA: unknown until a run of each setup has finished (its steps/s is the measure)")
        else:
            lines.append(
                f"remaining compute ≈ {_duration(eta['remaining_compute_s'])}"
                + (f" (+{eta['unknown_speed']} points of a setup not measured yet)" if eta["unknown_speed"] else "")
                + (f"; ETA ≈ {_duration(eta['eta_s'])} at the {conc:.1f} runs at a time seen so far" if conc else "")
            )
    return "\n".join(lines)


def as_json(sweep_dir: Path, points: list[PointState]) -> dict[str, Any]:
    """The same numbers for scripts (``mupbench-status --json``)."""
    s = summarize(points)
    return {
        "sweep_dir": str(sweep_dir),
        "points": s["points"],
        "total": s["total"],
        "rows": [{"setup": k[0], "parametrization": k[1], **v} for k, v in s["rows"].items()],
        "unreadable": [{"run_dir": str(p.run_dir), "why": p.unreadable} for p in points if p.unreadable],
        **estimate(points),
    }


