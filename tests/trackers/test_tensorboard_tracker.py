"""TensorBoard tracker, read back with TensorBoard's own event_accumulator (fast tier: the
tensorboard package imports in well under a second)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing import event_accumulator as ea  # noqa: E402
from tensorboard.plugins.hparams import metadata  # noqa: E402
from tracker_sweeps import csv_rows, grid, history, point_cfg, run_dir_of, simulate  # noqa: E402

from mupbench import trackers  # noqa: E402
from mupbench.records import write_metrics  # noqa: E402
from mupbench.trackers.core import LEDGER
from mupbench.trackers.identity import hyperparameters  # noqa: E402


def read_events(logdir):
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def tb_runs(sweep):
    return sorted(p.parent for p in (sweep / "tensorboard").rglob("events.out.tfevents.*"))


def assert_history(acc, run_dir):
    rows = csv_rows(run_dir)
    for metric in ("train_loss", "val_loss", "elapsed_s"):
        events = sorted(acc.Scalars(metric), key=lambda e: e.step)  # a resumed run's events are in a second file
        assert [e.step for e in events] == [int(r["step"]) for r in rows]  # every evaluation, once
        assert [e.value for e in events] == [float(np.float32(r[metric])) for r in rows]  # TB stores float32


def test_every_evaluation_step_with_the_metrics_csv_values_and_hparams(tmp_path):
    cfg = point_cfg(zeta=4.0, lr=3e-3, seed=1, logger=("tensorboard",))
    run_dir, record = simulate(cfg, tmp_path)
    (logdir,) = tb_runs(tmp_path)
    assert logdir == tmp_path / "tensorboard" / run_dir.name  # one dir per run under the sweep
    acc = read_events(logdir)
    assert_history(acc, run_dir)
    assert [e.step for e in acc.Scalars("lr")] == [int(r["step"]) for r in csv_rows(run_dir)]
    # the HParams plugin's session summaries: every resolved config key, and the outcome
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    expected = hyperparameters(record["config"])
    got = {k: _value(v) for k, v in start.hparams.items()}
    assert got == expected and "logger.tensorboard.enabled" not in got
    assert got["model.width_mult"] == 4.0 and got["optimizer.lr"] == 3e-3 and got["seed"] == 1
    assert start.group_name == "mlp_synthetic/mup/adam/ζ=4/k=0.003"
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == 1  # STATUS_SUCCESS
    assert acc.Scalars("final/min_val_loss")[0].value == pytest.approx(record["min_val_loss"], rel=1e-6)


def _value(v):
    kind = v.WhichOneof("kind")
    return {"bool_value": v.bool_value, "number_value": v.number_value, "string_value": v.string_value}[kind]


def test_eight_members_log_eight_runs(tmp_path):
    members = grid(8, logger=("tensorboard",))
    for cfg in members:
        simulate(cfg, tmp_path)
    runs = tb_runs(tmp_path)
    assert len(runs) == 8 and {p.name for p in runs} == {run_dir_of(tmp_path, c).name for c in members}
    for cfg in members:
        assert_history(read_events(tmp_path / "tensorboard" / run_dir_of(tmp_path, cfg).name), run_dir_of(tmp_path, cfg))


def test_killed_and_resumed_run_logs_no_step_twice(tmp_path):
    cfg = point_cfg(logger=("tensorboard",))
    simulate(cfg, tmp_path, stop=300, finish=False)  # killed after evaluating step 300...
    run_dir, _ = simulate(cfg, tmp_path, start=200)  # ...resumed from its checkpoint at step 200
    assert_history(read_events(tmp_path / "tensorboard" / run_dir.name), run_dir)
    assert json.loads((run_dir / LEDGER).read_text())[f"tensorboard:{tmp_path.resolve() / 'tensorboard'}"]["finished"]


def test_a_run_resumed_in_the_process_that_was_interrupted_logs_no_step_twice(tmp_path, monkeypatch):
    """A KeyboardInterrupt leaves the interrupted attempt's tracker calls queued; the resumed
    attempt reads the ledger only once they are done (else it re-logs what they then log too)."""
    from mupbench.trackers.tensorboard_backend import TensorBoard

    original = TensorBoard.log

    def slow(self, *a):
        time.sleep(0.2)  # a tracker slower than training: its calls queue up
        original(self, *a)

    monkeypatch.setattr(TensorBoard, "log", slow)
    cfg = point_cfg(logger=("tensorboard",))
    simulate(cfg, tmp_path, stop=300, finish=False, drain=False)  # interrupted after step 300, calls queued
    run_dir, _ = simulate(cfg, tmp_path, start=200)  # resumed at once from its checkpoint at step 200
    assert trackers.flush(30)
    assert_history(read_events(tmp_path / "tensorboard" / run_dir.name), run_dir)


def test_resume_backfills_steps_a_killed_process_never_handed_over(tmp_path):
    cfg = point_cfg(logger=("tensorboard",))
    run_dir, _ = simulate(cfg, tmp_path, stop=100, finish=False)  # its tracker got steps 0 and 100...
    write_metrics(run_dir, history(cfg)[:4])  # ...but it evaluated up to step 300 before it was killed
    simulate(cfg, tmp_path, start=400)  # resumed from a checkpoint at 400: 200 and 300 come from metrics.csv
    assert_history(read_events(tmp_path / "tensorboard" / run_dir.name), run_dir)


def test_finished_run_rerun_logs_nothing_new(tmp_path):
    cfg = point_cfg(logger=("tensorboard",))
    simulate(cfg, tmp_path)
    assert trackers.open_run(cfg, run_dir_of(tmp_path, cfg), {"fingerprint": json.loads(
        (run_dir_of(tmp_path, cfg) / LEDGER).read_text()).popitem()[1]["fingerprint"]}) is None


def test_a_failed_run_is_logged_again_when_it_is_retried(tmp_path):
    cfg = point_cfg(logger=("tensorboard",))
    run_dir, record = simulate(cfg, tmp_path, stop=200, finish=False)
    tracker = trackers.open_run(cfg, run_dir, record)
    tracker.finish({**record, "status": "failed", "error": "RuntimeError: CUDA error"})
    tracker.finish({**record, "status": "failed"})  # a second finish, or a late row, is ignored
    tracker.log_eval({"step": 300, "train_loss": 1.0, "val_loss": 1.0, "elapsed_s": 1.0})
    assert tracker.failures == []
    content = read_events(tmp_path / "tensorboard" / run_dir.name).PluginTagToContent(metadata.PLUGIN_NAME)
    assert metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG]).status == 2  # FAILURE
    simulate(cfg, tmp_path)  # the retry, from scratch: steps 0..200 are not logged twice
    assert_history(read_events(tmp_path / "tensorboard" / run_dir.name), run_dir)


def test_another_config_in_the_same_run_dir_starts_a_new_tracker_run(tmp_path):
    old = point_cfg(logger=("tensorboard",))
    run_dir, _ = simulate(old, tmp_path)
    new = point_cfg(logger=("tensorboard",))
    new.train.batch_size = 32  # another fingerprint, the same run dir
    assert simulate(new, tmp_path, stop=100, finish=False)[0] == run_dir  # killed after step 100
    acc = read_events(tmp_path / "tensorboard" / run_dir.name)
    assert [e.step for e in acc.Scalars("val_loss")] == [0, 100]  # not the old run's steps, not its metrics.csv
    start = metadata.parse_session_start_info_plugin_data(acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["train.batch_size"].number_value == 32
