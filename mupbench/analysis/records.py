"""Run records → one tidy DataFrame (a row per run), from the records alone.

A sweep dir is searched recursively for record files (:data:`mupbench.records.RESULT`); directory
names are never parsed. Each is read by :func:`mupbench.records.load_record`, the one definition
of a valid record that the trainer's skip check and ``mupbench-status`` use too. A run dir that
holds one of :data:`mupbench.records.STARTED_MARKERS` (metrics, checkpoint, job log) but no record
is *unfinished* (still running, or killed); a record that cannot be read or is not valid (e.g. a
bare ``{"status": "completed"}``) is *unreadable*; combinations of the observed grid with no record
at all are *missing*. All three are reported, none is fatal.

Besides the record's fields, each row carries the run's loss at initialisation
(``init_train_loss``, ``init_val_loss``: the record's own ``init_*`` fields when it has them, else
the step-0 row of its metrics file, else NA), which caps a diverged run's loss (SPEC-AXES §6.1), and
its compute (``flops_per_step``, ``flops_total``) when the record has it.

The axes beyond the paper's protocol are columns too, read from the record's config (:data:`AXES`):
``weight_decay``, ``wd_mode``, ``wd_on_vectors``, ``eps_scaling`` (optimizer), ``schedule`` (its
name), ``depth_alpha`` (NA = no depth rule), ``blocks`` (NA for a model without blocks) and
``steps`` (the training horizon), and ``variant``: every other setting that varies among a setup's
runs (``train.batch_size=64``, ``schedule.warmup_frac=0.1``, ``model.base_blocks=2``; NA where
none does, :func:`variants`); ``base_blocks`` is a column too (where a depth sweep is tuned). A
record without one of those keys (written before it existed) gets the default, which is what it ran with (:data:`AXIS_DEFAULTS`). They are part of
every key (:data:`GROUP`, :data:`CELL`, :data:`RUN`), so runs that differ in any axis are never
taken for duplicates; NA is a value of a key like any other (every groupby here passes
``dropna=False``, see :func:`groupby`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from mupbench import records as R

# the axes beyond the paper's protocol: column -> (where in the record's config, the value of a
# record that lacks it: the default it ran with; None = NA, "not applicable")
AXIS_SOURCES = {
    "weight_decay": (("optimizer", "weight_decay"), 0.0),
    "wd_mode": (("optimizer", "wd_mode"), "coupled"),
    "wd_on_vectors": (("optimizer", "wd_on_vectors"), False),
    "eps_scaling": (("optimizer", "eps_scaling"), "none"),
    "schedule": (("schedule", "name"), "constant"),
    "depth_alpha": (("parametrization", "depth_alpha"), None),
    "blocks": (("model", "blocks"), None),
    "base_blocks": (("model", "base_blocks"), None),  # a column, not a key: where depth regret is tuned
}
AXIS_DEFAULTS = {k: d for k, (_, d) in AXIS_SOURCES.items()}
# "variant": every other setting that varies among a setup's runs (a batch size, a warmup fraction,
# a base depth: "train.batch_size=64"), NA where none does; see :func:`variants`
AXES = [c for c in AXIS_SOURCES if c != "base_blocks"] + ["steps", "variant"]
# config keys that are columns of their own, so never part of a variant
KEYED = {".".join(path) for col, (path, _) in AXIS_SOURCES.items() if col != "base_blocks"} | {
    "model.name", "model.width_mult", "dataset.name", "parametrization.name", "optimizer.name", "optimizer.lr",
    "seed", "train.steps"}
# within what a variant's keys are compared (their defaults may differ between these)
VARIANT_SCOPE = ("setup", "parametrization", "optimizer", "schedule")
# what identifies a curve (one parametrization of one setup under one optimizer, at one setting of
# every other axis)
GROUP = ["setup", "parametrization", "optimizer", *AXES]
# ... a cell of the grid, and a single run
CELL = GROUP + ["width_mult", "lr"]
RUN = CELL + ["seed"]
TRANSFER_AXES = ("width_mult", "blocks")  # what an optimum can be followed along


def group_keys(axis: str = "width_mult") -> list[str]:
    """The keys of a curve family followed along ``axis``: GROUP for width; for depth, GROUP
    without ``blocks`` and with ``width_mult`` (depth transfer is at a fixed width)."""
    if axis not in TRANSFER_AXES:
        raise ValueError(f"axis must be one of {', '.join(TRANSFER_AXES)}, got {axis!r}")
    return GROUP if axis == "width_mult" else [c for c in GROUP if c != axis] + ["width_mult"]


def groupby(df: pd.DataFrame, keys, **kw):
    """``df.groupby(keys)`` with NA a key value like any other (pandas drops NA keys by default)."""
    return df.groupby(keys, observed=True, dropna=False, **kw)


def varying_axes(df: pd.DataFrame, exclude=()) -> list[str]:
    """The axis columns of ``df`` (and ``width_mult``) that take more than one value within a
    setup (NA counts as a value), in :data:`AXES` order; the report names only these, so a sweep
    that varies none of them reads as the paper's, whichever setups it holds (an MLP has no
    ``blocks``, a Transformer 6: that is not a depth sweep)."""
    cols = [c for c in [*AXES, "width_mult"] if c in df.columns and c not in exclude]
    if not cols or df.empty:
        return []
    if "setup" not in df.columns:
        return [c for c in cols if df[c].nunique(dropna=False) > 1]
    counts = groupby(df, "setup")[cols].nunique(dropna=False).max()
    return [c for c in cols if counts[c] > 1]


def select(df: pd.DataFrame, values: dict) -> pd.DataFrame:
    """The rows of ``df`` whose columns equal ``values`` (NA equal to NA)."""
    mask = pd.Series(True, index=df.index)
    for col, v in values.items():
        mask &= df[col].isna() if pd.isna(v) else (df[col] == v).fillna(False).astype(bool)
    return df[mask]


def varies(runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The runs of the groups (:func:`group_keys` of ``axis``) that hold more than one value of
    ``axis``: what a transfer analysis along it can say anything about."""
    runs = with_axes(runs)
    if runs.empty:
        return runs
    n = groupby(runs, group_keys(axis))[axis].transform(lambda x: x.nunique(dropna=True))
    return runs[n > 1]


