"""``mupbench-status SWEEP_DIR``: how far a sweep is.

Reads the sweep's ``multirun.yaml`` (Hydra writes it into the sweep dir at every launch) to
know the planned grid points and where each one's run dir is, then each run dir's
``result.json`` (and, for runs under way, ``metrics.csv``/``checkpoint.pt``). Prints, per setup ×
parametrization, how many points completed, diverged, failed, are running or interrupted
(started, no record yet) and pending, a progress bar and an ETA from the measured steps/s.

    mupbench-status outputs/mlp_california
    mupbench-status outputs/mlp_california --json      # the same numbers, machine-readable
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

MULTIRUN = "multirun.yaml"
STATES = ("completed", "diverged", "failed", "started", "pending")


class StatusError(ValueError):
    """The sweep dir cannot be read as a sweep; the message says why."""


# ---------------------------------------------------------------------------------- the plan
def override_key(line: str) -> str:
    """The key or group an override line sets, as Hydra's ``Override.key_or_group``:
    ``+experiment=x`` → ``experiment``, ``model.width_mult=2`` → ``model.width_mult``."""
    return line.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


@dataclass
class _Line:  # what hydra's get_overrides_dirname reads from an Override
    key_or_group: str
    input_line: str


def override_dirname(cfg: DictConfig, overrides: Sequence[str]) -> str:
    """``hydra.job.override_dirname`` for a job with these task overrides (Hydra's own function)."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    od = cfg.hydra.job.config.override_dirname
    lines = [_Line(override_key(o), o) for o in overrides if not override_key(o).startswith(("hydra.", "hydra/"))]
    return get_overrides_dirname(lines, exclude_keys=list(od.exclude_keys), item_sep=od.item_sep, kv_sep=od.kv_sep)


def run_dir_function(cfg: DictConfig, sweep_dir: Path) -> Callable[[Sequence[str]], Optional[Path]]:
    """``overrides -> run dir`` for the jobs of this sweep, computed without composing each job's
    config: the sweep dir plus ``hydra.sweep.subdir`` resolved with the job's override_dirname.
    Gives None if the subdir depends on anything else (``hydra.job.num``, a timestamp)."""
    import mupbench.config as mc  # registers the run_dirname resolver

    raw = str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("subdir", ""))
    template = raw.replace("${hydra:", "${hydra.")
    sweep_dir = Path(sweep_dir)
    fast = {"${hydra.job.override_dirname}": lambda d: d, "${run_dirname:${hydra.job.override_dirname}}": mc.run_dirname}
    if template in fast:  # the usual forms, without OmegaConf's (slow) interpolation parser
        fn = fast[template]
        return lambda overrides: sweep_dir / fn(override_dirname(cfg, overrides))

    def slow(overrides: Sequence[str]) -> Optional[Path]:
        tiny = OmegaConf.create({"hydra": {"job": {"override_dirname": override_dirname(cfg, overrides)}}, "subdir": template})
        try:
            return sweep_dir / str(tiny.subdir)
        except Exception:
            return None

    return slow


def expand_grid(cfg: DictConfig) -> List[List[str]]:
    """Every job's task overrides, in launch order, as hydra's BasicSweeper expands them:
    ``hydra.sweeper.params`` first, then the command line; the last key varies fastest."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = cfg.hydra.sweeper
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        raise StatusError(f"sweeper {sweeper.get('_target_')} is not Hydra's basic sweeper: its grid cannot be known in advance")
    params = OmegaConf.to_container(sweeper.get("params") or {}, resolve=False)
    lines = [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)
    axes: "OrderedDict[str, List[str]]" = OrderedDict()
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise StatusError(f"{o.input_line}: only discrete sweeps (a,b,c / range()) can be planned")
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*axes.values())]


# ---------------------------------------------------------------------------------- the runs
@dataclass
class PointState:
    overrides: List[str]
    run_dir: Optional[Path]
    setup: str
    parametrization: str
    width_mult: float
    steps: int
    state: str = "pending"
    steps_done: int = 0
    record: Dict[str, Any] = field(default_factory=dict)


class _Defaults:
    """What a point gets from the sweep's own config unless its overrides say otherwise."""

    KEYS = ("model.width_mult", "train.steps")
    GROUPS = ("model", "dataset", "parametrization")

    def __init__(self, cfg: DictConfig):
        choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
        self.groups = {g: str(choices.get(g) or OmegaConf.select(cfg, f"{g}.name", default="?")) for g in self.GROUPS}
        self.values = {k: OmegaConf.select(cfg, k, default=None, throw_on_resolution_failure=False) for k in self.KEYS}

    def of(self, overrides: Sequence[str]) -> Dict[str, Any]:
        given = {override_key(o): o.split("=", 1)[1] for o in overrides}
        out = {g: given.get(g, given.get(f"{g}.name", v)) for g, v in self.groups.items()}
        out.update({k: given.get(k, v) for k, v in self.values.items()})
        return out


