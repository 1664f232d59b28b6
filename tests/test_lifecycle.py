"""A point's life (mupbench/lifecycle.py): records equal to the single run's, finished points
skipped, interrupted ones resumed to the uninterrupted record, and no bad file blocks a run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import RTOL, cfgs
from mupbench.config import compose
from mupbench.lifecycle import balanced_chunks, run_group, run_point
from mupbench.records import CHECKPOINT, METRICS, RESULT
from mupbench.training.stacked import StackedStepper
from mupbench.training.single import SingleStepper

BASE = ["train.device=cpu", "train.eval_batches=2"]
IMAGES = ["dataset=synthetic_images", "dataset.n_train=64", "dataset.n_val=32", "dataset.n_test=8", "train.batch_size=4"]
LOSSES = ("min_train_loss", "min_val_loss", "final_train_loss", "final_val_loss")


def crash_at(monkeypatch, stepper, n: int, exc: BaseException = KeyboardInterrupt("killed")):
    """Make ``stepper``'s n-th step raise ``exc`` (a kill, a lost node); returns the undo."""
    real, calls = stepper.step, []

    def step(self, batch):
        calls.append(1)
        if len(calls) == n:
            raise exc
        return real(self, batch)

    monkeypatch.setattr(stepper, "step", step)
    return lambda: monkeypatch.setattr(stepper, "step", real)


def read(run_dir):
    return json.loads((run_dir / RESULT).read_text())


def test_group_records_are_the_single_runs_and_reruns_skip(tmp_path):
    points = [(0, 1e-3), (1, 1e-2), (0, 4e5)]
    configs = cfgs([*BASE, "train.steps=30", "train.eval_every=10", "model.width_mult=1"], points)
    dirs = [tmp_path / "batched" / f"p{i}" for i in range(3)]
    records = run_group(configs, dirs)
    assert [r["status"] for r in records] == ["completed", "completed", "diverged"]
    for cfg, d, rec in zip(configs, dirs, records):
        alone = run_point(cfg, tmp_path / "single" / d.name)
        assert read(d) == rec
        assert (d / METRICS).read_text().splitlines()[0] == "step,train_loss,val_loss,elapsed_s,lr"
        assert not (d / CHECKPOINT).exists()
        assert set(rec) == set(alone) | {"batched"}
        for key in ("status", "diverged_step", "steps_done", "fingerprint", "seed", "lr", "width", "setup", "num_params", "config", "data"):
            assert rec[key] == alone[key], key
        for key in LOSSES:
            assert rec[key] == pytest.approx(alone[key], rel=RTOL)
        assert rec["batched"]["members"] == 3 and rec["threads"] >= 1
    # the three trained as one ensemble: one number, one wall time, covering their training
    assert len({(r["batched"]["ensemble"], r["batched"]["ensemble_s"]) for r in records}) == 1
    assert [r["batched"]["position"] for r in records] == [0, 1, 2]  # ascending k inside the ensemble
    assert 0 < records[0]["batched"]["ensemble_s"] <= max(r["wall_time_s"] for r in records)
    # a rerun finds every record and trains nothing
    stamps = [(d / RESULT).stat().st_mtime_ns for d in dirs]
    assert run_group(configs, dirs) == records
    assert [(d / RESULT).stat().st_mtime_ns for d in dirs] == stamps
    assert run_point(configs[0], dirs[0]) == records[0]  # and the single-run path skips them too


@pytest.mark.parametrize("n, cap, sizes", [(128, 61, [42, 43, 43]), (256, 15, [14] * 14 + [15] * 4), (10, 10, [10]), (1, 4, [1])])
def test_ensembles_are_split_into_the_fewest_chunks_of_balanced_size(n, cap, sizes):
    chunks = balanced_chunks(list(range(n)), cap)
    assert sorted(len(c) for c in chunks) == sorted(sizes) and max(sizes) <= cap
    assert [i for c in chunks for i in c] == list(range(n))  # consecutive: equal k stay side by side


def test_a_group_must_differ_only_in_seed_and_k(tmp_path):
    mlp = [*BASE, "train.steps=10", "train.eval_every=5"]
    with pytest.raises(ValueError, match="differ only in seed"):
        run_group([compose([*mlp, "seed=0"]), compose([*mlp, "seed=1", "model.width_mult=4"])], [tmp_path / "a", tmp_path / "b"])
    with pytest.raises(Exception, match="train.compile"):
        run_group([compose([*mlp, "train.compile=true"])], [tmp_path])
    assert not any(tmp_path.iterdir())