def with_axes(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with every axis column (a frame built by hand may lack some: each gets its
    default, so that the keys exist)."""
    lack = [c for c in dict.fromkeys([*AXIS_SOURCES, *AXES]) if c not in runs.columns]
    if not lack:
        return runs
    return runs.assign(**{c: pd.Series(AXIS_DEFAULTS.get(c), index=runs.index, dtype=COLUMNS[c]) for c in lack})


def frame(rows, columns=None) -> pd.DataFrame:
    """A result frame from rows of dicts, its key columns in the tidy frame's dtypes (a key built
    from a group's values is an object column otherwise, and merges on it would fail)."""
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({c: COLUMNS[c] for c in df.columns if c in COLUMNS and c in [*GROUP, "width_mult", "base_blocks"]})


LOSSES = ["min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss"]
STATUSES = R.STATUSES
INIT = {"train": "init_train_loss", "val": "init_val_loss"}  # the loss at step 0, per split

COLUMNS = {  # column -> dtype of the tidy frame, in this order
    "setup": "string", "model": "string", "dataset": "string", "parametrization": "string",
    "optimizer": "string", "weight_decay": "float64", "wd_mode": "string", "wd_on_vectors": "boolean",
    "eps_scaling": "string", "schedule": "string", "depth_alpha": "float64", "blocks": "Int64",
    "base_blocks": "Int64", "variant": "string",
    "width_mult": "float64", "width": "Int64", "lr": "float64", "seed": "Int64",
    "status": "string", "num_params": "Int64", "steps": "Int64", "steps_done": "Int64",
    **{c: "float64" for c in LOSSES}, **{c: "float64" for c in INIT.values()}, "diverged_step": "Int64",
    "flops_per_step": "float64", "flops_total": "float64", "wall_time_s": "float64",
    "steps_per_s": "float64", "error": "string", "started_at": "string", "finished_at": "string",
    "device": "string", "fingerprint": "string", "run_dir": "string", "config": "string",
}


class RecordError(ValueError):
    """The inputs hold no usable run record (a bad path, nothing found)."""


@dataclass
class Sweep:
    """Every run record found under some sweep dirs, plus what could not be used."""

    runs: pd.DataFrame  # one row per valid record, columns COLUMNS
    unfinished: list[str] = field(default_factory=list)  # run dirs without a record
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    duplicates: int = 0  # records of an already-recorded run that were dropped
    conflicts: int = 0  # runs recorded more than once with different configs (fingerprints)

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "failed"]

    def missing(self) -> pd.DataFrame:
        """Runs of the observed grid (per setup/parametrization/optimizer: every ζ × k × seed
        seen anywhere in it) that have no record."""
        return missing_runs(self.runs)

    def problems(self) -> list[str]:
        """One line per thing worth knowing before trusting the numbers."""
        lines = [f"unfinished (no {R.RESULT}): {d}" for d in self.unfinished]
        lines += [f"unreadable: {p}: {why}" for p, why in self.unreadable]
        for row in self.failed.itertuples():
            lines.append(f"failed: {row.run_dir}: {row.error or 'no error recorded'}")
        miss = self.missing()
        if len(miss):
            lines.append(f"missing: {len(miss)} run(s) of the observed grid have no record")
        if self.duplicates:
            lines.append(f"duplicates: {self.duplicates} record(s) of an already-recorded run (setup, parametrization, "
                         f"optimizer, every axis, ζ, k, seed) dropped (kept: a finished one, then the latest)")
        if self.conflicts:
            lines.append(f"conflicts: {self.conflicts} of those runs were recorded with the same settings but different "
                         f"fingerprints (records of different mupbench versions?); check them before trusting the numbers")
        return lines

    def summary(self) -> str:
        counts = self.runs["status"].value_counts()
        parts = [f"{counts.get(s, 0)} {s}" for s in STATUSES]
        parts += [f"{len(self.unfinished)} unfinished", f"{len(self.missing())} missing"]
        return f"{len(self.runs)} run records: " + ", ".join(parts)


