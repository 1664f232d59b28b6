"""The one loop's guarantees (mupbench/training/loop.py): SPEC §4 evaluations, exact divergence
steps, history rows handed to observers as they are written, for one member and for many."""

from __future__ import annotations

import pytest
import torch

from conftest import train_single, train_stacked
from mupbench.assemble import build_run
from mupbench.training.loop import Member, train
from mupbench.training.single import SingleStepper


def test_eval_points_and_train_loss_is_the_current_batch(tiny_cfg):
    run = build_run(tiny_cfg("train.steps=25", "train.eval_every=10"))
    seen = []
    loss_fn = run.loss_fn
    run.loss_fn = lambda out, y: seen.append(loss_fn(out, y).item()) or loss_fn(out, y)
    history = train_single(run).history
    assert [h["step"] for h in history] == [0, 10, 20, 25]
    # val batches are evaluated first, then the step's own batch: its loss is the train loss
    per_eval = run.cfg.train.eval_batches + 1
    assert history[0]["train_loss"] == pytest.approx(seen[per_eval - 1])
    assert history[0]["val_loss"] == pytest.approx(sum(seen[: per_eval - 1]) / (per_eval - 1))
    # 25 updates, 4 evaluations of 2 val batches and the final one's train batch: nothing more
    assert len(seen) == 25 + 4 * per_eval - 3


def test_divergence_is_found_at_its_exact_step(tiny_cfg):
    run = build_run(tiny_cfg("train.steps=40", "train.eval_every=20"))
    step = {"n": 0}
    loss_fn = run.loss_fn

    def poisoned(out, y):
        loss = loss_fn(out, y)
        if run.model.training:
            step["n"] += 1
            if step["n"] == 14:  # the 14th training forward is step 13
                return loss * float("inf")
        return loss

    run.loss_fn = poisoned
    out = train_single(run)
    assert out.status == "diverged" and out.diverged_step == 13 and out.steps_done == 13
    assert [h["step"] for h in out.history] == [0]


def test_observers_see_every_history_row_as_it_is_written(tiny_cfg):
    run = build_run(tiny_cfg("train.steps=20", "train.eval_every=5"))
    seen = []
    member = Member(None, on_eval=lambda row: seen.append(dict(row)))
    (out,) = train(SingleStepper(run), [member], run.cfg.train)
    assert seen == out.history and [r["step"] for r in seen] == [0, 5, 10, 15, 20]


def test_a_checkpoint_cadence_writes_each_members_file(tiny_cfg, tmp_path):
    cfgs = [tiny_cfg("train.steps=20", "train.ckpt_every=8", f"seed={s}") for s in (0, 1)]
    runs = [build_run(c) for c in cfgs]
    from mupbench.training.stacked import StackedStepper

    members = [Member(tmp_path / f"m{i}", f"fp{i}") for i in range(2)]
    train(StackedStepper(runs), members, cfgs[0].train)
    for i in range(2):  # the last checkpoint before the end: step 16, in the member's own format
        state = torch.load(tmp_path / f"m{i}" / "checkpoint.pt", weights_only=True)
        assert state["step"] == 16 and state["fingerprint"] == f"fp{i}" and [h["step"] for h in state["history"]] == [0, 10]


def test_one_member_of_many_diverges_alone(tiny_cfg):
    cfgs = [tiny_cfg("train.steps=40", "train.eval_every=10", f"optimizer.lr={k}") for k in (1e-3, 4e5)]
    outs, stepper = train_stacked([build_run(c) for c in cfgs])
    assert [o.status for o in outs] == ["completed", "diverged"]
    assert outs[0].steps_done == 40 and [h["step"] for h in outs[0].history] == [0, 10, 20, 30, 40]
    assert stepper.size == 1
