"""Entrypoint plumbing shared by ``mupbench.train`` and ``mupbench.coord_check``: a Hydra app
whose bad input ends in one line on stderr and a non-zero exit, with nothing written."""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn

import hydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
)

from mupbench.config import CONF_DIR, ConfigError
from mupbench.data import DataError


def fail(message: str) -> NoReturn:
    print(f"mupbench: error: {message}", file=sys.stderr)
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


def hydra_app(task: Callable[[DictConfig], object], config_name: str) -> Callable[[], None]:
    """A console entrypoint that composes ``conf/<config_name>.yaml`` and runs ``task(cfg)``."""

    def checked_task(cfg: DictConfig) -> None:
        try:
            task(cfg)
        except (ConfigError, DataError) as e:
            fail(str(e))  # said here, before Hydra wraps it in a multi-line job report

    def main() -> None:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us, then say them in one line
        try:
            hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(checked_task)()
        except (HydraException, OmegaConfBaseException) as e:
            fail(describe_config_error(e))

    return main
