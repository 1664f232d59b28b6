"""mupbench.analysis.compute_savings: the compute of tuning at the base width, at every width and
through μTransfer, from the FLOPs in the records."""

from __future__ import annotations

import pytest
from sweep_factory import write_run

from mupbench import analysis as A
from mupbench.analysis.compute import compute_sentences

# FLOPs per step grow as ζ² (an MLP's hidden layer); 100 steps a run
PER_STEP = {1: 1e6, 2: 4e6, 4: 16e6}


def flops_sweep(root, lrs=(1e-3, 1e-2, 1e-1), seeds=(0, 1)):
    for zeta, per_step in PER_STEP.items():
        for lr in lrs:
            for seed in seeds:
                diverged = zeta == 4 and lr == 1e-1 and seed == 0  # stopped halfway: 50 steps
                write_run(root / f"z{zeta}_k{lr}_s{seed}", param="mup", zeta=zeta, lr=lr, seed=seed,
                          status="diverged" if diverged else "completed", flops_per_step=per_step)
    return A.load_runs(root)


def test_compute_savings(tmp_path):
    c = A.compute_savings(flops_sweep(tmp_path)).iloc[0]
    run = 100 * 1e6  # one full run at ζ = 1
    assert c["flops_tune_base"] == 6 * run  # 3 k × 2 seeds
    assert c["flops_tune_widest"] == (6 - 0.5) * 16 * run  # the diverged run stopped at step 50
    assert c["flops_tune_all"] == 6 * run + 6 * 4 * run + 5.5 * 16 * run
    assert c["flops_run_widest"] == 16 * run and c["flops_mutransfer_widest"] == 6 * run + 16 * run
    assert c["saving_widest"] == pytest.approx(88 / 22)
    assert c["flops_mutransfer_all"] == 6 * run + 4 * run + 16 * run
    assert c["saving_all"] == pytest.approx((6 + 24 + 88) / 26)
    line = compute_sentences(A.compute_savings(flops_sweep(tmp_path)))[0]
    assert line.startswith("mlp_synth: tuning at ζ = 1 took 6e+08 FLOPs") and "4× less than tuning there" in line


def test_a_recorded_total_wins_and_records_without_flops_are_skipped(tmp_path):
    write_run(tmp_path / "a", param="mup", zeta=1, flops_per_step=10, flops_total=123)
    write_run(tmp_path / "b", param="mup", zeta=2, flops_per_step=40)
    c = A.compute_savings(A.load_runs(tmp_path)).iloc[0]
    assert c["flops_tune_base"] == 123 and c["flops_tune_widest"] == 40 * 100
    write_run(tmp_path / "c", param="mup", zeta=2, seed=5)  # one record without FLOPs: no accounting
    assert A.compute_savings(A.load_runs(tmp_path)).empty
