"""Structured config schemas and value checks: where a YAML key gets its type and its limits.

Every group option under conf/ extends a dataclass registered here (models and datasets bring
their own ``Config`` next to the code that uses it), so an unknown key or a wrong type fails
at composition; ``validate`` then checks values that a type cannot express: every key has a rule
(mupbench.rules; the tables below, and each model's and dataset's ``CHECKS``), then the checks
across keys, each a ConfigError naming the key to change and how. docs/config-reference.md is
generated from these rules (python -m mupbench.config_reference).
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from mupbench import rules as R
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DATASETS, dataset_module
from mupbench.models import CHECKS as MODEL_CHECKS
from mupbench.models import MODELS, model_module
from mupbench import schedules as S
from mupbench.parametrization import ATTN_SCALES, DEPTH_ALPHAS, EPS_SCALINGS, OPTIMIZERS, PARAMETRIZATIONS, WD_MODES
from mupbench.schedules import ScheduleConfig
from mupbench.rules import ConfigError  # noqa: F401  (defined in the leaf module rules.py; imported from here by callers)
from mupbench.sweep.rundirs import run_dirname
from mupbench.trackers.config import LoggerConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class ParametrizationConfig:
    name: str = "mup"  # sp | mup | ntk | mf
    init_scale: float = 0.1  # c in the init std c/√fan-in
    attn_scale: str = "default"  # default (follows name) | sp | mup | paper (SP 1/√d_head, others 1/d_model)
    kernel_fan_in: bool = False  # conv fan-in × kernel area (the paper's code: channels only)
    depth_alpha: Optional[float] = None  # null: no depth rule (the paper) | 0.5 depth-μP | 1.0 CompleteP (SPEC-AXES §3)
    # wd_mode=independent + a depth rule: true = block decay s·λ·m_L^(α−1) (CompleteP exact), false = s·λ;
    # a no-op elsewhere: coupled and width_invariant already follow the block lr's m_L^(α−1) (SPEC-AXES §3)
    depth_wd_follows_lr: bool = False


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
    eps_scaling: str = "none"  # none | grad | lr_proportional: ε per role (SPEC-AXES Table 1.1)
    weight_decay: float = 0.0  # λ, decoupled (torch AdamW)
    wd_mode: str = "coupled"  # coupled | width_invariant | independent (SPEC-AXES Table 2.1)
    wd_on_vectors: bool = False  # false: only matrices and embeddings decay


@dataclass
class AdamAtan2Config(OptimizerConfig):
    """Adam-atan2 (SPEC-AXES §1, [LUC]): ε-free, Adam's per-role lr rules."""

    name: str = "adam_atan2"
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    a: float = 1.27
    b: float = 1.0
    weight_decay: float = 0.0
    wd_mode: str = "coupled"
    wd_on_vectors: bool = False


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
    schedule: Any = field(default_factory=ScheduleConfig)  # s(t) on every group's lr (mupbench.schedules)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # seeds init, data order and dropout, each through its own stream
    name: str = "default"  # runs land in outputs/<name>/<the overrides that define the run>
    force: bool = False  # rerun even if the run dir already holds a finished record
    print_params: bool = False  # print the per-parameter table and exit without training
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # experiment trackers (conf/logger/)


# the coordinate check's own keys (``python -m mupbench.coord_check``, conf/coord_check.yaml;
# mupbench.coordinates runs it), registered with the rest so that any compose finds them
@dataclass
class CoordCheckOptions:
    widths: List[float] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    steps: List[int] = field(default_factory=lambda: [0, 3, 6, 9, 12])  # record at these steps
    seeds: List[int] = field(default_factory=lambda: [0])
    parametrizations: List[str] = field(default_factory=lambda: ["sp", "mup"])
    max_slope: float = 0.25  # the slope above which a coordinate counts as growing with width (or depth)
    out: Optional[str] = None  # where to write; None = the Hydra run dir
    axis: str = "width"  # width: over coord.widths | depth: over coord.blocks at model.width_mult
    blocks: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # model.blocks of axis=depth
    depth_alphas: List[Optional[float]] = field(default_factory=lambda: [None, 0.5, 1.0])  # axis=depth: the rules compared


@dataclass
class CoordCheckConfig(Config):
    coord: CoordCheckOptions = field(default_factory=CoordCheckOptions)


