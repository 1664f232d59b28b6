"""Run dirs and grids from overrides alone: where each point of a sweep lands, computed the way
Hydra names it but without composing each point (half a second a point), and the grid itself
as Hydra's basic sweeper expands it. Launchers, the sweeper and ``mupbench-status`` share it."""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class GridError(ValueError):
    """A sweep whose grid cannot be known in advance; the message says why."""


def run_dirname(override_dirname: str) -> str:
    """A run's directory name from its overrides: readable, path-safe, and the same every time
    (the ``run_dirname`` resolver of conf/config.yaml's ``hydra.sweep.subdir``)."""
    if not override_dirname:
        return "base"
    name = override_dirname.replace("/", "_").replace("+", "")
    if len(name) > 200:  # filesystems cap names at 255 bytes: keep a readable head and a hash
        name = f"{name[:150]}...{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return name


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


def run_dir_function(cfg: DictConfig, sweep_dir: Path) -> Callable[[Sequence[str]], Path | None]:
    """``overrides -> run dir`` for the jobs of this sweep, computed without composing each job's
    config: the sweep dir plus ``hydra.sweep.subdir`` resolved with the job's override_dirname.
    Gives None if the subdir depends on anything else (``hydra.job.num``, a timestamp)."""
    if not OmegaConf.has_resolver("run_dirname"):
        OmegaConf.register_new_resolver("run_dirname", run_dirname)
    raw = str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("subdir", ""))
    template = raw.replace("${hydra:", "${hydra.")
    sweep_dir = Path(sweep_dir)
    fast = {"${hydra.job.override_dirname}": lambda d: d, "${run_dirname:${hydra.job.override_dirname}}": run_dirname}
    if template in fast:  # the usual forms, without OmegaConf's (slow) interpolation parser
        fn = fast[template]
        return lambda overrides: sweep_dir / fn(override_dirname(cfg, overrides))

    def slow(overrides: Sequence[str]) -> Path | None:
        tiny = OmegaConf.create({"hydra": {"job": {"override_dirname": override_dirname(cfg, overrides)}}, "subdir": template})
        try:
            return sweep_dir / str(tiny.subdir)
        except Exception:  # noqa: BLE001 — any resolution failure: this subdir needs the whole config
            return None

    return slow


def task_and_run_dir(sweep_config: DictConfig) -> tuple[DictConfig, Path]:
    """A point's composed sweep config → (the task config the entrypoint receives, its run dir)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.instance()
    saved = hc.cfg
    hc.set_config(sweep_config)  # ${hydra:...} in the sweep subdir resolves against this point
    try:
        run_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    finally:
        hc.cfg = saved
    task = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config.keys() if k != "hydra"])
    return task, run_dir.absolute()


def expand_grid(cfg: DictConfig) -> list[list[str]]:
    """Every job's task overrides, in launch order, as hydra's BasicSweeper expands them:
    ``hydra.sweeper.params`` first (absent or null when the grid is all on the command line),
    then the command line; the last key varies fastest."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = cfg.hydra.sweeper
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        raise GridError(f"sweeper {sweeper.get('_target_')} is not Hydra's basic sweeper: its grid cannot be known in advance")
    params = sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if isinstance(params, DictConfig) else {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)
    axes: OrderedDict[str, list[str]] = OrderedDict()
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise GridError(f"{o.input_line}: only discrete sweeps (a,b,c / range()) can be planned")
            axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*axes.values())]
