"""W&B tracker, offline, read back with wandb's own reader of its ``.wandb`` transaction logs
(wandb.sdk.internal.datastore). Slow: every offline run starts wandb's service; the fast
siblings of each behaviour are the TensorBoard tests."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("wandb")
datastore = pytest.importorskip("wandb.sdk.internal.datastore")  # wandb < 0.30 (the extra pins it)

from tracker_sweeps import csv_rows, grid, point_cfg, records_only, run_dir_of, simulate  # noqa: E402
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

pytestmark = pytest.mark.slow


def read_wandb(path):
    """{'id', 'group', 'job_type', 'config', 'history': {step: {key: value}}, 'summary', 'exit'} of one .wandb file."""
    ds = datastore.DataStore()
    ds.open_for_scan(str(path))
    out = {"history": {}, "summary": {}, "config": {}}
    while (data := ds.scan_data()) is not None:
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(id=rec.run.run_id, group=rec.run.run_group, job_type=rec.run.job_type, name=rec.run.display_name)
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            out["history"][items["_step"]] = {k: v for k, v in items.items() if not k.startswith("_")}
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json) for i in rec.summary.update if i.key})
        elif kind == "exit":
            out["exit"] = rec.exit.exit_code
    return out


def wandb_runs(sweep):
    """Every offline run of the sweep, merged by run id (a resumed run writes a second run dir)."""
    runs: dict[str, dict] = {}
    for path in sorted((sweep / "wandb").glob("offline-run-*/run-*.wandb")):
        r = read_wandb(path)
        seen = runs.setdefault(r["id"], {**r, "history": {}, "files": 0})
        assert not set(seen["history"]) & set(r["history"])  # no step logged twice
        seen["history"].update(r["history"])
        seen["summary"].update(r["summary"])
        seen["files"] += 1
    return runs


def assert_run(r, run_dir, record):
    config = dict(record["config"])
    config.pop("logger")
    assert {k: v for k, v in r["config"].items() if k != "_wandb"} == config
    assert r["group"] == f"mlp_synthetic/mup/adam/ζ={record['width_mult']:g}/k={record['lr']:g}"
    assert r["job_type"] == f"mlp_synthetic/mup/adam/k={record['lr']:g}"
    rows = csv_rows(run_dir)
    assert sorted(r["history"]) == [int(x["step"]) for x in rows]
    for x in rows:
        got = r["history"][int(x["step"])]
        assert {k: got[k] for k in ("train_loss", "val_loss", "elapsed_s")} == {k: x[k] for k in ("train_loss", "val_loss", "elapsed_s")}
    assert r["summary"]["status"] == "completed" and r["summary"]["min_val_loss"] == record["min_val_loss"]


def test_one_offline_run_per_point_grouped_with_config_and_history(tmp_path):
    sweep = tmp_path / "sweep"
    members = grid(8, logger=("wandb",))  # a batched ensemble of 8 members: 8 runs
    done = [simulate(cfg, sweep) for cfg in members]
    runs = wandb_runs(sweep)
    assert len(runs) == 8
    by_title = {r["name"]: r for r in runs.values()}
    for run_dir, record in done:
        title = f"mlp_synthetic/mup/adam ζ=2 k={record['lr']:g} seed={record['seed']}"
        assert_run(by_title[title], run_dir, record)


def test_resumed_run_is_one_run_and_export_twice_adds_none(tmp_path):
    from mupbench.records import read_record
    from mupbench.trackers.export import export_sweep

    sweep = tmp_path / "sweep"
    cfg = point_cfg(logger=("wandb",))
    simulate(cfg, sweep, stop=300, finish=False)  # killed after step 300 (its W&B run is left open)
    run_dir, record = simulate(cfg, sweep, start=200)  # resumed from step 200: the same W&B run id
    others = grid(3)[1:]
    for other in others:
        records_only(other, sweep)
    assert export_sweep(sweep, "wandb").exported == 2
    assert export_sweep(sweep, "wandb").already == 3
    runs = wandb_runs(sweep)
    assert len(runs) == 3
    by_title = {r["name"]: r for r in runs.values()}
    assert by_title["mlp_synthetic/mup/adam ζ=1 k=0.001 seed=0"]["files"] == 2
    assert_run(by_title["mlp_synthetic/mup/adam ζ=1 k=0.001 seed=0"], run_dir, record)
    for other in others:
        d = run_dir_of(sweep, other)
        assert_run(by_title[f"mlp_synthetic/mup/adam ζ=2 k={other.optimizer.lr:g} seed=0"], d, read_record(d))
