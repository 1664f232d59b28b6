"""What only a CUDA device can show: the lean step keeps the host out of the loop between
evaluations, batched members still equal their single runs (and a diverged member is frozen by
the device-side mask, the CUDA path), and the speed switches (bf16, TF32, compile) train.

Skipped without CUDA (CI has none); run them with ``python -m pytest -m gpu`` on a GPU machine.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import assert_same_run, cfgs, train_stacked
from conftest import train_single as train

from mupbench.assemble import build_run, set_tf32
from mupbench.config import compose
from mupbench.training.single import SingleStepper
from mupbench.training.stacked import StackedStepper

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BASE = ["train.device=cuda", "train.eval_batches=2"]
MLP = [*BASE, "train.steps=40", "train.eval_every=10", "model.width_mult=2"]
TRANSFORMER = [*BASE, "train.steps=12", "train.eval_every=4", "train.batch_size=4", "model=transformer", "model.blocks=1",
               "dataset=synthetic_tokens", "dataset.n_train=2000", "dataset.n_val=500", "dataset.n_test=100"]
VIT = [*BASE, "train.steps=12", "train.eval_every=4", "train.batch_size=8", "model=vit", "dataset=synthetic_images",
       "dataset.n_train=64", "dataset.n_val=32", "dataset.n_test=8"]
# fp32 on CUDA (TF32 off): batched and single kernels differ in summation order only
RTOL = 1e-4


@pytest.fixture(autouse=True)
def _no_sync_debug():
    yield
    torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("setup", [MLP, TRANSFORMER], ids=["mlp", "transformer"])
def test_single_step_never_syncs_with_the_host(setup):
    """The loop body between evaluations (sample, forward, backward, Adam) issues no host sync:
    CUDA's sync debug mode turns any sync into an error."""
    run = build_run(compose(setup))
    assert run.device.type == "cuda"
    stepper = SingleStepper(run)  # the loop's own step
    losses = torch.zeros(20, 1, device=run.device)
    stepper.step(stepper.next_batch())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    for i in range(20):
        losses[i] = stepper.step(stepper.next_batch())
    torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(losses).all() and losses[-1] < losses[0]


def test_batched_step_never_syncs_with_the_host():
    """Divergence is tracked on the device: a member's non-finite loss freezes it without a sync."""
    ens = StackedStepper([build_run(c) for c in cfgs(MLP, [(0, 1e-3), (1, 1e-2), (2, 3e-2)])])
    ens.step(ens.next_batch())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    for _ in range(10):
        ens.step(ens.next_batch())
    torch.cuda.set_sync_debug_mode(0)
    assert ens.alive.all()


@pytest.mark.parametrize("setup, forward", [(MLP, "bmm"), (MLP, "vmap"), (TRANSFORMER, "vmap"), (VIT, "vmap")],
                         ids=["mlp_bmm", "mlp_vmap", "transformer", "vit"])
def test_batched_members_equal_their_single_runs_on_cuda(setup, forward):
    configs = cfgs(setup, [(0, 1e-3), (1, 3e-3), (2, 1e-2)], "parametrization=mup")
    outs, ens = train_stacked([build_run(c) for c in configs], forward=forward)
    assert ens.device.type == "cuda" and ens.mode == forward
    for cfg, out in zip(configs, outs):
        assert_same_run(train(build_run(cfg)), out, RTOL)


def test_diverged_member_is_frozen_on_cuda_and_recorded_at_its_step():
    # k = 1e15 overflows at the first update's forward whatever the rounding (k = 4e5, the CPU
    # test's, hovers at 1e37 below float32's 3.4e38 for steps, so there rounding decides the step)
    points = [(1, 1e-3), (0, 1e15), (2, 1e-2)]
    configs = cfgs([*BASE, "train.steps=40", "train.eval_every=10", "model.width_mult=1"], points)
    singles = [train(build_run(c)) for c in configs]
    assert [s.status for s in singles] == ["completed", "diverged", "completed"]
    outs, ens = train_stacked([build_run(c) for c in configs])
    for a, b in zip(singles, outs):
        assert_same_run(a, b, RTOL)  # the diverged member at its single run's exact step, too
    assert ens.size == 2  # dropped from the ensemble once recorded


def test_frozen_member_does_not_move_on_cuda():
    ens = StackedStepper([build_run(c) for c in cfgs(MLP, [(0, 1e-3), (1, 1e-3)])])
    x, y = ens.train_sampler.next()
    y = y.clone()
    y[1, 0] = float("nan")
    before = [p.detach().clone() for p in ens.params]
    ens.step((x, y))
    ens.step(ens.next_batch())
    assert ens.alive.tolist() == [True, False]
    for p, q in zip(before, ens.params):
        assert not torch.equal(p[0], q[0])
        assert torch.equal(p[1], q[1])


def test_bf16_and_tf32_stay_close_to_fp32():
    """bf16 autocast keeps ~3 significant digits and TF32 ~3-4: the first evaluation agrees with
    fp32 to those, and training still lowers the loss."""
    fp32 = train(build_run(compose(TRANSFORMER)))
    for extra, rtol in ((["train.bf16=true"], 2e-2), (["train.tf32=true"], 5e-3)):
        out = train(build_run(compose([*TRANSFORMER, *extra])))
        assert out.status == "completed"
        assert out.history[0]["val_loss"] == pytest.approx(fp32.history[0]["val_loss"], rel=rtol), extra
        assert out.history[-1]["val_loss"] < out.history[0]["val_loss"]
    set_tf32(False)


def test_compiled_model_trains_like_eager():
    """torch.compile (Inductor) fuses kernels, so results move in the last bits only."""
    eager = train(build_run(compose(TRANSFORMER)))
    compiled = train(build_run(compose([*TRANSFORMER, "train.compile=true"])))
    assert_same_run(eager, compiled, rtol=1e-3)


def test_cli_trains_on_cuda_and_records_the_device(cli, tmp_path):
    out = cli("train.steps=40", "train.eval_every=20", "train.device=cuda")
    assert out.returncode == 0, out.stderr[-2000:]
    (result,) = tmp_path.glob("outputs/**/result.json")
    record = json.loads(result.read_text())
    assert record["status"] == "completed"
    assert record["env"]["device"].startswith("cuda") and record["env"]["device_name"] == torch.cuda.get_device_name()