def test_single_run_resumes_after_a_crash_to_the_uninterrupted_record(tmp_path, monkeypatch):
    cfg = compose([*BASE, "train.steps=60", "train.eval_every=10", "train.ckpt_every=25"])
    whole = run_point(cfg, tmp_path / "whole")
    undo = crash_at(monkeypatch, SingleStepper, 40)
    with pytest.raises(KeyboardInterrupt):
        run_point(cfg, tmp_path / "resumed")
    undo()
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["step"] == 25
    resumed = run_point(cfg, tmp_path / "resumed")
    assert resumed["resumed_from"] == 25
    assert (tmp_path / "resumed" / METRICS).read_text() != ""
    for key in (*LOSSES, "status", "steps_done", "fingerprint"):
        assert resumed[key] == whole[key], key  # bitwise: the same run


def test_members_resume_from_checkpoints_in_the_single_run_format(tmp_path, monkeypatch):
    """Interrupted after its checkpoint at step 4, a batched group resumes where it stopped and
    ends with the records of uninterrupted runs; a single run resumes from a member's checkpoint."""
    configs = cfgs([*BASE, *IMAGES, "train.steps=8", "train.eval_every=4", "train.ckpt_every=4", "model=vgg"], [(0, 1e-3), (1, 1e-2)])
    dirs = [tmp_path / f"p{i}" for i in range(2)]
    undo = crash_at(monkeypatch, StackedStepper, 6, RuntimeError("node lost"))
    failed = run_group(configs, dirs)
    assert [r["status"] for r in failed] == ["failed", "failed"] and "node lost" in failed[0]["error"]
    assert all((d / CHECKPOINT).exists() for d in dirs)
    undo()
    assert torch.load(dirs[1] / CHECKPOINT, weights_only=True)["step"] == 4
    shutil.copytree(dirs[1], tmp_path / "single1")  # a copy, so the batched resume below has its own
    alone = run_point(configs[1], tmp_path / "single1")
    assert alone["resumed_from"] == 4
    resumed = run_group(configs, dirs)
    for cfg, rec in zip(configs, resumed):
        assert rec["status"] == "completed" and rec["resumed_from"] == 4
        fresh = run_point(cfg, tmp_path / f"fresh{cfg.seed}")
        for key in LOSSES:
            assert rec[key] == pytest.approx(fresh[key], rel=RTOL)
    assert alone["final_val_loss"] == pytest.approx(resumed[1]["final_val_loss"], rel=RTOL)


def _damage(kind, path, cfg):
    """Ways a checkpoint.pt can be unusable (issue 11 item 2)."""
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "random_bytes":
        path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        state = torch.load(path, weights_only=True)
        if kind == "no_optimizer":
            del state["optimizer"]
        elif kind == "wrong_shapes":
            state["model"] = {k: torch.zeros(3, *v.shape) for k, v in state["model"].items()}
        elif kind == "other_config":
            state["fingerprint"] = "0" * 16
        torch.save(state, path)


@pytest.mark.parametrize("kind", ["truncated", "random_bytes", "empty", "no_optimizer", "wrong_shapes", "other_config"])
def test_an_unusable_checkpoint_is_set_aside_and_the_run_starts_again(tmp_path, kind, caplog, monkeypatch):
    cfg = compose([*BASE, "train.steps=30", "train.eval_every=10", "train.ckpt_every=10"])
    whole = run_point(cfg, tmp_path / "whole")
    run_dir = tmp_path / "run"
    undo = crash_at(monkeypatch, SingleStepper, 15)
    with pytest.raises(KeyboardInterrupt):
        run_point(cfg, run_dir)
    undo()
    _damage(kind, run_dir / CHECKPOINT, cfg)
    with caplog.at_level("WARNING", logger="mupbench"):
        rec = run_point(cfg, run_dir)
    assert rec["status"] == "completed" and rec["resumed_from"] is None
    assert [rec[k] for k in LOSSES] == [whole[k] for k in LOSSES]  # from step 0: the uninterrupted run
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "set aside" in warnings[0]
    assert len(list(run_dir.glob(f"{CHECKPOINT}.unusable-*"))) == 1


def test_a_relaunch_removes_stale_temp_files_of_its_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in (".checkpoint.pt.abc123.part", ".result.json.x.part"):
        (run_dir / name).write_bytes(b"\0" * 7500)  # what a kill during a write leaves
    (tmp_path / ".other.part").write_bytes(b"x")  # not this run's: kept
    run_point(compose([*BASE, "train.steps=10", "train.eval_every=5"]), run_dir)
    assert not list(run_dir.glob("*.part")) and (tmp_path / ".other.part").exists()


def test_force_reruns_a_finished_point(tmp_path, capsys):
    cfg = compose([*BASE, "train.steps=10", "train.eval_every=5"])
    first = run_point(cfg, tmp_path)
    run_point(cfg, tmp_path)
    assert "skipped (already completed)" in capsys.readouterr().out
    again = run_point(compose([*BASE, "train.steps=10", "train.eval_every=5", "force=true"]), tmp_path)
    assert "completed (min val loss" in capsys.readouterr().out  # trained again, not skipped
    assert again["fingerprint"] == first["fingerprint"] and [again[k] for k in LOSSES] == [first[k] for k in LOSSES]