def _init_losses(record: dict, run_dir: Path) -> dict:
    """The run's losses at step 0: the record's ``init_*`` fields, else its metrics file's step-0
    row (only the first two lines are read), else NaN."""
    out = {col: record.get(col) for col in INIT.values()}
    if all(v is not None for v in out.values()):
        return out
    try:
        with open(run_dir / R.METRICS, newline="") as f:
            first = next(csv.DictReader(f), None)
    except OSError:
        first = None
    if first and first.get("step") not in (None, "") and float(first["step"]) == 0:
        for split, col in INIT.items():
            if out[col] is None:
                out[col] = _number(first.get(f"{split}_loss"))
    return out


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def axis_values(config) -> dict:
    """The :data:`AXIS_SOURCES` columns of a record's config (a dict, or None), defaults filled in."""
    out = {}
    for col, (path, default) in AXIS_SOURCES.items():
        node = config if isinstance(config, dict) else {}
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        out[col] = default if node is None else node
    return out


def settings(config) -> dict:
    """A record's config flattened to dotted keys, less those that do not change the run's numbers
    (:func:`mupbench.records.numbers_config`) and those that are columns (:data:`KEYED`); a key
    added to mupbench later reads as its default when absent (:data:`mupbench.records.ADDED_LATER`)."""
    if not isinstance(config, dict):
        return {}
    flat = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = json.dumps(v, separators=(",", ":")) if isinstance(v, list) else v  # no ", " inside

    walk(R.numbers_config(config), "")
    for section, defaults in R.ADDED_LATER.items():
        for key, default in defaults.items():
            flat.setdefault(f"{section}.{key}", default)
    return {k: v for k, v in flat.items() if k not in KEYED}


def variants(scopes: list[tuple], configs: list) -> list[str | None]:
    """Per run (its values of :data:`VARIANT_SCOPE`, its config), the settings (:func:`settings`)
    that take more than one value among the runs of its scope, as ``key=value, …`` (None where
    none varies). A key that some runs lack (another model's or schedule's) is compared only among those that
    have it. This is what keeps runs that differ in a setting without a column of its own apart."""
    flats = [settings(c) for c in configs]
    values: dict[tuple, dict[str, set]] = {}
    for scope, flat in zip(scopes, flats):
        seen = values.setdefault(scope, {})
        for k, v in flat.items():
            seen.setdefault(k, set()).add(repr(v))
    out = []
    for scope, flat in zip(scopes, flats):
        varying = sorted(k for k, vs in values[scope].items() if len(vs) > 1 and k in flat)
        out.append(", ".join(f"{k}={flat[k]}" for k in varying) or None)  # str(float): exact, shortest
    return out


def _row(record: dict, path: Path) -> dict:
    row = {k: record.get(k) for k in COLUMNS}
    row.update(axis_values(record.get("config")))
    row["optimizer"] = record.get("optimizer") or "adam"
    row["device"] = (record.get("env") or {}).get("device")
    row["config"] = json.dumps(record.get("config"), sort_keys=True) if record.get("config") is not None else None
    row["run_dir"] = str(path)
    row.update(_init_losses(record, path))
    return row


