"""MLflow tracker, read back with ``mlflow.search_runs`` on the sweep's file store. Slow: MLflow
takes seconds to import; the fast siblings of each behaviour are the TensorBoard tests."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("mlflow")

from tracker_sweeps import csv_rows, grid, point_cfg, records_only, run_dir_of, simulate  # noqa: E402

from mupbench.trackers.identity import hyperparameters  # noqa: E402

pytestmark = pytest.mark.slow


def search(sweep):
    import mlflow

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((sweep / "mlruns").resolve().as_uri())
    runs = mlflow.search_runs(experiment_names=[sweep.name], output_format="list")
    parents = [r for r in runs if r.data.tags.get("mupbench.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mupbench.kind") == "run"]
    assert len(parents) + len(children) == len(runs)
    return parents, children


def assert_run(child, run_dir, record, parent):
    from mlflow.tracking import MlflowClient

    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id  # nested under the sweep's parent
    assert child.data.tags["mupbench.run_dir"] == str(run_dir.resolve())
    assert child.data.params == {k: str(v) for k, v in hyperparameters(record["config"]).items()}
    client = MlflowClient()
    rows = csv_rows(run_dir)
    for metric in ("train_loss", "val_loss", "elapsed_s"):
        history = sorted(client.get_metric_history(child.info.run_id, metric), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(int(r["step"]), r[metric]) for r in rows]
    assert child.data.metrics["min_val_loss"] == record["min_val_loss"]
    assert child.data.tags["mupbench.status"] == "completed" and child.info.status == "FINISHED"


def test_one_nested_run_per_point_with_params_and_histories(tmp_path):
    sweep = tmp_path / "sweep"
    members = grid(8, logger=("mlflow",))  # a batched ensemble of 8 members: 8 runs
    done = [simulate(cfg, sweep) for cfg in members]
    (parent,), children = search(sweep)
    assert len(children) == 8
    by_dir = {c.data.tags["mupbench.run_dir"]: c for c in children}
    for run_dir, record in done:
        assert_run(by_dir[str(run_dir.resolve())], run_dir, record, parent)
    assert by_dir[str(done[0][0].resolve())].data.tags["mupbench.group"] == "mlp_synthetic/mup/adam/ζ=2/k=0.001"


def test_resumed_run_continues_its_run_and_export_twice_adds_none(tmp_path):
    from mupbench.trackers.export import export_sweep

    sweep = tmp_path / "sweep"
    cfg = point_cfg(logger=("mlflow",))
    simulate(cfg, sweep, stop=300, finish=False)  # killed after step 300
    run_dir, record = simulate(cfg, sweep, start=200)  # resumed from step 200
    for other in grid(3)[1:]:
        records_only(other, sweep)  # run without a logger
    assert export_sweep(sweep, "mlflow").exported == 2
    assert export_sweep(sweep, "mlflow").already == 3
    (parent,), children = search(sweep)
    assert len(children) == 3
    live = [c for c in children if c.data.tags["mupbench.run_dir"] == str(run_dir.resolve())]
    assert len(live) == 1
    assert_run(live[0], run_dir, record, parent)
    for other in grid(3)[1:]:
        d = run_dir_of(sweep, other)
        (c,) = [c for c in children if c.data.tags["mupbench.run_dir"] == str(d.resolve())]
        from mupbench.records import read_record

        assert_run(c, d, read_record(d), parent)
