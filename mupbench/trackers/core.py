"""What every tracker shares: which are selected, a run's identity, the dedupe ledger, and the
background worker that keeps a slow or failing tracker from touching training.

Each tracker call runs in one daemon thread per process; the trainer only puts work on its queue.
A tracker that raises is logged once (per tracker, per process), dropped for that run, and the
run goes on: records stay the source of truth. What each tracker has been handed is kept in the
run dir's ``trackers.json`` (per destination: last logged step, its run id, finished or not), so
a killed-and-resumed run, a rerun of a finished one and a second ``mupbench-export`` log no step
twice (a process killed between a tracker's call and its ledger write may repeat that one step).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mupbench.fileio import atomic_write
from mupbench.records import FINISHED, METRICS
from mupbench.trackers.config import BACKENDS, EXTRA, PACKAGES
from mupbench.trackers.identity import RunInfo, eval_metrics

log = logging.getLogger("mupbench")

LEDGER = "trackers.json"  # in each run dir: what each tracker destination has been handed


class TrackerError(ValueError):
    """A selected tracker cannot be used (its package is not installed)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


# ------------------------------------------------------------------------------ selection
def selected(logger_cfg: Any) -> list[str]:
    """The trackers switched on in a ``logger`` node (DictConfig or dict), in BACKENDS order."""
    if not logger_cfg:
        return []
    return [name for name in BACKENDS if (logger_cfg.get(name) or {}).get("enabled")]


def _not_installed(logger_cfg: Any) -> TrackerError | None:
    absent = [name for name in selected(logger_cfg) if importlib.util.find_spec(PACKAGES[name]) is None]
    if not absent:
        return None
    return TrackerError(f"logger={absent[0]}", f"the {PACKAGES[absent[0]]} package is not installed; install the trackers with {EXTRA}")


def missing(logger_cfg: Any) -> str | None:
    """Why the selected trackers cannot run (a package is not installed), or None: one line."""
    e = _not_installed(logger_cfg)
    return str(e) if e else None


def check(logger_cfg: Any) -> None:
    """Raise TrackerError (one line, naming the extra) if a selected tracker is not installed."""
    e = _not_installed(logger_cfg)
    if e:
        raise e


# ------------------------------------------------------------------------------ ledger
_ledger_lock = threading.Lock()