def _progress_of_unfinished(run_dir: Path) -> tuple[str, int]:
    """started (a run dir with a checkpoint or metrics but no record) or pending, and steps."""
    if not run_dir.is_dir():
        return "pending", 0
    step = 0
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        try:
            last = metrics.read_text().strip().splitlines()[-1].split(",")[0]
            step = int(float(last)) if last and last[0].isdigit() else 0
        except (OSError, ValueError, IndexError):
            step = 0
    if (run_dir / "checkpoint.pt").exists() or step or any(run_dir.glob("*.log")):
        return "started", step
    return "pending", 0


def load_sweep(sweep_dir: Path) -> tuple[DictConfig, List[PointState]]:
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / MULTIRUN
    if not path.exists():
        raise StatusError(f"{path} not found: SWEEP_DIR must be the dir of a multirun (e.g. outputs/<name>)")
    cfg = OmegaConf.load(path)
    run_dir_of = run_dir_function(cfg, sweep_dir)
    points = []
    defaults = _Defaults(cfg)
    for overrides in expand_grid(cfg):
        d = defaults.of(overrides)
        try:
            width, steps = float(d["model.width_mult"]), int(float(d["train.steps"]))
        except (TypeError, ValueError):
            width, steps = 1.0, 0
        p = PointState(
            overrides=overrides,
            run_dir=run_dir_of(overrides),
            setup=f"{d['model']}_{d['dataset']}",
            parametrization=d["parametrization"],
            width_mult=width,
            steps=steps,
        )
        if p.run_dir is not None:
            rec = _read_json(p.run_dir / "result.json")
            if rec and rec.get("status") in ("completed", "diverged", "failed"):
                p.state, p.record = rec["status"], rec
                p.steps_done = int(rec.get("steps_done") or 0)
                p.setup = rec.get("setup", p.setup)
                p.parametrization = rec.get("parametrization", p.parametrization)
            else:
                p.state, p.steps_done = _progress_of_unfinished(p.run_dir)
        points.append(p)
    return cfg, points


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------- the ETA
def _timestamp(s: Any) -> Optional[float]:
    try:
        return datetime.fromisoformat(str(s)).timestamp()
    except (TypeError, ValueError):
        return None


def estimate(points: List[PointState]) -> Dict[str, Any]:
    """Remaining compute from measured steps/s, and an ETA at the concurrency seen so far (failed
    points are not counted: they run again only when the sweep is relaunched).

    A point's speed is the mean steps/s of finished points of the same setup and width; failing
    that, of the same setup scaled as 1/width (wider is slower); failing that, unknown."""
    speed: Dict[tuple, List[float]] = defaultdict(list)
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
def _duration(s: Optional[float]) -> str:
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


def summarize(points: List[PointState]) -> Dict[str, Any]:
    table: Dict[tuple, Dict[str, int]] = OrderedDict()
    for p in points:
        row = table.setdefault((p.setup, p.parametrization), {s: 0 for s in STATES})
        row[p.state] += 1
    total = {s: sum(r[s] for r in table.values()) for s in STATES}
    return {"rows": table, "total": total, "points": len(points)}


def render(sweep_dir: Path, points: List[PointState]) -> str:
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


def as_json(sweep_dir: Path, points: List[PointState]) -> Dict[str, Any]:
    s = summarize(points)
    return {
        "sweep_dir": str(sweep_dir),
        "points": s["points"],
        "total": s["total"],
        "rows": [{"setup": k[0], "parametrization": k[1], **v} for k, v in s["rows"].items()],
        **estimate(points),
    }


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="mupbench-status", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="a multirun's sweep dir (the one holding multirun.yaml)")
    ap.add_argument("--json", action="store_true", help="print the counts and the ETA as JSON")
    ap.add_argument("--watch", type=float, metavar="S", help="refresh every S seconds until the sweep is done")
    args = ap.parse_args(argv)
    try:
        while True:
            _, points = load_sweep(args.sweep_dir)
            if args.json:
                print(json.dumps(as_json(args.sweep_dir, points), indent=2))
            else:
                print(render(args.sweep_dir, points), flush=True)
            if not args.watch or all(p.state not in ("pending", "started") for p in points):
                break
            time.sleep(args.watch)
            print()
    except StatusError as e:
        sys.exit(f"mupbench-status: error: {e}")
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()


if __name__ == "__main__":
    main()
