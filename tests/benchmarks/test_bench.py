"""The benchmark's code paths, run tiny: the step-time measurement, the GPU table's code on a CPU,
the reference loop, and the command's clean skip of the GPU part without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from benchmarks import run as bench
from benchmarks.reference import Reference
from mupbench.config import compose
from mupbench.data import load_splits

REPO = bench.REPO

pytestmark = pytest.mark.slow  # the full tier


def test_step_measurement_and_report():
    row = bench.measure_steps("mlp", 1, reps=1, target_s=0.02, threads=1)
    assert row["steps_per_rep"] >= 10 and row["reps"] == 1
    for key in ("reference", "sp", "mup"):
        assert row["steps_per_s"][key] > 0 and row["cpu_step_ms"][key] > 0
    assert row["ratio_mup_vs_sp"] > 0 and row["peak_mem_mb"] >= 0
    text = bench.report({"steps": [row]})
    assert "mlp/" in text and "μP/SP" in text
    assert len(bench.targets({"steps": [row]})) == 4  # ≤ 1.0× reference and μP ≤ 1.02× SP, by wall and by CPU time


def test_reference_loop_evaluates_as_spec_section_4():
    cfg = compose(["train.device=cpu", "train.eval_every=10", "train.eval_batches=2"])
    ref = Reference.from_config(cfg, load_splits(cfg.dataset, torch.device("cpu")))
    assert type(ref.optimizer) is torch.optim.Adam and ref.optimizer.defaults["foreach"] is None  # PyTorch's defaults
    history = ref.train(25)
    assert [h[0] for h in history] == [0, 10, 20, 25]
    assert all(h[1] > 0 and h[2] > 0 for h in history)


def test_reference_with_axes_is_adamw_under_the_same_schedule():
    """--axes: the reference decays with torch.optim.AdamW and follows the run's s(t) through LambdaLR."""
    from mupbench.schedules import multiplier

    cfg = compose(["train.device=cpu", "train.eval_every=10", "train.eval_batches=1", *bench.AXES])
    ref = Reference.from_config(cfg, load_splits(cfg.dataset, torch.device("cpu")))
    assert type(ref.optimizer) is torch.optim.AdamW and ref.optimizer.defaults["weight_decay"] == 0.1
    seen = []
    ref.optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"]))
    ref.train(40)
    s = multiplier(cfg.schedule, 40)
    assert seen == pytest.approx([cfg.optimizer.lr * s(t) for t in range(40)], rel=1e-12)
    row = bench.measure_steps("mlp", 1, reps=1, target_s=0.02, threads=1, axes=True)
    assert row["axes"] == bench.AXES and "with schedule=cosine" in bench.report({"steps": [row]})


def test_gpu_table_code_runs_small_on_cpu(monkeypatch):
    monkeypatch.setattr(bench, "lm_data", lambda: (["dataset=synthetic_tokens", "dataset.n_train=5000"], "synthetic_tokens"))
    monkeypatch.setattr(bench, "SETUPS", {k: v for k, v in bench.SETUPS.items() if k in ("mlp", "transformer")})
    out = bench.measure_gpu(True, device="cpu", widths={"mlp": 2, "transformer": 1}, lm_zeta=1, grid=((1,), (1e-3,), 2))
    assert [(r["setup"], r["width_mult"]) for r in out["rows"]] == [("mlp", 1), ("mlp", 2), ("transformer", 1), ("transformer", 1)]
    assert out["transformer_bf16"]["tflops"] > 0
    (b,) = out["mlp_batched_vs_single"]
    assert b["members"] == 2 and b["speedup"] > 0
    assert "TFLOP/s" in bench.report({"gpu": out})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_gpu_part_skips_cleanly_without_cuda(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--parts", "gpu", "--out", str(tmp_path / "r.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "GPU table: skipped — no CUDA device" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["gpu"]["skipped"].startswith("no CUDA device")


def test_grid_part_runs_small_and_counts_every_run(monkeypatch):
    """The grid part end to end on a tiny slice: every approach really runs (subprocesses through
    the entrypoint, the reference script, the batched launcher), (c) trains every run of the
    slice, and runs/hour are the runs over the measured or scaled hours."""
    import argparse

    monkeypatch.setattr(bench, "GRID_ZETAS", (1,))
    monkeypatch.setattr(bench, "GRID_KS", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2))
    monkeypatch.setattr(bench, "GRID_SEEDS", 2)
    monkeypatch.setattr(bench, "GRID_STEPS", 20)
    monkeypatch.setattr(bench, "mlp_data", lambda: ["dataset=synthetic", "train.eval_every=10"])
    args = argparse.Namespace(quick=False, device="cpu", grid_threads=1, flush_denormal=True, threads=1)
    g = bench.part_grid(args)
    rows = g["rows"]
    assert set(rows) == {"ref_process_per_run", "a_process_per_run", "ref_back_to_back", "b_back_to_back", "c_batched"}
    c = rows["c_batched"]
    assert c["how"] == "measured" and c["by_zeta"][1]["statuses"] == {"completed": 10}
    assert c["by_zeta"][1]["members"] == [10] and 0 < c["by_zeta"][1]["train_s"] < c["seconds"]
    for row in rows.values():
        assert row["runs_per_hour"] == pytest.approx(10 / row["hours"])
    assert rows["a_process_per_run"]["x_vs_a"] == 1.0
    assert g["by_zeta"][1]["c_x_vs_a"] == pytest.approx(g["by_zeta"][1]["a_s_per_run"] / g["by_zeta"][1]["c_s_per_run"])
    text = bench.report({"grid": g})
    assert "(c) batched ensembles" in text and "denormals flushed" in text
    assert bench.targets({"grid": g})[0].startswith("MLP grid slice ≥ 30×")
