"""The loop's guarantees: SPEC §4 evaluations, exact divergence steps, and checkpoint resume
that ends with the same numbers as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from mupbench.assemble import build_run
from mupbench.loop import train
from mupbench.records import CHECKPOINT


def test_eval_points_and_train_loss_is_the_current_batch(tiny_cfg):
    run = build_run(tiny_cfg("train.steps=25", "train.eval_every=10"))
    seen = []
    loss_fn = run.loss_fn
    run.loss_fn = lambda out, y: seen.append(loss_fn(out, y).item()) or loss_fn(out, y)
    history = train(run).history
    assert [h["step"] for h in history] == [0, 10, 20, 25]
    # val batches are evaluated first, then the step's own batch: its loss is the train loss
    per_eval = run.cfg.train.eval_batches + 1
    assert history[0]["train_loss"] == pytest.approx(seen[per_eval - 1])
    assert history[0]["val_loss"] == pytest.approx(sum(seen[: per_eval - 1]) / (per_eval - 1))


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
    out = train(run)
    assert out.status == "diverged" and out.diverged_step == 13 and out.steps_done == 13
    assert [h["step"] for h in out.history] == [0]


def test_resume_after_a_crash_gives_the_uninterrupted_record(tiny_cfg, tmp_path):
    overrides = ("train.steps=60", "train.eval_every=10", "train.ckpt_every=25")
    whole = train(build_run(tiny_cfg(*overrides)), tmp_path / "whole", "fp")

    crashing = build_run(tiny_cfg(*overrides))
    real_step, calls = crashing.optimizer.step, {"n": 0}

    def step_then_crash(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt("killed")
        return real_step(*a, **kw)

    crashing.optimizer.step = step_then_crash
    with pytest.raises(KeyboardInterrupt):
        train(crashing, tmp_path / "resumed", "fp")
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["step"] == 25

    resumed = train(build_run(tiny_cfg(*overrides)), tmp_path / "resumed", "fp")
    assert resumed.resumed_from == 25 and resumed.session_steps == 35
    assert resumed.history == [dict(h, elapsed_s=r["elapsed_s"]) for h, r in zip(whole.history, resumed.history)]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]


def test_checkpoint_of_another_config_is_not_used(tiny_cfg, tmp_path):
    overrides = ("train.steps=30", "train.ckpt_every=10")
    train(build_run(tiny_cfg(*overrides)), tmp_path, "fp-a")  # leaves a checkpoint at step 20
    assert (tmp_path / CHECKPOINT).exists()
    out = train(build_run(tiny_cfg(*overrides)), tmp_path, "fp-b")
    assert out.resumed_from is None and out.session_steps == 30
