"""The lean single-run step's switches: torch.compile, bf16 autocast and TF32 are off unless asked
for, are recorded in the run's config and fingerprint (they change numbers), and work on CPU."""

from __future__ import annotations

import pytest
import torch

from mupbench.assemble import autocast, build_run, set_tf32
from mupbench.config import compose
from mupbench.loop import train
from mupbench.train import fingerprint, run_one

TINY = ["train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu"]


def test_speed_switches_are_off_by_default_and_recorded(tmp_path):
    cfg = compose(TINY)
    assert (cfg.train.compile, cfg.train.bf16, cfg.train.tf32) == (False, False, False)
    record = run_one(cfg, tmp_path / "run")
    assert {k: record["config"]["train"][k] for k in ("compile", "bf16", "tf32")} == {"compile": False, "bf16": False, "tf32": False}
    prints = {fingerprint(compose([*TINY, f"train.{k}=true"])) for k in ("compile", "bf16", "tf32")}
    assert len(prints | {fingerprint(cfg)}) == 4  # each changes numbers, so each is its own run


def test_tf32_is_set_explicitly_both_ways():
    try:
        build_run(compose([*TINY, "train.tf32=true"]))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        build_run(compose(TINY))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32  # cuDNN's own default is on
    finally:
        set_tf32(False)


def test_bf16_autocasts_forward_only():
    cfg = compose([*TINY, "train.bf16=true"])
    run = build_run(cfg)
    x = run.splits.train[0][:16]
    with autocast(cfg, run.device):
        assert run.model(x).dtype == torch.bfloat16
    with autocast(compose(TINY), run.device):
        assert run.model(x).dtype == torch.float32
    out = train(run)
    assert out.status == "completed"
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # master weights and Adam stay fp32
    plain = train(build_run(compose(TINY)))
    first, first_plain = out.history[0]["train_loss"], plain.history[0]["train_loss"]
    assert first != first_plain and first == pytest.approx(first_plain, rel=2e-2)  # bf16 rounding, same model


def test_compile_keeps_parameter_names():
    run = build_run(compose([*TINY, "train.compile=true"]))
    plain = build_run(compose(TINY))
    assert list(run.model.state_dict()) == list(plain.model.state_dict())  # checkpoints stay loadable
    for a, b in zip(run.model.parameters(), plain.model.parameters()):
        assert torch.equal(a, b)  # same init
