"""Assembly (mupbench/assemble.py): the run environment — the automatic thread count, and the lean
step's switches: torch.compile, bf16 autocast, TF32 and flushing denormals are off unless asked
for, are recorded in the run's config and fingerprint (they change numbers), and work on CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import train_single as train
from mupbench import assemble as A
from mupbench.assemble import autocast, build_run, denormals, set_tf32
from mupbench.config import compose
from mupbench.lifecycle import run_point as run_one
from mupbench.records import fingerprint

TINY = ["train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu"]


def test_auto_threads_one_for_small_work_free_cpus_for_large():
    assert A.auto_threads(A.SMALL_WORK - 1, cpus=16, busy=0) == 1  # tiny ops: OpenMP barriers dominate
    assert A.auto_threads(A.SMALL_WORK, cpus=16, busy=0) == 16
    assert A.auto_threads(10**8, cpus=2, busy=2) == 1  # a busy machine: one thread, never a stalled barrier
    assert A.auto_threads(10**8, cpus=8, busy=3) == 5
    assert A.auto_threads(10**8, cpus=1, busy=0) == 1


def test_usable_cpus_follow_affinity_and_slurm(monkeypatch):
    monkeypatch.setattr(A.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert A.usable_cpus() == 4
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")
    assert A.usable_cpus() == 2


def test_set_threads_fixed_or_auto(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert A.set_threads(compose(["train.threads=1"]), 10**9) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(A, "usable_cpus", lambda: 2)
        monkeypatch.setattr(A, "busy_cpus", lambda: 0.0)
        assert A.set_threads(compose([]), 10**9) == 2 and torch.get_num_threads() == 2
        assert A.set_threads(compose([]), 1000) == 1
    finally:
        torch.set_num_threads(before)


def test_busy_cpus_reads_the_runnable_count(monkeypatch, tmp_path):
    fake = tmp_path / "loadavg"
    fake.write_text("3.10 2.00 1.50 4/250 12345\n")
    monkeypatch.setattr(A, "Path", lambda p: fake)
    assert A.busy_cpus(samples=3) == 3.0  # 4 runnable, one of them this process


def test_speed_switches_are_off_by_default_and_recorded(tmp_path):
    cfg = compose(TINY)
    switches = ("compile", "bf16", "tf32", "flush_denormal")
    assert [cfg.train[k] for k in switches] == [False] * 4
    record = run_one(cfg, tmp_path / "run")
    assert {k: record["config"]["train"][k] for k in switches} == dict.fromkeys(switches, False)
    prints = {fingerprint(compose([*TINY, f"train.{k}=true"])) for k in switches}
    assert len(prints | {fingerprint(cfg)}) == 5  # each changes numbers, so each is its own run


def test_tf32_is_set_explicitly_both_ways():
    try:
        build_run(compose([*TINY, "train.tf32=true"]))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        build_run(compose(TINY))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32  # cuDNN's own default is on
    finally:
        set_tf32(False)


def test_flush_denormal_is_set_explicitly_both_ways_and_flushes():
    tiny = denormals(1)  # 1.4e-45, the smallest float32 denormal
    try:
        build_run(compose([*TINY, "train.flush_denormal=true"]))
        assert (tiny * 1.0).item() == 0.0  # flushed
        build_run(compose(TINY))  # the next run of a multirun gets the default back
        assert (tiny * 1.0).item() == pytest.approx(1.4e-45, rel=1e-2)
    finally:
        torch.set_flush_denormal(False)


FTZ_PROBE = """
import logging, sys, torch
logging.basicConfig(level=logging.WARNING)
from mupbench.assemble import build_run, denormals
from mupbench.config import compose
torch.set_num_threads(2)
if sys.argv[1] == "pool_first":
    denormals(2**18).mul(2).sum()  # an earlier run's parallel op starts the thread pool
build_run(compose(["train.device=cpu", "train.flush_denormal=true"]))
print("unflushed", int((denormals(2**18) * 1.0).count_nonzero()))
"""


@pytest.mark.slow  # a fresh Python process each (the thread pool must not exist yet): the full tier
@pytest.mark.parametrize("when", ["fresh", "pool_first"])
def test_flush_denormal_reaches_every_thread_or_says_it_does_not(when):
    """FTZ is per thread: set before the run's first torch op, the intra-op workers inherit it; if
    the pool predates it (not this run's doing), half the work stays unflushed and a warning says so."""
    out = subprocess.run([sys.executable, "-c", FTZ_PROBE, when], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    if when == "fresh":
        assert "unflushed 0" in out.stdout and "flush_denormal" not in out.stderr
    else:
        assert "unflushed 0" not in out.stdout
        assert "train.flush_denormal reaches 50% of the work" in out.stderr


def test_flush_denormal_changes_nothing_above_the_denormal_range():
    """Flushing only zeroes |x| < 1.2e-38: an MLP's losses agree with the default run."""
    a = train(build_run(compose([*TINY, "model.width_mult=4"])))
    b = train(build_run(compose([*TINY, "model.width_mult=4", "train.flush_denormal=true"])))
    torch.set_flush_denormal(False)
    for ha, hb in zip(a.history, b.history):
        assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-6)


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


def test_single_runs_use_the_lean_fused_adam():
    from mupbench.optim import LeanAdam

    assert isinstance(build_run(compose(TINY)).optimizer, LeanAdam) and build_run(compose(TINY)).optimizer.impl == "fused"
    assert type(build_run(compose([*TINY, "optimizer.impl=for_loop"])).optimizer) is torch.optim.Adam