def test_records_carry_training_flops_counted_without_touching_the_run(tmp_path):
    """FLOPs per step are measured on a meta-device copy (mupbench.flops): the MLP's closed form
    (3 × forward less the first layer's input gradient: 3·2·16·(8·16 + 16·16 + 16·1) − 2·16·8·16),
    and the run itself — VGG with dropout, whose masks come from the global RNG — is exactly the
    run trained without the lifecycle."""
    from conftest import train_single
    from mupbench.assemble import build_run

    rec = run_point(compose([*BASE, "train.steps=10", "train.eval_every=5"]), tmp_path / "mlp")
    assert rec["flops_per_step"] == 3 * 2 * 16 * (8 * 16 + 16 * 16 + 16 * 1) - 2 * 16 * 8 * 16 == 34304
    assert rec["flops_total"] == 34304 * rec["steps_done"]
    cfg = compose([*BASE, *IMAGES, "train.steps=8", "train.eval_every=4", "model=vgg"])
    rec = run_point(cfg, tmp_path / "vgg")
    alone = train_single(build_run(cfg))
    assert rec["final_val_loss"] == alone.history[-1]["val_loss"] and rec["min_train_loss"] == min(h["train_loss"] for h in alone.history)


def _tensorboard_steps(logdir):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    return [e.step for e in sorted(acc.Scalars("val_loss"), key=lambda e: e.step)]


def test_a_batched_group_logs_one_tracker_run_per_member_and_a_resume_no_step_twice(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    tiny = [*BASE, "train.steps=30", "train.eval_every=10", "logger=tensorboard"]
    configs = cfgs(tiny, [(s, k) for k in (1e-3, 1e-2) for s in range(4)])
    dirs = [tmp_path / "sweep" / f"p{i}" for i in range(8)]
    run_group(configs, dirs)
    from mupbench import trackers

    trackers.flush()
    logs = sorted(p.parent for p in (tmp_path / "sweep" / "tensorboard").rglob("events.out.tfevents.*"))
    assert [p.name for p in logs] == [d.name for d in dirs]  # 8 members, 8 runs
    assert all(_tensorboard_steps(p) == [0, 10, 20, 30] for p in logs)
    # killed after its checkpoint at step 10 and after logging step 10 → resumed: steps 0…30 once each
    cfg = compose([*tiny, "train.ckpt_every=10"])
    undo = crash_at(monkeypatch, SingleStepper, 15)
    with pytest.raises(KeyboardInterrupt):
        run_point(cfg, tmp_path / "sweep" / "killed")
    undo()
    assert run_point(cfg, tmp_path / "sweep" / "killed")["resumed_from"] == 10
    trackers.flush()
    assert _tensorboard_steps(tmp_path / "sweep" / "tensorboard" / "killed") == [0, 10, 20, 30]


def test_a_point_rerun_in_the_process_it_was_interrupted_in_lets_its_tracker_calls_finish_first(tmp_path, monkeypatch, caplog):
    """The interrupted attempt's tracker calls are still queued when the point is rerun: the rerun
    waits for them before it clears the run dir's temp files (one of them is the ledger being
    written) and reads the ledger, so no call fails and no step is logged twice (on a slow disk)."""
    pytest.importorskip("tensorboard")
    import contextlib
    import threading

    from mupbench import trackers
    from mupbench.trackers import core

    written, writing, release = core.atomic_write, threading.Event(), threading.Event()

    @contextlib.contextmanager
    def slow_disk(path):
        with written(path) as f:
            yield f
            writing.set()
            release.wait(10)  # the temp file is there, not yet renamed into place
    monkeypatch.setattr(core, "atomic_write", slow_disk)
    cfg = compose([*BASE, "train.steps=30", "train.eval_every=10", "logger=tensorboard", "train.ckpt_every=10"])
    undo = crash_at(monkeypatch, SingleStepper, 15)
    with pytest.raises(KeyboardInterrupt):
        run_point(cfg, tmp_path / "killed")
    undo()
    assert writing.wait(10)  # the tracker thread is inside a ledger write
    threading.Timer(0.5, release.set).start()  # the disk answers half a second into the rerun
    with caplog.at_level("WARNING", logger="mupbench"):
        assert run_point(cfg, tmp_path / "killed")["resumed_from"] == 10
        assert trackers.flush(30)
    assert not [r for r in caplog.records if "tracker" in r.getMessage()]
    assert _tensorboard_steps(tmp_path / "tensorboard" / "killed") == [0, 10, 20, 30]


def test_a_custom_model_is_named_by_its_factory_in_the_record(tmp_path):
    """Two factories on one dataset are two setups (analysis groups by setup)."""
    from mupbench.records import summary

    cfg = compose([*BASE, "model=custom", "model.factory=examples.mlp:build", "model.base_width=16"])
    assert summary(cfg)["setup"] == "mlp_synthetic" and summary(cfg)["model"] == "custom"
    assert summary(compose(BASE))["setup"] == "mlp_synthetic"
