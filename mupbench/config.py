"""Structured config schemas and value checks: where a YAML key gets its type and its limits.

Every group option under conf/ extends a dataclass registered here (models and datasets bring
their own ``Config`` next to the code that uses it), so an unknown key or a wrong type fails
at composition; ``validate`` then checks values that a type cannot express.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from mupbench.data import DATASETS
from mupbench.models import MODELS
from mupbench.parametrization import ATTN_SCALES, OPTIMIZERS, PARAMETRIZATIONS
from mupbench.trackers.config import LoggerConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass
class ParametrizationConfig:
    name: str = "mup"  # sp | mup | ntk | mf
    init_scale: float = 0.1  # c in the init std c/√fan-in
    attn_scale: str = "default"  # default (follows name) | sp | mup | paper (SP 1/√d_head, others 1/d_model)
    kernel_fan_in: bool = False  # conv fan-in × kernel area (the paper's code: channels only)


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 1e-3  # k, the swept learning-rate multiplier


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    impl: str = "auto"  # auto (= fused, CPU and CUDA) | fused | foreach | for_loop (mupbench.optim.LeanAdam)


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    momentum: float = 0.0
    impl: str = "auto"


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 16
    eval_every: int = 200  # evaluate every N steps, before that step's update (SPEC §4)
    eval_batches: int = 10  # val loss = mean over this many val mini-batches
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # float32 | float64
    ckpt_every: int = 0  # write a resumable checkpoint every N steps; 0 = never
    log_every_s: float = 5.0  # at most one progress line per this many seconds
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # Speed switches that change numbers (so they are part of a run's fingerprint); all off by
    # default, for fidelity to the paper's fp32 runs.
    compile: bool = False  # torch.compile the model (Module.compile: checkpoints keep their keys)
    bf16: bool = False  # bfloat16 autocast for forward and loss (parameters and Adam stay fp32)
    tf32: bool = False  # TF32 matmuls and convolutions on CUDA (set explicitly: cuDNN's default is on)
    # CPU: flush denormal floats (|x| < 1.2e-38) to zero. x86 computes with them ~100x slower, and
    # late in training they make an MLP ensemble's step 2x slower (Adam moments of idle units).
    flush_denormal: bool = False


@dataclass
class Config:
    model: Any = MISSING
    dataset: Any = MISSING
    parametrization: ParametrizationConfig = MISSING
    optimizer: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # seeds init, data order and dropout, each through its own stream
    name: str = "default"  # runs land in outputs/<name>/<the overrides that define the run>
    force: bool = False  # rerun even if the run dir already holds a finished record
    print_params: bool = False  # print the per-parameter table and exit without training
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # experiment trackers (conf/logger/)


def run_dirname(override_dirname: str) -> str:
    """A run's directory name from its overrides: readable, path-safe, and the same every time."""
    if not override_dirname:
        return "base"
    name = override_dirname.replace("/", "_").replace("+", "")
    if len(name) > 200:  # filesystems cap names at 255 bytes: keep a readable head and a hash
        name = f"{name[:150]}...{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return name


def _register_group(cs: ConfigStore, group: str, registry: dict[str, str]) -> None:
    for option, module_path in registry.items():
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as e:
            if e.name != module_path:
                raise
            continue  # an option whose module is not part of this checkout
        cs.store(group=group, name=f"{option}_schema", node=module.Config)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="parametrization", name="schema", node=ParametrizationConfig)
    cs.store(group="optimizer", name="adam_schema", node=AdamConfig)
    cs.store(group="optimizer", name="sgd_schema", node=SGDConfig)
    _register_group(cs, "model", MODELS)
    _register_group(cs, "dataset", DATASETS)


register_configs()
if not OmegaConf.has_resolver("run_dirname"):
    OmegaConf.register_new_resolver("run_dirname", run_dirname)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)


def validate(cfg: DictConfig) -> None:
    """Reject values that would fail or mislead later; one ConfigError naming the key."""
    zeta = cfg.model.width_mult
    _check(math.isfinite(zeta) and zeta >= 1, "model.width_mult", f"ζ={zeta:g} must be ≥ 1 (ζ = 1 is the base width)")
    width = cfg.model.base_width * zeta
    _check(
        abs(width - round(width)) < 1e-9,
        "model.width_mult",
        f"ζ={zeta:g} gives a non-integer width {width:g} (base {cfg.model.base_width}); pick ζ so that base_width·ζ is an integer",
    )
    _check(math.isfinite(cfg.optimizer.lr) and cfg.optimizer.lr > 0, "optimizer.lr", f"k={cfg.optimizer.lr:g} must be > 0")
    _check(cfg.optimizer.impl in ("auto", "fused", "foreach", "for_loop"), "optimizer.impl", "choose auto, fused, foreach or for_loop")
    p = cfg.parametrization
    _check(p.name in PARAMETRIZATIONS, "parametrization.name", f"{p.name!r} is not one of {', '.join(PARAMETRIZATIONS)}")
    _check(p.attn_scale in ATTN_SCALES, "parametrization.attn_scale", f"{p.attn_scale!r} is not one of {', '.join(ATTN_SCALES)}")
    _check(p.init_scale >= 0, "parametrization.init_scale", f"c={p.init_scale:g} must be ≥ 0")
    _check(cfg.optimizer.name in OPTIMIZERS, "optimizer.name", f"{cfg.optimizer.name!r} is not one of {', '.join(OPTIMIZERS)}")
    _check(
        p.name in ("sp", "mup") or cfg.optimizer.name == "adam",
        "optimizer",
        f"parametrization={p.name} is defined for Adam only; use optimizer=adam",
    )
    t = cfg.train
    for key in ("steps", "batch_size", "eval_every", "eval_batches"):
        _check(t[key] > 0, f"train.{key}", f"{t[key]} must be > 0")
    _check(t.ckpt_every >= 0, "train.ckpt_every", f"{t.ckpt_every} must be ≥ 0 (0 = no checkpoints)")
    _check(t.threads >= 0, "train.threads", f"{t.threads} must be ≥ 0 (0 = torch's default)")
    _check(t.dtype in ("float32", "float64"), "train.dtype", f"{t.dtype!r}: choose float32 or float64")
    _check(
        t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"),
        "train.device",
        f"{t.device!r}: choose auto, cpu, cuda or cuda:N",
    )
    if t.device.startswith("cuda"):
        import torch

        _check(torch.cuda.is_available(), "train.device", f"{t.device} requested but no CUDA GPU is visible; use train.device=auto or cpu")
    root = cfg.dataset.get("root")
    if root is not None:
        _check(Path(root).expanduser().is_dir(), "dataset.root", f"{root} is not a directory; point it at a local copy of the dataset's files")


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """The validated config for ``overrides``, composed from conf/ as the command line would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    validate(cfg)
    return cfg
