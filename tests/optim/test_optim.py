"""mupbench/optim/__init__.py: which optimizer a config gives a single run (build_optimizer) and
an ensemble (build_stacked)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from mupbench.config import ConfigError, compose
from mupbench.optim import LeanAdam, StackedAdam, StackedFusedAdam, StackedSGD, build_optimizer, build_stacked, cpu_fused_adam

CPU = torch.device("cpu")


def _groups():
    return [{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 1e-3}]


@pytest.mark.parametrize("overrides, kind, impl", [
    ([], LeanAdam, "fused"),
    (["optimizer.impl=fused"], LeanAdam, "fused"),
    (["optimizer.impl=foreach"], LeanAdam, "foreach"),
    (["optimizer.impl=for_loop"], torch.optim.Adam, None),
])
def test_build_optimizer_adam(overrides, kind, impl):
    opt = build_optimizer(compose(overrides), _groups(), CPU)
    assert type(opt) is kind and getattr(opt, "impl", None) == impl
    if kind is torch.optim.Adam:
        assert opt.defaults["foreach"] is False and not opt.defaults["fused"]


def test_build_optimizer_sgd_is_torch_sgd_foreach_on_cpu():
    opt = build_optimizer(compose(["optimizer=sgd", "optimizer.momentum=0.9"]), _groups(), CPU)
    assert type(opt) is torch.optim.SGD and opt.defaults["foreach"] and not opt.defaults["fused"]
    assert opt.defaults["momentum"] == 0.9


@pytest.mark.parametrize("overrides, device, kind", [
    ([], "cpu", StackedFusedAdam),
    (["optimizer.impl=fused"], "cpu", StackedFusedAdam),
    (["optimizer.impl=foreach"], "cpu", StackedAdam),
    (["optimizer.impl=for_loop"], "cpu", StackedAdam),
    (["optimizer=sgd"], "cpu", StackedSGD),
])
def test_build_stacked(overrides, device, kind):
    assert cpu_fused_adam()  # torch ≥ 2.4
    params, lrs = [torch.zeros(2, 3)], torch.full((2, 1), 1e-3, dtype=torch.float64)
    opt = build_stacked(compose(overrides), params, lrs, torch.device(device), step=7)
    assert type(opt) is kind and opt.t == 7 and opt.lrs is lrs


def test_build_stacked_on_cuda_is_never_the_fused_one():
    """The fused one needs to know on the host who is alive; on CUDA that would be a sync per step."""
    opt = build_stacked(compose([]), [torch.zeros(2, 3)], torch.full((2, 1), 1e-3, dtype=torch.float64), "cuda")
    assert type(opt) is StackedAdam


def test_build_stacked_rejects_other_optimizers():
    cfg = compose([])
    OmegaConf.set_struct(cfg, False)
    cfg.optimizer.name = "lion"
    with pytest.raises(ConfigError, match="optimizer.name: batched training has no 'lion'"):
        build_stacked(cfg, [torch.zeros(2, 3)], torch.full((2, 1), 1e-3, dtype=torch.float64), CPU)
