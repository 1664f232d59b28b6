"""The ``logger`` config group's schema: which experiment trackers a run is also logged to.

Every tracker has its own sub-node, off unless its option is selected, so options compose as a
list from the shell (``logger=[tensorboard,mlflow]``) and any setting can be overridden with or
without the option (``logger=wandb logger.wandb.mode=online``). Nothing here changes a run's
numbers: the fingerprint and run dir names ignore ``logger``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

BACKENDS = ("tensorboard", "mlflow", "wandb")
# the module each tracker needs, and the one-line fix when it is missing
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
EXTRA = 'pip install -e ".[trackers]"'


@dataclass
class TensorBoardConfig:
    enabled: bool = False
    dir: Optional[str] = None  # null = <sweep dir>/tensorboard; one subdir per run


@dataclass
class MLflowConfig:
    enabled: bool = False
    tracking_uri: Optional[str] = None  # null = a file store in <sweep dir>/mlruns (nothing leaves the machine)
    experiment: Optional[str] = None  # null = the sweep's name (its dir name)


@dataclass
class WandbConfig:
    enabled: bool = False
    mode: str = "offline"  # offline (sync later with `wandb sync`) | online | disabled
    project: str = "mupbench"
    entity: Optional[str] = None
    dir: Optional[str] = None  # null = the sweep dir (runs land in <dir>/wandb/)
    tags: List[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    # how long a run's finish waits for its tracker calls to be done (they run in a background
    # thread, so a slow or dead tracker never slows training)
    finish_timeout_s: float = 60.0