def _tidy(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col, default in AXIS_DEFAULTS.items():  # a table written before the axis existed
        if default is not None:
            df[col] = df[col].where(df[col].notna(), default)
    for col, dtype in COLUMNS.items():  # JSON null -> NaN/NA; the frame's dtypes never depend on the data
        if dtype == "boolean":
            df[col] = df[col].map(_boolean, na_action="ignore").astype(dtype)
        elif dtype == "string":
            df[col] = df[col].astype(dtype)
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(dtype)
    return df


def _boolean(v):
    return v.strip().lower() == "true" if isinstance(v, str) else bool(v)


def load_sweep(paths: str | Path | Iterable[str | Path]) -> Sweep:
    """Load every run record under one or more sweep dirs (searched recursively)."""
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise RecordError("no sweep dir given")
    rows, configs, unreadable, seen, unfinished = [], [], [], set(), []
    for root in paths:
        if not root.is_dir():
            raise RecordError(f"{root} is not a directory")
        for path in sorted(root.rglob(R.RESULT)):
            run_dir = path.parent
            if run_dir.resolve() in seen:  # the same file under two of the given dirs
                continue
            seen.add(run_dir.resolve())
            record, why = R.load_record(run_dir)
            if record is not None:
                rows.append(_row(record, run_dir))
                configs.append(record.get("config"))
            else:
                unreadable.append((str(path), why or "vanished while reading"))
        for marker in R.STARTED_MARKERS:
            for path in sorted(root.rglob(marker)):
                run_dir = path.parent.resolve()
                if run_dir not in seen:
                    seen.add(run_dir)
                    unfinished.append(str(path.parent))
    for r, v in zip(rows, variants([tuple(r[c] for c in VARIANT_SCOPE) for r in rows], configs)):
        r["variant"] = v
    runs = _tidy(rows)
    kept = _dedupe(runs)
    # a repeated run key (every setting equal, variant included) whose records hold different fingerprints
    fps = runs.dropna(subset=["fingerprint"]).pipe(groupby, RUN)["fingerprint"].nunique()
    return Sweep(runs=kept, unfinished=unfinished, unreadable=unreadable, duplicates=len(runs) - len(kept),
                 conflicts=int((fps > 1).sum()))


def _dedupe(runs: pd.DataFrame) -> pd.DataFrame:
    """One record per run: a finished record beats a failed one, then the latest wins."""
    if runs.empty:
        return runs
    rank = (runs["status"] == "failed").astype(int)
    order = runs.assign(_rank=rank).sort_values(["_rank", "finished_at"], ascending=[True, False], na_position="last")
    return order.drop_duplicates(RUN).drop(columns="_rank").sort_values(RUN).reset_index(drop=True)


def load_runs(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Just the tidy runs table of :func:`load_sweep`."""
    return load_sweep(paths).runs


def missing_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Grid points (ζ × k × seed observed within each group) that have no record."""
    out = []
    for key, g in groupby(with_axes(runs), GROUP, sort=True):
        grid = pd.MultiIndex.from_product(
            [sorted(g["width_mult"].unique()), sorted(g["lr"].unique()), sorted(g["seed"].unique())],
            names=["width_mult", "lr", "seed"],
        ).to_frame(index=False)
        have = g[["width_mult", "lr", "seed"]].astype({"seed": "int64"})
        grid = grid.astype({"seed": "int64"}).merge(have, how="left", indicator=True)
        gone = grid[grid["_merge"] == "left_only"].drop(columns="_merge")
        out.append(gone.assign(**dict(zip(GROUP, key))))
    cols = GROUP + ["width_mult", "lr", "seed"]
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's metrics file as one long frame (the run's RUN key + step, train/val loss)."""
    frames = []
    for row in runs.itertuples(index=False):
        path = Path(row.run_dir) / R.METRICS
        if path.is_file():
            m = pd.read_csv(path)
            frames.append(m.assign(**{k: getattr(row, k) for k in RUN + ["status"]}))
    cols = RUN + ["status", "step", "train_loss", "val_loss", "elapsed_s"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def save_runs(runs: pd.DataFrame, path: str | Path) -> Path:
    """Write the runs table as parquet (``.parquet``) or CSV (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        runs.to_parquet(path, index=False)
    else:
        runs.to_csv(path, index=False)
    return path


def read_runs(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`save_runs`, with the same dtypes."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path} does not exist")
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, keep_default_na=True)
    return _tidy(df.to_dict("records"))
