"""Entrypoint plumbing shared by ``mupbench.train`` and ``mupbench.coord_check``: a Hydra app
whose bad input ends in one line on stderr (``mupbench: error: <key>: ...``) and exit status 2,
with nothing written: a refused run's directory, which Hydra creates before the task starts, is
removed again when it holds nothing but Hydra's own files."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Callable, NoReturn

import hydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
)

from mupbench.config import CONF_DIR, ConfigError, validate
from mupbench.data import DataError
from mupbench.fileio import WriteError

# one line per config group for --help (groups without a line are listed without one)
GROUP_HELP = {
    "model": "the network; its width is model.base_width × model.width_mult (ζ)",
    "dataset": "the data: the synthetic ones are generated in code, the paper's are downloaded once",
    "parametrization": "how init and learning rates scale with width: SP, μP, NTK, mean field",
    "optimizer": "Adam (the paper's) or SGD; optimizer.lr is k, the swept learning-rate multiplier",
    "logger": "experiment trackers a run also logs to (records are always written)",
    "experiment": "a paper sweep or its laptop-sized _quick twin: -m +experiment=NAME",
    "hydra/launcher": "where a multirun's points run: basic (one by one), batched ensembles, local processes, SLURM",
    "hydra/sweeper": "how -m expands its grid; mupbench checks every point before the first runs",
}
BUILTIN = {"hydra/launcher": ["basic"], "hydra/sweeper": ["basic"]}  # Hydra's own, not under conf/


def config_groups(_root_: DictConfig | None = None) -> str:
    """The groups of conf/ this app composes and their options (the chosen one starred), for the
    help template (the ``mupbench_groups`` resolver): a line saying what the group is, then its
    options. Schemas are not options (config.schema_name), so they are not listed."""
    choices = {}
    if _root_ is not None and OmegaConf.select(_root_, "hydra.runtime.choices") is not None:
        choices = OmegaConf.to_container(_root_.hydra.runtime.choices)
    groups = dict.fromkeys([*GROUP_HELP, *(d.name for d in sorted(CONF_DIR.iterdir()) if d.is_dir() and d.name != "hydra")])
    rows = []
    for group in groups:
        options = BUILTIN.get(group, []) + sorted(f.stem for f in (CONF_DIR / group).glob("*.yaml"))
        if not options or (choices and group not in choices and group != "experiment"):
            continue  # a group this app does not compose (coord_check has no logger)
        listed = ", ".join(f"{o}*" if o == choices.get(group) else o for o in options)
        rows.append((f"{'+' if group == 'experiment' else ''}{group}", listed, GROUP_HELP.get(group, "")))
    width = max(len(g) for g, _, _ in rows)
    indent = " " * (width + 6)
    return "\n".join(f"  {g:<{width}}  {text}\n" + textwrap.fill(listed, 100, initial_indent=indent, subsequent_indent=indent)
                     for g, listed, text in rows)


if not OmegaConf.has_resolver("mupbench_groups"):
    OmegaConf.register_new_resolver("mupbench_groups", config_groups)


def fail(message: str) -> NoReturn:
    print(f"mupbench: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def describe_config_error(e: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line that names the key and the fix."""
    cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
    key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
        return f"{key}: no such key; `--cfg job` lists every key"
    if isinstance(cause, OmegaConfBaseException) and key:
        return f"{key}: {str(cause).splitlines()[0]}"
    if isinstance(e, MissingConfigException) and e.options is not None:
        group = (e.missing_cfg_file or "").rsplit("/", 1)
        options = ", ".join(o for o in e.options if not o.endswith("schema"))
        return f"{group[0]}={group[-1]}: no such option; choose one of {options}"
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


HYDRA_FILES = {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"}


def _fresh(run_dir: Path, log_name: str) -> bool:
    """Whether ``run_dir`` holds only what Hydra wrote for this job: its .hydra/*.yaml and an
    empty job log (a dir that any earlier run wrote into holds more)."""
    files = {p.relative_to(run_dir).as_posix(): p for p in run_dir.rglob("*") if not p.is_dir()}
    log = files.pop(log_name, None)
    return set(files) <= HYDRA_FILES and (log is None or log.stat().st_size == 0)


def discard(run_dir: Path, stop: Path) -> None:
    """Remove a refused job's ``run_dir`` and then its parents that are left empty (or hold only
    Hydra's multirun.yaml), up to (not including) ``stop``, the directory the command ran in."""
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = run_dir.parent
    while parent != stop and stop in parent.parents:
        if [p.name for p in parent.iterdir()] == ["multirun.yaml"]:  # a sweep dir whose only job was this one
            (parent / "multirun.yaml").unlink()
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break
        parent = parent.parent


def _run_dir_key() -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = any(a in ("-m", "--multirun") for a in sys.argv[1:])
    if HydraConfig.initialized():
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    return "hydra.sweep.dir" if multirun else "hydra.run.dir"


class _ArgumentError(Exception):
    pass


def check_arguments(argv: list[str]) -> None:
    """Hydra's own argparse errors (a flag after the overrides, a bad --cfg choice) in one line
    instead of argparse's usage block: the same parser, parsed first."""
    try:
        from hydra._internal.utils import get_args_parser
    except ImportError:  # a Hydra that moved it: its own message then
        return
    parser = get_args_parser()

    def error(message: str) -> NoReturn:
        raise _ArgumentError(message)

    parser.error = error  # type: ignore[method-assign]
    try:
        parser.parse_args(argv)
    except _ArgumentError as e:
        hint = "; Hydra's flags (-m, --cfg, --info, ...) go before the KEY=VALUE overrides" if "unrecognized" in str(e) else ""
        fail(f"arguments: {e}{hint}")


def hydra_app(task: Callable[[DictConfig], object], config_name: str) -> Callable[[], None]:
    """A console entrypoint that composes ``conf/<config_name>.yaml``, validates every value and
    runs ``task(cfg)``."""
    from_task: set[int] = set()  # exceptions raised by the task itself, not by Hydra's job setup

    def checked_task(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        fresh = _fresh(run_dir, f"{hc.job.name}.log")
        try:
            validate(cfg)
            task(cfg)
            if fresh and _fresh(run_dir, f"{hc.job.name}.log"):  # it wrote nothing (print_params): leave nothing
                discard(run_dir, Path(hc.runtime.cwd).absolute())
        except (ConfigError, DataError) as e:
            if fresh:
                discard(run_dir, Path(hc.runtime.cwd).absolute())
            fail(str(e))  # said here, before Hydra wraps it in a multi-line job report
        except WriteError as e:  # disk full, a dir that cannot be written: one line, what was written stays
            fail(str(e))
        except BaseException as e:
            from_task.add(id(e))
            raise

    def main() -> None:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, then say them in one line
        check_arguments(sys.argv[1:])
        try:
            hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(checked_task)()
        except (HydraException, OmegaConfBaseException) as e:
            fail(describe_config_error(e))
        except ValueError as e:
            if id(e) in from_task or not str(e).startswith("Only one of --run, --multirun"):
                raise
            fail(f"flags: {e}; -m with --cfg/--info is refused by Hydra, drop -m to print the config "
                 f"(e.g. `mupbench-train hydra/launcher=slurm --cfg hydra -p hydra.launcher`)")
        except OSError as e:
            if id(e) in from_task or e.filename is None:
                raise  # the task's own (say, disk full mid-run), or not about a file (a closed pipe)
            key = _run_dir_key()  # Hydra could not create or write the run (or sweep) dir
            fail(f"{key}: cannot write {e.filename}: {e.strerror or e}; choose a writable directory with {key}=DIR")

    return main