def schema_name(group: str, option: str | None = None) -> str:
    """The ConfigStore name of a group option's schema: a top-level name (no group), so that
    ``--help`` and shell completion list only the real options; conf/<group>/<option>.yaml
    extends it with ``- /schema_<group>_<option>@_here_``."""
    return f"schema_{group}" + (f"_{option}" if option else "")


def _register_group(cs: ConfigStore, group: str, registry: dict[str, str]) -> None:
    for option, module_path in registry.items():
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as e:
            if e.name != module_path:
                raise
            continue  # an option whose module is not part of this checkout
        cs.store(name=schema_name(group, option), node=module.Config)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="coord_check_schema", node=CoordCheckConfig)
    cs.store(name=schema_name("parametrization"), node=ParametrizationConfig)
    cs.store(name=schema_name("optimizer", "adam"), node=AdamConfig)
    cs.store(name=schema_name("optimizer", "sgd"), node=SGDConfig)
    cs.store(name=schema_name("optimizer", "adam_atan2"), node=AdamAtan2Config)
    S.register(cs, schema_name)
    _register_group(cs, "model", MODELS)
    _register_group(cs, "dataset", DATASETS)


register_configs()
if not OmegaConf.has_resolver("run_dirname"):
    OmegaConf.register_new_resolver("run_dirname", run_dirname)


# ---- value rules of every key (docs/config-reference.md is generated from them) ----
DEVICE = R.Rule("one of auto, cpu, cuda, cuda:N", lambda v: v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v))
TOP_CHECKS = {
    "seed": R.integer(ge=0),
    "name": R.name_text(),
    "force": R.flag(),
    "print_params": R.flag(),
}
TRAIN_CHECKS = {
    "steps": R.integer(ge=1),
    "batch_size": R.integer(ge=1),
    "eval_every": R.integer(ge=1),
    "eval_batches": R.integer(ge=1),
    "device": DEVICE,
    "dtype": R.one_of("float32", "float64"),
    "ckpt_every": R.integer(ge=0, hint="0 = no checkpoints"),
    "log_every_s": R.number(ge=0),
    "threads": R.integer(ge=0, hint="0 = torch's default"),
    "compile": R.flag(),
    "bf16": R.flag(),
    "tf32": R.flag(),
    "flush_denormal": R.flag(),
}
PARAMETRIZATION_CHECKS = {
    "name": R.one_of(*PARAMETRIZATIONS, hint="or pick it with the group, parametrization=NAME"),
    "init_scale": R.number(ge=0, hint="it is c in the init std c/√fan-in, e.g. 0.1"),
    "attn_scale": R.one_of(*ATTN_SCALES),
    "kernel_fan_in": R.flag(),
    "depth_alpha": R.one_of(*DEPTH_ALPHAS, hint="null = no depth rule, 0.5 depth-μP, 1.0 CompleteP"),
    "depth_wd_follows_lr": replace(R.flag(), hint="optimizer.wd_mode=independent with a depth rule: true = block decay "
                                                  "s·λ·m_L^(α−1) (CompleteP exact), false = s·λ; a no-op with coupled and "
                                                  "width_invariant (they follow the block lr already), without a depth rule "
                                                  "or under sp (its lr has no depth factor)"),
}
IMPLS = ("auto", "fused", "foreach", "for_loop")
_OPTIMIZER_COMMON = {
    "name": R.one_of(*OPTIMIZERS, hint="pick the optimizer with the group, optimizer=NAME"),
    "lr": R.number(gt=0, hint="it is k, the learning-rate multiplier, e.g. optimizer.lr=1e-3"),
    "impl": R.one_of(*IMPLS),
}
OPTIMIZER_CHECKS = {
    "adam": {**_OPTIMIZER_COMMON, "betas": R.list_of(R.number(ge=0, lt=1), length=2), "eps": R.number(ge=0, hint="PyTorch's default is 1e-8; 0 is allowed, as torch.optim.Adam allows it")},
    "sgd": {**_OPTIMIZER_COMMON, "momentum": R.number(ge=0, lt=1)},
}
_DECAY = {"weight_decay": R.number(ge=0, hint="λ; 0 = no weight decay"), "wd_mode": R.one_of(*WD_MODES), "wd_on_vectors": R.flag()}
OPTIMIZER_CHECKS["adam"].update({"eps_scaling": R.one_of(*EPS_SCALINGS), **_DECAY})
OPTIMIZER_CHECKS["adam_atan2"] = {
    **{k: v for k, v in _OPTIMIZER_COMMON.items() if k != "impl"}, "betas": OPTIMIZER_CHECKS["adam"]["betas"], "a": R.number(gt=0, hint="the update's scale; [LUC] 1.27"),
    "b": R.number(gt=0, hint="the denominator's scale; [LUC] 1"), **_DECAY,
}
COORD_CHECKS = {
    "widths": R.list_of(R.number(ge=1), unique=True),
    "steps": R.list_of(R.integer(ge=0)),
    "seeds": R.list_of(R.integer(ge=0), unique=True),
    "parametrizations": R.list_of(R.one_of(*PARAMETRIZATIONS), unique=True),
    "max_slope": R.number(gt=0),
    "out": R.optional_path(),
    "axis": R.one_of("width", "depth", hint="width: over coord.widths; depth: over coord.blocks (a model with residual blocks)"),
    "blocks": replace(R.list_of(R.integer(ge=1), unique=True), hint="axis=depth: the model.blocks, at model.width_mult"),
    "depth_alphas": replace(R.list_of(R.one_of(*DEPTH_ALPHAS), unique=True),
                            hint="axis=depth: the depth rules compared (null = none, 0.5 depth-μP, 1.0 CompleteP)"),
}


