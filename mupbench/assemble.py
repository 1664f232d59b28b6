"""One assembly step: a validated config → the pieces of a run.

train.py, the coordinate check and the batched trainer all call ``build_run``, so no entrypoint
builds a model, an init or an optimizer its own way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from mupbench import parametrization as P
from mupbench.config import ConfigError
from mupbench.data import DataSpec, Splits, load_splits, make_sampler
from mupbench.models import model_module, scaled
from mupbench.optim import build_optimizer

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
    # a model's own ConfigError names its key (model.heads, model.patch_size, dataset, ...);
    # config.validate says the same before any work
    extras = module.scales(cfg) if hasattr(module, "scales") else {}  # model=custom: attn_scale, readout_mult
    if "base_blocks" in cfg.model:  # a model with residual blocks: their branches' multiplier m_L^−α (SPEC-AXES §3)
        extras["residual_scale"] = P.residual_scale(axes(cfg))
    with torch.device("meta"):
        base = module.build(base_cfg, spec, attention_scale(cfg), **extras)
    with torch.device(device):
        model = module.build(cfg.model, spec, attention_scale(cfg), **extras)
    return model, base


def axes(cfg: DictConfig) -> P.Axes:
    """The config's per-parameter options beyond the paper (ε, weight decay, depth: SPEC-AXES)."""
    o, m = cfg.optimizer, cfg.model
    alpha = cfg.parametrization.get("depth_alpha")
    return P.Axes(eps_scaling=o.get("eps_scaling", "none"), wd_mode=o.get("wd_mode", "coupled"),
                  wd_on_vectors=bool(o.get("wd_on_vectors", False)), depth_alpha=None if alpha is None else float(alpha),
                  depth_mult=m.blocks / m.base_blocks if "base_blocks" in m else 1.0,
                  depth_wd_follows_lr=bool(cfg.parametrization.get("depth_wd_follows_lr", False)))


def make_plan(cfg: DictConfig, model: nn.Module, base: nn.Module) -> list[P.ParamPlan]:
    p = cfg.parametrization
    return P.make_plan(model, base, p.name, cfg.optimizer.name, p.init_scale, p.kernel_fan_in, axes(cfg))


def optimizer_groups(cfg: DictConfig, model: nn.Module, plan: list[P.ParamPlan]) -> list[dict]:
    """The torch parameter groups of ``model``: per-parameter lr, ε and λ_torch from the plan."""
    o = cfg.optimizer
    return P.param_groups(model, plan, o.lr, eps=o.eps if "eps" in o else None, weight_decay=o.get("weight_decay", 0.0),
                          wd_mode=o.get("wd_mode", "coupled"))


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


SMALL_WORK = 2**20  # elements per op below which one thread beats two (OpenMP barriers dominate)


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by SLURM's allocation."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(slurm)) if slurm.isdigit() and int(slurm) > 0 else cpus


def auto_threads(work: int, cpus: int, busy: float) -> int:
    """The intra-op thread count for ``work`` elements per step on ``cpus`` CPUs of which about
    ``busy`` are taken by other processes.

    Tiny ops (a small model, a small ensemble) get one thread: their parallel regions are too
    short to amortise OpenMP's barriers, and a barrier whose other thread is descheduled on a
    busy machine stalls every op (measured: 94 s with 2 threads vs 20 s with 1 for a 32-member
    MLP ensemble with two competing processes). Larger ones get the CPUs nobody else is using.
    """
    if work < SMALL_WORK or cpus <= 1:
        return 1
    return max(1, min(cpus, round(cpus - busy)))


def busy_cpus(samples: int = 5) -> float:
    """How many CPUs other processes keep busy right now: the kernel's count of runnable tasks
    (/proc/loadavg, 4th field), less this process's sampling thread, median of a few samples 10 ms
    apart; the 1-minute load average where there is no /proc."""
    counts = []
    for _ in range(samples):
        try:
            counts.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        time.sleep(0.01)
    return float(statistics.median(counts))


def set_threads(cfg: DictConfig, work: int) -> int:
    """Set torch's intra-op threads from ``train.threads`` (0 = :func:`auto_threads` for ``work``,
    the elements one training step's ops touch: members × parameters) and return the count, which
    the run's record keeps."""
    n = cfg.train.threads or auto_threads(work, usable_cpus(), busy_cpus() if work >= SMALL_WORK else 0.0)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


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


def cast_splits(splits: Splits, dtype: torch.dtype) -> Splits:
    """The splits with floating-point tensors in ``dtype`` (the data arrive in float32)."""
    if dtype == torch.float32:
        return splits
    cast = lambda ts: tuple(t.to(dtype) if t.is_floating_point() else t for t in ts)  # noqa: E731
    return Splits(splits.spec, cast(splits.train), cast(splits.val), cast(splits.test), splits.info)


def build_run(cfg: DictConfig, device: torch.device | None = None, splits: Splits | None = None) -> Run:
    """Everything a training loop needs, initialised and seeded from ``cfg`` alone."""
    device = device or resolve_device(cfg.train.device)
    set_flush_denormal(cfg.train.flush_denormal)  # before any torch op starts the thread pool
    if splits is None:
        splits = load_splits(cfg.dataset, device)
    splits = cast_splits(splits, getattr(torch, cfg.train.dtype))
    set_tf32(cfg.train.tf32)
    model, base = build_models(cfg, splits.spec, device)
    model.to(getattr(torch, cfg.train.dtype))
    plan = make_plan(cfg, model, base)
    P.initialize(model, plan, generator(device, cfg.seed, "init"))
    if cfg.train.compile:
        model.compile()  # in place: parameter names, and so checkpoints, stay as they are
    torch.manual_seed(stream_seed(cfg.seed, "dropout"))  # dropout draws from torch's global RNG
    optimizer = build_optimizer(cfg, optimizer_groups(cfg, model, plan), device)
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


def describe_params(cfg: DictConfig) -> str:
    """The per-parameter table (``print_params=true``), from models built on the meta device."""
    spec = load_splits(cfg.dataset, torch.device("cpu")).spec
    model, base = build_models(cfg, spec, torch.device("meta"))
    plan = make_plan(cfg, model, base)
    module = model_module(cfg.model.name)
    notes = "".join(f"\n{line}" for line in (module.notes(cfg.model, model) if hasattr(module, "notes") else []))
    o = cfg.optimizer
    table = P.format_plan(plan, o.lr, eps=o.get("eps"), weight_decay=o.get("weight_decay"), wd_mode=o.get("wd_mode", "coupled"))
    return f"{table}\n{sum(p.numel() for p in model.parameters()):,} parameters{notes}"
