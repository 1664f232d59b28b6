"""One assembly step: a validated config → the pieces of a run.

train.py, the coordinate check and the batched trainer all call ``build_run``, so no entrypoint
builds a model, an init or an optimizer its own way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mupbench import parametrization as P
from mupbench.config import ConfigError
from mupbench.data import DataSpec, Splits, load_splits, make_sampler
from mupbench.models import model_module, scaled
from mupbench.optim import LeanAdam

log = logging.getLogger("mupbench")

STREAMS = ("init", "data", "val", "dropout")  # independent random streams of one run


@dataclass
class Run:
    cfg: DictConfig
    device: torch.device
    splits: Splits
    model: nn.Module
    base_model: nn.Module  # the same architecture at ζ = 1, on the meta device
    plan: list[P.ParamPlan]
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train_sampler: object
    val_sampler: object


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named stream of a run: streams never share random numbers."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loss_function(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "regression":
        return F.mse_loss
    if task == "classification":
        return F.cross_entropy
    if task == "lm":
        return lambda logits, y: F.cross_entropy(logits.flatten(0, -2), y.flatten())
    raise ValueError(f"unknown task {task!r}")


def attention_scale(cfg: DictConfig) -> float | None:
    """The logit scale for attention models (those whose config has ``heads``), else None."""
    m = cfg.model
    if "heads" not in m:
        return None
    d_model, d_model0 = scaled(m.base_width, m.width_mult), m.base_width
    if d_model % m.heads or d_model0 % m.heads:
        raise ConfigError("model.heads", f"{m.heads} heads do not divide the width {d_model}; pick ζ or heads so they do")
    return P.attention_scale(cfg.parametrization.attn_scale, cfg.parametrization.name, d_model // m.heads, d_model0 // m.heads, d_model)


def build_models(cfg: DictConfig, spec: DataSpec, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The target model on ``device`` and its ζ = 1 twin on the meta device (shapes only)."""
    module = model_module(cfg.model.name)
    base_cfg = cfg.model.copy()
    base_cfg.width_mult = 1.0
    try:
        with torch.device("meta"):
            base = module.build(base_cfg, spec, attention_scale(cfg))
        with torch.device(device):
            model = module.build(cfg.model, spec, attention_scale(cfg))
    except ValueError as e:
        raise ConfigError("model.width_mult", str(e).removeprefix("model.width_mult=")) from e
    return model, base


def make_plan(cfg: DictConfig, model: nn.Module, base: nn.Module) -> list[P.ParamPlan]:
    p = cfg.parametrization
    return P.make_plan(model, base, p.name, cfg.optimizer.name, p.init_scale, p.kernel_fan_in)


def build_optimizer(cfg: DictConfig, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """Adam: fused by default, on CPU too (one kernel per tensor instead of ten passes), stepped by
    LeanAdam (torch.optim.Adam's kernels and state without its per-step Python work, which would
    otherwise make μP's two learning-rate groups cost more than SP's one); for_loop is stock."""
    o = cfg.optimizer
    if o.name == "adam":
        impl = o.impl if o.impl != "auto" else "fused"
        if impl == "for_loop":
            return torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, foreach=False)
        try:
            return LeanAdam(groups, lr=o.lr, betas=o.betas, eps=o.eps, impl=impl)
        except RuntimeError:  # a torch without fused Adam for this device or dtype
            if o.impl != "auto":
                raise
            return LeanAdam(groups, lr=o.lr, betas=o.betas, eps=o.eps, impl="foreach")
    impl = o.impl if o.impl != "auto" else ("fused" if device.type == "cuda" else "foreach")
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, fused=impl == "fused", foreach=impl == "foreach")


def denormals(n: int) -> torch.Tensor:
    """n float32 denormals (the smallest, 1.4e-45), made from integer bits: a float fill would
    itself be flushed to zero on a thread that flushes."""
    return torch.ones(n, dtype=torch.int32).view(torch.float32)


_flush_warned = False  # the warning below, once per process: a batched sweep builds hundreds of runs


def set_flush_denormal(on: bool) -> None:
    """CPU denormals to zero (x86's FTZ/DAZ), set explicitly either way so that one run's choice
    does not leak into the next run of a multirun.

    The flag lives in each thread's MXCSR register: torch sets it on the calling thread, and the
    intra-op worker threads inherit it only if they start after it (measured: with 2 threads, a
    pool started earlier leaves half of every parallel op unflushed). So it is set before the
    first torch op of a run, and checked on every thread; where the pool predates it, a warning
    says so.
    """
    global _flush_warned
    torch.set_flush_denormal(on)
    if on and torch.get_num_threads() > 1:
        n = 2**16 * torch.get_num_threads()  # enough elements for every thread to get a share
        unflushed = int((denormals(n) * 1.0).count_nonzero())
        if unflushed and not _flush_warned:
            _flush_warned = True
            log.warning("train.flush_denormal reaches %.0f%% of the work: torch's %d-thread pool started before it was set "
                        "(an earlier run in this process without it); set it for every run of the process, or train.threads=1",
                        100 * (1 - unflushed / n), torch.get_num_threads())


def set_tf32(on: bool) -> None:
    """TF32 for CUDA matmuls and convolutions, set explicitly either way (cuDNN's default is on)."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def autocast(cfg: DictConfig, device: torch.device):
    """The context for forward and loss: bfloat16 autocast if ``train.bf16``, else nothing."""
    if cfg.train.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def generator(device: torch.device, seed: int, stream: str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream))


def build_run(cfg: DictConfig, device: torch.device | None = None, splits: Splits | None = None) -> Run:
    """Everything a training loop needs, initialised and seeded from ``cfg`` alone."""
    device = device or resolve_device(cfg.train.device)
    set_flush_denormal(cfg.train.flush_denormal)  # before any torch op starts the thread pool
    dtype = getattr(torch, cfg.train.dtype)
    if splits is None:
        splits = load_splits(cfg.dataset, device)
    if dtype != torch.float32:
        cast = lambda ts: tuple(t.to(dtype) if t.is_floating_point() else t for t in ts)  # noqa: E731
        splits = Splits(splits.spec, cast(splits.train), cast(splits.val), cast(splits.test), splits.info)
    set_tf32(cfg.train.tf32)
    model, base = build_models(cfg, splits.spec, device)
    model.to(dtype)
    plan = make_plan(cfg, model, base)
    P.initialize(model, plan, generator(device, cfg.seed, "init"))
    if cfg.train.compile:
        model.compile()  # in place: parameter names, and so checkpoints, stay as they are
    torch.manual_seed(stream_seed(cfg.seed, "dropout"))  # dropout draws from torch's global RNG
    optimizer = build_optimizer(cfg, P.param_groups(model, plan, cfg.optimizer.lr), device)
    bs = cfg.train.batch_size
    return Run(
        cfg=cfg,
        device=device,
        splits=splits,
        model=model,
        base_model=base,
        plan=plan,
        optimizer=optimizer,
        loss_fn=loss_function(splits.spec.task),
        train_sampler=make_sampler(splits, "train", bs, generator(device, cfg.seed, "data")),
        val_sampler=make_sampler(splits, "val", bs, generator(device, cfg.seed, "val")),
    )