def _option_name(cfg: DictConfig, group: str) -> None:
    """``<group>.name`` must be the group option's own name (its schema's), not another's."""
    node = cfg[group]
    schema = OmegaConf.get_type(node)
    own = getattr(schema, "__dataclass_fields__", {}).get("name")
    if own is not None and isinstance(own.default, str) and own.default != node.name:
        raise ConfigError(f"{group}.name", f"{node.name} does not match {group}={own.default}; "
                                           f"choose the option with the group ({group}=NAME), not {group}.name")


TASKS = {"regression": "regression", "classification": "classification", "lm": "language-model"}


def _pairing(cfg: DictConfig, model, data) -> None:
    """The model can take the dataset's inputs; if not, say which datasets (and models) fit."""
    spec = data.spec(cfg.dataset)
    if model.accepts(spec):
        return
    fits = [d for d in DATASETS if model.accepts((m := dataset_module(d)).spec(m.Config()))]
    others = [m for m in MODELS if model_module(m).accepts(spec)]
    raise ConfigError("dataset", f"model={cfg.model.name} takes {model.TAKES}; dataset={cfg.dataset.name} is a {TASKS[spec.task]} dataset "
                                 f"with inputs of shape {tuple(spec.input_shape)}: use dataset={'|'.join(fits)} "
                                 f"(or model={'|'.join(others)})")


def _coord_points(cfg: DictConfig, model) -> None:
    """Every run of a coordinate check must build: over width each width (integer widths, heads
    that split them); over depth a model with residual blocks, and each depth rule under each
    parametrization compared."""
    if cfg.coord.get("axis", "width") == "depth":
        if "base_blocks" not in cfg.model:
            raise ConfigError("coord.axis", f"depth needs a model with residual blocks; model={cfg.model.name} has none: "
                                            "use model=transformer, vit or custom (or coord.axis=width)")
        for param in cfg.coord.parametrizations:
            for alpha in cfg.coord.depth_alphas:
                c = cfg.copy()
                c.parametrization.name, c.parametrization.depth_alpha = param, alpha
                try:
                    _check_axes(c, model)
                except ConfigError as e:
                    raise ConfigError("coord.depth_alphas", f"{R.show(alpha)} with parametrization {param} ({e})") from None
        return
    for zeta in cfg.coord.widths:
        m = cfg.model.copy()
        m.width_mult = float(zeta)
        try:
            model.check(m, dataset_module(cfg.dataset.name).spec(cfg.dataset))
        except ConfigError as e:
            raise ConfigError("coord.widths", f"width {zeta:g} cannot be built ({e})") from None


