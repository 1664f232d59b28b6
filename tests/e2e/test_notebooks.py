"""End to end on real runs: a tiny real sweep through ``python -m mupbench.train -m``, the report
command on it, and both notebooks executed top to bottom (nbclient) against it."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import REPO, run_cli
from nbclient import NotebookClient

from mupbench.analysis import load_sweep
from mupbench.analysis.report import main as report_main

NOTEBOOKS = REPO / "notebooks"
GRID = {"parametrization": ["sp", "mup"], "model.width_mult": [1, 4], "optimizer.lr": [1e-3, 1e-2, 1e-1], "seed": [0, 1]}
TINY = ["train.steps=20", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu"]

pytestmark = pytest.mark.slow  # the full tier


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """2 parametrizations × 2 widths × 3 k × 2 seeds of the MLP on the default synthetic data."""
    root = tmp_path_factory.mktemp("tiny")
    sweep = root / "sweep"
    axes = [f"{k}={','.join(map(str, v))}" for k, v in GRID.items()]
    proc = run_cli(["-m", *axes, *TINY, f"hydra.sweep.dir={sweep}"], root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sweep


def test_tiny_sweep_loads(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    assert len(sweep.runs) == 2 * 2 * 3 * 2 and not sweep.problems()
    assert set(sweep.runs["setup"]) == {"mlp_synthetic"} and set(sweep.runs["width"]) == {16, 64}


def test_report_on_a_tiny_real_sweep(tiny_sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert report_main([str(tiny_sweep), "--out", str(out), "--n-boot", "20"]) == 0
    assert "24 run records: 24 completed" in capsys.readouterr().out
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    stems = ["mlp_synthetic", "mlp_synthetic_optimum"]
    assert written == {"runs.csv", "runs.parquet", "problems.txt", "seed_stats.csv", "table2.csv", "table2.md", "table2.tex",
                       "optimal_lr.csv", "transfer.csv", "transfer.md", "regret.csv", "regret.md", "basin.csv", "basin.md",
                       "basin_shift.csv", "compute.csv", "compute.md", "report.html"} | {f"figures/{s}.{e}" for s in stems for e in ("png", "pdf")}
    assert all((out / f).stat().st_size > 0 for f in written)
    assert (out / "table2.md").read_text().count("| mlp_synthetic") == 2
    verdicts = set(pd.read_csv(out / "transfer.csv")["verdict"])
    assert verdicts and verdicts <= {"transfers", "drifts", "undetermined at this resolution"}
    assert (out / "report.html").read_text().count('src="data:image/png;base64,') == 2


@pytest.mark.parametrize("name", ["analysis.ipynb", "coord_check.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def outputs_text(nb) -> str:
    data = lambda o: "".join(str(o.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/markdown"))  # noqa: E731
    return "\n".join(o.get("text", "") + data(o) for c in nb.cells for o in c.get("outputs", []))


def test_analysis_notebook_runs(tiny_sweep, monkeypatch):
    monkeypatch.setenv("MUPBENCH_SWEEP_DIRS", str(tiny_sweep))
    monkeypatch.setenv("MUPBENCH_N_BOOT", "10")
    nb = execute("analysis.ipynb")
    text = outputs_text(nb)
    assert "24 run records: 24 completed" in text
    for param in ("sp", "mup"):  # the verdict lines, one per group and metric
        assert f"mlp_synthetic {param} adam [min_val_loss]: " in text
    assert any(v in text for v in ("transfers over ζ 1–4", "drifts to", "undetermined at this resolution over ζ 1–4"))
    assert "regret [95 % CI]" in text and "within 10 %: k range (decades)" in text
    assert "mlp_synthetic: tuning at ζ = 1 took " in text and "FLOPs, tuning at every width" in text  # records carry FLOPs
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # Figures 2–5 layout, the optimum plot, the best runs' curves


def test_coord_check_notebook_runs(monkeypatch):
    monkeypatch.setenv("MUPBENCH_COORD_OVERRIDES", "dataset=synthetic train.device=cpu coord.widths=[1,4,16] coord.steps=[0,3]")
    nb = execute("coord_check.ipynb")
    text = outputs_text(nb)
    assert "mup: width-stable" in text and "sp: " in text and "grow with width" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
