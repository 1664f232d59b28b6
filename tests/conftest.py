"""Shared fixtures: the real config composed and shrunk for tests, the real CLI in a subprocess,
and the shared real data files (../shared/data beside the repo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MUPBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    """The SLURM tests belong to the full tier (they need the local cluster: .ci/run starts it),
    and run one after another in one worker under ``-n 2`` (they share the one cluster's queue)."""
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real dataset files; in CI (CI=true) their absence is a failure, not a skip."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATA} is missing: CI must have ../shared/data beside the repo")
        pytest.skip(f"real data not found at {SHARED_DATA} (set MUPBENCH_SHARED_DATA)")
    return SHARED_DATA


def run_cli(args: list[str], cwd: Path, module: str = "mupbench.train", timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a mupbench entrypoint exactly as a user would, in ``cwd`` (runs land in cwd/outputs)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path):
    """``cli(*args)`` runs ``python -m mupbench.train *args`` inside tmp_path."""
    return lambda *args, **kw: run_cli(list(args), tmp_path, **kw)


TINY = ["train.steps=30", "train.eval_every=10", "train.eval_batches=2", "train.device=cpu"]


@pytest.fixture
def tiny_cfg():
    """The real config, composed as the CLI would and shrunk to a few steps."""
    from mupbench.config import compose

    return lambda *overrides: compose([*TINY, *overrides])


def train_single(run, run_dir=None, fingerprint=""):
    """One assembled run through the loop as the lifecycle trains it (one member, no records)."""
    from mupbench.training.loop import Member, train
    from mupbench.training.single import SingleStepper

    return train(SingleStepper(run), [Member(run_dir, fingerprint)], run.cfg.train)[0]


def train_stacked(runs, forward="auto"):
    """Assembled runs of one group as one stacked ensemble: (their Outcomes, the stepper)."""
    from mupbench.training.loop import Member, train
    from mupbench.training.stacked import StackedStepper

    stepper = StackedStepper(runs, forward=forward)
    return train(stepper, [Member(None) for _ in runs], runs[0].cfg.train), stepper


# MKL's batched matmuls (bmm, and vmap's batching of mm/conv) sum in another order than the
# single run's mm for some shapes and steps: on CPU members agree with their single runs to ~5e-7
RTOL = 1e-5


def cfgs(base: list[str], points: list[tuple[int, float]], *extra: str):
    """Composed configs of one group: ``points`` are (seed, k)."""
    from mupbench.config import compose

    return [compose([*base, *extra, f"seed={s}", f"optimizer.lr={lr}"]) for s, lr in points]


def assert_same_run(a, b, rtol=RTOL):
    """Two Outcomes are the same run: status, steps, and every evaluation to ``rtol``."""
    import pytest

    assert (a.status, a.diverged_step, a.steps_done) == (b.status, b.diverged_step, b.steps_done)
    assert [h["step"] for h in a.history] == [h["step"] for h in b.history]
    for ha, hb in zip(a.history, b.history):
        for key in ("train_loss", "val_loss"):
            assert ha[key] == pytest.approx(hb[key], rel=rtol, nan_ok=True), (ha["step"], key)