def _check_axes(cfg: DictConfig, model) -> None:
    """The schedule's keys and phases; a depth rule needs a model with residual blocks (and Adam under μP)."""
    sched = cfg.get("schedule")
    if sched is not None:
        R.apply(S.CHECKS, sched, "schedule.")
        S.check(sched, cfg.train.steps)
    alpha = cfg.parametrization.get("depth_alpha")
    if cfg.parametrization.get("depth_wd_follows_lr") and "base_blocks" not in cfg.model:
        raise ConfigError("parametrization.depth_wd_follows_lr", f"model={cfg.model.name} has no residual blocks; "
                                                                 "it is for a depth rule on model=vit or model=transformer")
    if alpha is None:
        return
    if "base_blocks" not in cfg.model:
        raise ConfigError("parametrization.depth_alpha", f"model={cfg.model.name} has no residual blocks; "
                                                         "a depth rule is for model=vit or model=transformer (or set it to null)")
    if cfg.parametrization.name not in ("sp", "mup"):
        raise ConfigError("parametrization.depth_alpha", f"the depth rule is defined for parametrization=mup (or sp: residual "
                                                         f"multiplier only), not {cfg.parametrization.name}")
    if cfg.parametrization.name == "mup" and cfg.optimizer.name == "sgd":
        raise ConfigError("parametrization.depth_alpha", "the depth rule (SPEC-AXES Table 3.1) is Adam's; use optimizer=adam or adam_atan2")


def validate(cfg: DictConfig) -> None:
    """Reject values that would fail or mislead later: one ConfigError naming the key to change
    and how. Each key's own rule first (the tables above, the models' and datasets' ``CHECKS``),
    then the checks across keys."""
    for group in ("model", "dataset", "optimizer"):
        _option_name(cfg, group)
    R.apply(MODEL_CHECKS, cfg.model, "model.")
    R.apply(DATA_CHECKS, cfg.dataset, "dataset.")
    R.apply(_OPTIMIZER_COMMON, cfg.optimizer, "optimizer.")
    model, data = model_module(cfg.model.name), dataset_module(cfg.dataset.name)
    R.apply(TOP_CHECKS, cfg, "")
    R.apply(TRAIN_CHECKS, cfg.train, "train.")
    R.apply(PARAMETRIZATION_CHECKS, cfg.parametrization, "parametrization.")
    R.apply(OPTIMIZER_CHECKS[cfg.optimizer.name], cfg.optimizer, "optimizer.")
    R.apply(model.CHECKS, cfg.model, "model.")
    R.apply(data.CHECKS, cfg.dataset, "dataset.")
    if "coord" in cfg:
        R.apply(COORD_CHECKS, cfg.coord, "coord.")
    p, t = cfg.parametrization, cfg.train
    _check_axes(cfg, model)
    if p.name not in ("sp", "mup") and cfg.optimizer.name == "sgd":
        raise ConfigError("optimizer", f"parametrization={p.name} is defined for Adam only; use optimizer=adam")
    if t.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("train.device", f"{t.device} requested but no CUDA GPU is visible; use train.device=auto or cpu")
    if hasattr(data, "check"):
        data.check(cfg.dataset)
    _pairing(cfg, model, data)
    model.check(cfg.model, data.spec(cfg.dataset))
    rows = data.rows(cfg.dataset)
    if rows is not None and t.batch_size > min(rows):
        raise ConfigError("train.batch_size", f"{t.batch_size} exceeds the {min(rows)} rows of dataset={cfg.dataset.name}'s "
                                              f"{'train' if rows[0] <= rows[1] else 'val'} split; use at most {min(rows)}")
    if "coord" in cfg:
        _coord_points(cfg, model)
    _trackers_installed(cfg)


def _trackers_installed(cfg: DictConfig) -> None:
    """A selected tracker whose package is missing is refused here, before any work (mupbench.trackers
    imports no tracker package and no torch to find out)."""
    from mupbench.trackers import TrackerError, check

    try:
        check(cfg.get("logger"))
    except TrackerError as e:
        raise ConfigError(e.key, str(e).removeprefix(f"{e.key}: ")) from None


def writable_dir_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be (created and) written as a directory, or None: a parent that is a
    file, or a directory that refuses a new entry (read-only, immutable, another owner's). It
    writes and removes one empty probe directory in the deepest existing ancestor."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory" if existing != path else f"{path} is a file, not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mupbench-probe-", dir=existing))
    except OSError as e:
        return f"cannot write in {existing} ({e.strerror})"
    return None


def check_writable_dir(path: str | os.PathLike, key: str) -> None:
    """ConfigError naming ``key`` (e.g. hydra.sweep.dir) unless ``path`` can be written."""
    if (problem := writable_dir_problem(path)) is not None:
        raise ConfigError(key, f"{problem}; choose a writable directory with {key}=DIR")


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """The validated config for ``overrides``, composed from conf/ as the command line would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    validate(cfg)
    return cfg
