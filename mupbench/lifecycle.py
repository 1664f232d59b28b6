"""A run's life, from a point (config + run dir) to its record: the one place that decides it.

For every point: validate it (a bad one stops everything before any work); skip it when its run
dir holds a finished record of the same config (unless ``force``); clear a killed write's temp
files; assemble it (``build_run``); resume it from its checkpoint (an unusable one is set aside);
train it through the one loop; write its completed / diverged record, or its failed one.
``mupbench-train`` calls :func:`run_point`; the batched launcher and the SLURM runners call
:func:`run_group` with a group of points that differ only in seed and k, trained as ensembles.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from mupbench import records as R
from mupbench import trackers
from mupbench.assemble import Run, build_models, build_run, cast_splits, loss_function, resolve_device, set_flush_denormal, set_threads
from mupbench.config import ConfigError, validate
from mupbench.data import DataError, DataSpec, Splits, load_splits
from mupbench.fileio import WriteError
from mupbench.flops import flops_per_step
from mupbench.training import checkpoint
from mupbench.training.loop import Member, Outcome, train
from mupbench.training.single import SingleStepper
from mupbench.training.stacked import StackedStepper

log = logging.getLogger("mupbench")

_ENSEMBLE_NUMBERS = itertools.count()  # an ensemble's number within this process, in its members' records


@dataclass
class _Point:
    cfg: DictConfig
    run_dir: Path
    fp: str
    record: dict = field(default_factory=dict)
    run: Run | None = None
    member: Member | None = None
    tracker: object = None
    rng: dict | None = None  # the checkpoint's RNG states (the dropout stream)
    t0: float = 0.0


def run_point(cfg: DictConfig, run_dir: Path) -> dict:
    """Train one point into ``run_dir`` (or find it done) and return its record. Raises what
    made it fail, after writing its failed record."""
    return _run([cfg], [Path(run_dir)], batched=False)[0]


def run_group(cfgs: Sequence[DictConfig], run_dirs: Sequence[Path], *, max_members: int = 0, forward: str = "auto",
              splits: Splits | None = None) -> list[dict]:
    """Train a group of points (configs that differ only in seed and optimizer.lr) as stacked
    ensembles, each point into its own run dir with the record :func:`run_point` would write.
    A failing ensemble writes failed records for its members and the others go on."""
    for cfg in cfgs:
        if cfg.train.compile:
            raise ConfigError("train.compile", "batched training does not compile the model; run compiled points one by one")
    if len({R.ensemble_key(c) for c in cfgs}) > 1:
        raise ValueError("run_group needs configs that differ only in seed and optimizer.lr; group them first")
    return _run(list(cfgs), [Path(d) for d in run_dirs], batched=True, max_members=max_members, forward=forward, splits=splits)


def _run(cfgs, run_dirs, *, batched: bool, max_members: int = 0, forward: str = "auto", splits: Splits | None = None) -> list[dict]:
    for cfg in cfgs:
        validate(cfg)  # every point, before any work
    results: list[dict | None] = [None] * len(cfgs)
    todo: list[tuple[int, _Point]] = []
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        fp = R.fingerprint(cfg)
        done = R.finished_record(cfg, run_dir, fp)
        if done:
            log.info("skipping %s: already %s (force=true reruns it)", run_dir, done["status"])
            print(f"skipped (already {done['status']}): {run_dir / R.RESULT}")
            results[i] = done
            continue
        if run_dir.is_dir():
            trackers.settle(run_dir)  # an interrupted attempt's tracker calls write there: let them finish first
            checkpoint.remove_stale_parts(run_dir)
            if cfg.force:
                (run_dir / R.CHECKPOINT).unlink(missing_ok=True)
        todo.append((i, _Point(cfg, run_dir, fp)))
    if not todo:
        return results  # type: ignore[return-value]
    cfg0 = todo[0][1].cfg
    device = resolve_device(cfg0.train.device)
    set_flush_denormal(cfg0.train.flush_denormal)  # before any torch op starts the thread pool
    if splits is None:
        splits = load_splits(cfg0.dataset, device)
    splits = cast_splits(splits, getattr(torch, cfg0.train.dtype))  # once, not once per member
    flops = step_flops(cfg0, splits.spec)  # the same for every point: they share the architecture
    starts: dict[int, list[int]] = defaultdict(list)
    for i, pt in todo:
        _prepare(pt, device, splits)
        pt.record["flops_per_step"] = flops
        starts[pt.member.resumed_from or 0].append(i)
    points = dict(todo)
    for start, indices in sorted(starts.items()):
        if not batched:
            chunks = [[i] for i in indices]
        else:  # equal k side by side (the fused optimizer updates runs of equal k together), within the memory cap
            indices.sort(key=lambda i: (float(cfgs[i].optimizer.lr), int(cfgs[i].seed)))
            cap = max_members or auto_members(points[indices[0]].record["num_params"], device)
            chunks = balanced_chunks(indices, cap)
        for chunk in chunks:
            for i, rec in zip(chunk, _train_chunk([points[i] for i in chunk], start, batched, forward)):
                results[i] = rec
    return results  # type: ignore[return-value]


def _prepare(pt: _Point, device: torch.device, splits: Splits) -> None:
    """Assemble the point's run, and resume it from its checkpoint if it has one it can use."""
    pt.t0 = time.perf_counter()
    pt.record = R.start_record(pt.cfg, pt.fp)
    pt.run = build_run(pt.cfg, device, splits)
    try:
        state = checkpoint.load(pt.run, pt.run_dir, pt.fp)
    except checkpoint.SetAside:  # the failed load had begun to overwrite the run: assemble it afresh
        pt.run, state = build_run(pt.cfg, device, splits), None
    R.describe_run(pt.record, pt.run)
    pt.member = Member(pt.run_dir, pt.fp)
    if state is not None:
        pt.member.history, pt.member.prior_time_s, pt.member.resumed_from = state["history"], state["train_time_s"], state["step"]
        pt.rng = state["rng"]
        checkpoint.set_rng_state(device, state["rng"])  # a single run's dropout draws from the global RNG
        log.info("resuming %s from its checkpoint at step %d", pt.run_dir, state["step"])
    pt.tracker = _open_tracker(pt)
    if pt.tracker is not None:
        pt.member.on_eval = pt.tracker.log_eval


