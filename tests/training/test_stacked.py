"""The stacked stepper (mupbench/training/stacked.py, forward.py): each member of an ensemble is
the run its seed and k give when trained alone — the same numbers, dropout masks, divergence step."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_same_run, cfgs, train_single, train_stacked
from mupbench.assemble import build_run, stream_seed
from mupbench.config import compose
from mupbench.training.stacked import StackedStepper

BASE = ["train.device=cpu", "train.eval_batches=2"]
MLP = [*BASE, "train.steps=40", "train.eval_every=10", "model.width_mult=2"]
# tiny versions of the other setups, on the embedded synthetic data
IMAGES = ["dataset=synthetic_images", "dataset.n_train=64", "dataset.n_val=32", "dataset.n_test=8", "train.batch_size=4"]
VGG = [*BASE, *IMAGES, "train.steps=8", "train.eval_every=4", "model=vgg"]
TRANSFORMER = [*BASE, "train.steps=12", "train.eval_every=4", "train.batch_size=4", "model=transformer", "model.blocks=1",
               "dataset=synthetic_tokens", "dataset.n_train=2000", "dataset.n_val=500", "dataset.n_test=100"]


def single(cfg):
    return train_single(build_run(cfg))


def batched(configs, forward="auto"):
    return train_stacked([build_run(c) for c in configs], forward)


@pytest.mark.parametrize("forward", ["bmm", "vmap"])
def test_mlp_members_equal_their_single_runs(forward):
    points = [(0, 1e-3), (1, 1e-2), (2, 3e-2)]  # per-member learning rates
    configs = cfgs(MLP, points, "parametrization=mup")
    outs, ens = batched(configs, forward)
    assert ens.mode == forward
    for cfg, out in zip(configs, outs):
        assert_same_run(single(cfg), out)
    assert len({out.history[-1]["train_loss"] for out in outs}) == 3


@pytest.mark.parametrize("extra, rtol", [
    (["optimizer=sgd", "optimizer.momentum=0.9"], 1e-4),  # torch's SGD fuses −lr·g into the add
    (["train.dtype=float64"], 1e-10),
], ids=["sgd_momentum", "float64"])
def test_mlp_members_equal_their_single_runs_in_other_modes(extra, rtol):
    configs = cfgs(MLP, [(0, 1e-2), (1, 3e-2)], *extra)
    outs, _ = batched(configs)
    for cfg, out in zip(configs, outs):
        assert_same_run(single(cfg), out, rtol)


def test_bf16_members_autocast_like_their_single_runs():
    """Under bf16 autocast batched and single matmuls round differently (bf16 keeps ~3 digits), so
    trajectories drift apart by a few percent; before the first update they agree to bf16 precision."""
    configs = cfgs(MLP, [(0, 1e-2), (1, 3e-2)], "train.bf16=true")
    outs, _ = batched(configs)
    for cfg, out in zip(configs, outs):
        alone = single(cfg)
        assert (alone.status, [h["step"] for h in alone.history]) == (out.status, [h["step"] for h in out.history])
        for key in ("train_loss", "val_loss"):
            assert out.history[0][key] == pytest.approx(alone.history[0][key], rel=1e-2)
            assert out.history[-1][key] == pytest.approx(alone.history[-1][key], rel=0.2)


@pytest.mark.parametrize("setup", [VGG, TRANSFORMER], ids=["vgg_dropout", "transformer"])
def test_other_setups_members_equal_their_single_runs(setup):
    """VGG has dropout 0.5 in its head: each member draws its masks from its own stream, as its
    single run does from torch's global RNG, so even with dropout on the runs are the same."""
    configs = cfgs(setup, [(0, 1e-3), (1, 3e-3)])
    outs, ens = batched(configs)
    assert ens.mode == "vmap"
    for cfg, out in zip(configs, outs):
        assert_same_run(single(cfg), out)


def test_dropout_streams_are_per_member():
    configs = cfgs(VGG, [(0, 1e-3), (1, 1e-3), (0, 1e-2)])
    ens = StackedStepper([build_run(c) for c in configs])
    x, y = ens.train_sampler.next()
    ens.losses(x, y, train=True)  # learns the dropout shapes
    assert [s[0] for s in ens.forward.dropout_specs] == [(4, 20), (4, 20)]  # the two head dropouts, batch 4
    fresh = StackedStepper([build_run(c) for c in configs])
    fresh.forward.dropout_specs = ens.forward.dropout_specs
    masks = fresh.forward._masks(fresh.dropout_gens)
    first = masks[0]
    assert not torch.equal(first[0], first[1])  # seeds 0 and 1: different masks
    assert torch.equal(first[0], first[2])  # the same seed draws the same masks, whatever its k
    # what the single run of seed 0 draws (F.dropout on CPU: bernoulli_(1 - p), then ÷ (1 - p))
    torch.manual_seed(stream_seed(0, "dropout"))
    expect = torch.empty(4, 20).bernoulli_(0.5).div_(0.5)
    assert torch.equal(first[0], expect)
    assert set(first.unique().tolist()) == {0.0, 2.0}


@pytest.mark.parametrize("eval_every", [10, 9], ids=["between_evals", "at_an_eval"])
def test_diverged_member_is_frozen_and_recorded_at_its_step(eval_every):
    points = [(1, 1e-3), (0, 4e5), (2, 1e-2)]  # seed 0 at k = 4e5 diverges at step 9
    configs = cfgs([*BASE, "train.steps=40", f"train.eval_every={eval_every}", "model.width_mult=1"], points)
    outs, ens = batched(configs)
    singles = [single(c) for c in configs]
    assert singles[1].status == "diverged" and singles[1].diverged_step == 9
    for a, b in zip(singles, outs):
        assert_same_run(a, b)
    assert [o.status for o in outs] == ["completed", "diverged", "completed"]
    assert ens.size == 2  # dropped from the ensemble once recorded


def test_frozen_member_does_not_move():
    configs = cfgs(MLP, [(0, 1e-3), (1, 1e-3)])
    ens = StackedStepper([build_run(c) for c in configs])
    x, y = ens.train_sampler.next()
    y = y.clone()
    y[1, 0] = float("nan")  # member 1's loss is not finite at this step
    before = [p.detach().clone() for p in ens.params]
    losses = ens.step((x, y))
    assert torch.isfinite(losses[0]) and not torch.isfinite(losses[1])
    assert ens.alive.tolist() == [True, False]
    for p, q in zip(before, ens.params):
        assert not torch.equal(p[0], q[0])
        assert torch.equal(p[1], q[1])
    ens.step(ens.train_sampler.next())  # and stays frozen
    assert all(torch.equal(p[1], q[1]) for p, q in zip(before, ens.params))