def read_ledger(run_dir: Path) -> dict:
    try:
        data = json.loads((Path(run_dir) / LEDGER).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def update_ledger(run_dir: Path, destination: str, **fields: Any) -> None:
    with _ledger_lock:
        data = read_ledger(run_dir)
        entry = data.get(destination) or {}
        if entry.get("fingerprint") != fields.get("fingerprint", entry.get("fingerprint")):
            entry = {}  # another config's entry: this run starts over
        data[destination] = {**entry, **fields}
        with atomic_write(Path(run_dir) / LEDGER) as f:
            f.write((json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------------------------ backends
class Backend:
    """One tracker for one run; subclasses do the tracker's calls (in the worker thread)."""

    name = ""

    def __init__(self, run: RunInfo, opts: dict, state: dict):
        self.run, self.opts, self.state = run, opts, state  # state: this destination's ledger entry

    @staticmethod
    def destination(run: RunInfo, opts: dict) -> str:
        """Where this tracker writes (a path or a URI): the ledger's key."""
        raise NotImplementedError

    def start(self) -> None: ...

    def log(self, step: int, metrics: dict[str, float], wall_time: float) -> None: ...

    def finish(self, record: dict) -> None: ...

    def ledger_fields(self) -> dict:
        """What to remember about this run besides the last step (e.g. the tracker's run id)."""
        return {}


def backend_class(name: str) -> type[Backend]:
    module = importlib.import_module(f"mupbench.trackers.{name}_backend")
    return module.BACKEND


# ------------------------------------------------------------------------------ worker
class _Worker:
    """One daemon thread per process running tracker calls in order; never blocks the caller.
    Calls made for a run dir are counted until done, so that a run reopened in the same process
    (resumed after an interruption) first lets its earlier tracker calls reach the ledger."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.pending: Counter = Counter()  # run dir → its calls queued or running
        self.settled = threading.Condition()

    def submit(self, fn: Callable[[], None], run_dir: Path | None = None) -> None:
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="mupbench-trackers", daemon=True)
                self.thread.start()
        if run_dir is not None:
            with self.settled:
                self.pending[run_dir] += 1
        self.queue.put((fn, run_dir))

    def _loop(self) -> None:
        while True:
            fn, run_dir = self.queue.get()
            try:
                fn()
            except BaseException:  # noqa: BLE001 - each call reports its own errors; nothing kills the thread
                log.debug("tracker call failed", exc_info=True)
            finally:
                if run_dir is not None:
                    with self.settled:
                        self.pending[run_dir] -= 1
                        if self.pending[run_dir] <= 0:
                            del self.pending[run_dir]
                            self.settled.notify_all()
                self.queue.task_done()

    def settle(self, run_dir: Path, timeout: float) -> bool:
        """Wait up to ``timeout`` s until no call made for ``run_dir`` is queued; True if none is."""
        with self.settled:
            return self.settled.wait_for(lambda: run_dir not in self.pending, timeout)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every queued call; True if all are done."""
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)


WORKER = _Worker()
_reported: set[str] = set()


def settle(run_dir: Path, timeout_s: float = 60.0) -> bool:
    """Wait (bounded) for the tracker calls this process still has queued for ``run_dir``: an
    interrupted attempt's, before the run is reopened there (its ledger read, its temp files
    cleared). True if none is left; else a warning, and the caller goes on."""
    run_dir = Path(run_dir).resolve()
    if WORKER.settle(run_dir, timeout_s):
        return True
    log.warning("trackers of an earlier attempt of %s still busy after %.0f s; going on (a step may be logged "
                "twice)", run_dir, timeout_s)
    return False


def report(tracker: str, run: RunInfo | None, e: BaseException) -> None:
    """Say once per tracker and process that it failed; later failures go to the debug log."""
    where = f" for {run.run_dir}" if run is not None else ""
    message = f"tracker {tracker} failed{where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "\
              "training goes on without it (the run's records are complete)"
    if tracker in _reported:
        log.debug(message)
    else:
        _reported.add(tracker)
        log.warning(message)


@atexit.register
def _flush_at_exit() -> None:
    if WORKER.thread is not None and WORKER.thread.is_alive():
        WORKER.drain(30.0)


@dataclass
class _Slot:
    backend: Backend
    destination: str
    last_step: float  # the last step handed to the tracker (from the ledger, then this process)
    dead: bool = False
    error: str | None = None


@dataclass
class RunTracker:
    """The trackers of one run. log_eval and finish return at once; the work is queued."""

    run: RunInfo
    slots: list[_Slot]
    timeout_s: float = 60.0
    _done: threading.Event = field(default_factory=threading.Event)
    _closed: bool = False  # finished: later calls are ignored

    def __post_init__(self):
        for slot in self.slots:
            self._submit(slot, slot.backend.start)

    # -- the trainer's calls
    def log_eval(self, row: dict, wall_time: float | None = None, _resumed_only: bool = False) -> None:
        """Log one evaluation (a metrics.csv row); a step already logged to a tracker is skipped."""
        if self._closed:
            return
        try:
            step, metrics = eval_metrics(row)
            wall = time.time() if wall_time is None else wall_time
            for slot in self.slots:
                if _resumed_only and slot.backend.state.get("fresh"):
                    continue
                if step > slot.last_step and not slot.dead:
                    slot.last_step = step
                    self._submit(slot, lambda s=slot: s.backend.log(step, metrics, wall),
                                 lambda s=slot: update_ledger(self.run.run_dir, s.destination, last_step=step,
                                                              fingerprint=self.run.fingerprint, **s.backend.ledger_fields()))
        except Exception as e:  # noqa: BLE001 - a bad row must not stop training
            report("row", self.run, e)

    def finish(self, record: dict, wait: bool = True) -> None:
        """Log the final status and metrics, close the tracker runs; wait (bounded) for the queue."""
        if self._closed:
            return
        self._closed = True
        try:
            final = record.get("status") in FINISHED  # a failed run is retried: its trackers go on then
            for slot in self.slots:
                self._submit(slot, lambda s=slot: s.backend.finish(record),
                             lambda s=slot: update_ledger(self.run.run_dir, s.destination, finished=final, status=record.get("status"),
                                                          fingerprint=self.run.fingerprint, **s.backend.ledger_fields()))
            WORKER.submit(self._done.set)
            if wait and not self._done.wait(self.timeout_s):
                log.warning("trackers of %s still busy after %.0f s; the run goes on (their calls continue in the "
                            "background)", self.run.run_dir, self.timeout_s)
        except Exception as e:  # noqa: BLE001
            report("finish", self.run, e)

    # -- for export and tests
    @property
    def failures(self) -> list[str]:
        return [f"{s.backend.name}: {s.error}" for s in self.slots if s.error]

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(self.timeout_s if timeout is None else timeout)

    def _submit(self, slot: _Slot, call: Callable[[], None], then: Callable[[], None] | None = None) -> None:
        def work() -> None:
            if slot.dead:
                return
            try:
                call()
                if then is not None:
                    then()
            except Exception as e:  # noqa: BLE001 - disk full, a server refusing, a tracker's own bug
                slot.dead, slot.error = True, f"{type(e).__name__}: {e}"
                report(slot.backend.name, self.run, e)

        WORKER.submit(work, self.run.run_dir)


def open_tracker(logger_cfg: Any, run: RunInfo, backfill: bool = True) -> RunTracker | None:
    """The RunTracker for ``run`` with the trackers selected in ``logger_cfg`` (None if none
    is selected, or every selected one already has this run finished). Never raises."""
    names = selected(logger_cfg)
    if not names:
        return None
    slots = []
    timeout_s = float(logger_cfg.get("finish_timeout_s", 60.0) or 60.0)
    settle(run.run_dir, timeout_s)
    ledger = read_ledger(run.run_dir)
    for name in names:
        try:
            if importlib.util.find_spec(PACKAGES[name]) is None:
                raise _not_installed({name: {"enabled": True}}) or TrackerError("logger", name)
            opts = dict(logger_cfg.get(name) or {})
            cls = backend_class(name)
            dest = cls.destination(run, opts)
            state = ledger.get(dest) or {}
            if state.get("fingerprint") != run.fingerprint:
                state = {"fresh": True}  # another config once ran in this run dir: a new tracker run
            if state.get("finished"):
                continue
            slots.append(_Slot(cls(run, opts, state), dest, float(state.get("last_step", -math.inf))))
        except Exception as e:  # noqa: BLE001
            report(name, run, e)
    if not slots:
        return None
    tracker = RunTracker(run, slots, timeout_s)
    if backfill:  # steps a killed process of this run evaluated but its trackers never got
        for row in metrics_rows(run.run_dir):
            tracker.log_eval(row, started_wall(run, row), _resumed_only=True)
    return tracker


def metrics_rows(run_dir: Path) -> list[dict]:
    """A run's evaluation history (metrics.csv) as rows; [] when it has none or it cannot be read."""
    import csv

    try:
        with open(Path(run_dir) / METRICS, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error):
        return []


def started_wall(run: RunInfo, row: dict) -> float | None:
    """When ``row`` was evaluated: the run's start plus its elapsed_s (None if unknown)."""
    start = run.started_epoch()
    try:
        return start + float(row["elapsed_s"]) if start is not None else None
    except (KeyError, TypeError, ValueError):
        return None