def _open_tracker(pt: _Point):
    """The point's experiment-tracker run (``logger=...``; None when none is selected), handed the
    rows a resumed run brings (it skips those it logged before the interruption)."""
    tracker = trackers.open_run(pt.cfg, pt.run_dir, pt.record)
    if tracker is not None:
        for row in pt.member.history:
            tracker.log_eval(row)
    return tracker


def _stepper(pts: list[_Point], start: int, batched: bool, forward: str):
    if not batched:
        return SingleStepper(pts[0].run)
    key = "cuda" if pts[0].run.device.type == "cuda" else "cpu"
    return StackedStepper([p.run for p in pts], step=start, forward=forward, rng_states=[p.rng[key] if p.rng else None for p in pts])


def _train_chunk(pts: list[_Point], start: int, batched: bool, forward: str) -> list[dict]:
    """Train one stepper's worth of points; their records (failed ones if training raised)."""
    t0 = time.perf_counter()
    threads = set_threads(pts[0].cfg, len(pts) * pts[0].record["num_params"])
    for p in pts:
        p.record["threads"] = threads
    try:
        stepper = _stepper(pts, start, batched, forward)
        if batched:
            log.info("%s: %d members × %s parameters on %s (%s)", pts[0].record["setup"], len(pts),
                     f"{pts[0].record['num_params']:,}", stepper.device, stepper.mode)
        else:
            log.info("%s: %s parameters on %s", pts[0].record["setup"], f"{pts[0].record['num_params']:,}", stepper.device)
        outs = train(stepper, [p.member for p in pts], pts[0].cfg.train, start)
    except (ConfigError, DataError):
        raise  # bad input: nothing was trained, nothing is written
    except Exception as e:
        for p in pts:
            try:
                R.write_failed(p.cfg, p.run_dir, p.record, e, time.perf_counter() - p.t0)
            except WriteError as again:  # the disk that failed the run may not take its record either
                log.warning("%s", again)
            _finish_tracker(p)
        if not batched:
            raise
        log.error("batched training of %d members failed: %s: %s", len(pts), type(e).__name__, e)
        return [p.record for p in pts]
    number, ensemble_s = next(_ENSEMBLE_NUMBERS), round(time.perf_counter() - t0, 3)
    done = []
    for position, (p, out) in enumerate(zip(pts, outs)):
        if batched:  # which runs trained together, and for how long (the ensemble's wall time, shared by all)
            p.record["batched"] = {"ensemble": number, "members": len(pts), "position": position, "forward": stepper.mode,
                                   "ensemble_s": ensemble_s}
        done.append(_finish(p, out))
    return done


def _finish(p: _Point, out: Outcome) -> dict:
    record = R.write_finished(p.cfg, p.run_dir, p.record, out, time.perf_counter() - p.t0)
    _finish_tracker(p)
    tail = f"diverged at step {out.diverged_step}" if out.status == "diverged" else f"min val loss {record['min_val_loss']:.4g}"
    print(f"{out.status} ({tail}): {p.run_dir / R.RESULT}")
    return record


def _finish_tracker(p: _Point) -> None:
    if p.tracker is not None:
        p.tracker.finish(p.record)


def step_flops(cfg: DictConfig, spec: DataSpec) -> int:
    """FLOPs of one training step's forward and backward (mupbench.flops), counted on a copy of
    the model on the meta device: no compute, no random numbers drawn."""
    meta = torch.device("meta")
    model, _ = build_models(cfg, spec, meta)
    model.to(getattr(torch, cfg.train.dtype))
    b, shape = cfg.train.batch_size, tuple(spec.input_shape)
    if spec.task == "lm":
        x = y = torch.zeros((b, *shape), dtype=torch.long, device=meta)
    else:
        x = torch.zeros((b, *shape), dtype=getattr(torch, cfg.train.dtype), device=meta)
        y = (torch.zeros(b, dtype=torch.long, device=meta) if spec.task == "classification"
             else torch.zeros((b, spec.num_outputs), dtype=x.dtype, device=meta))
    return flops_per_step(model, loss_function(spec.task), x, y)


def balanced_chunks(items: list, cap: int) -> list[list]:
    """As few consecutive chunks of at most ``cap`` items as possible, their sizes within one of
    each other (128 at a cap of 61 → 43, 43, 42; 256 at 15 → 14 of 14 and 4 of 15, not 17 of 15 and a lone 1)."""
    n = math.ceil(len(items) / cap)
    return [items[len(items) * j // n : len(items) * (j + 1) // n] for j in range(n)]


def auto_members(num_params: int, device: torch.device) -> int:
    """How many members one ensemble holds at most: about 2**22 stacked parameters on CPU
    (measured on the MLP at ζ = 16: middling ensembles step fastest per member), 2**28 on a GPU
    (a few GB of state)."""
    budget = 2**28 if device.type == "cuda" else 2**22
    return max(1, budget // max(num_params, 1))
