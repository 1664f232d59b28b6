"""The training progress display: a bar with ETA on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import io
import logging

import pytest

from mupbench.trackers.progress import Progress, fmt_eta


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _auto(monkeypatch):
    monkeypatch.delenv("MUPBENCH_PROGRESS", raising=False)


def test_a_terminal_gets_a_live_bar_with_rate_and_eta_and_no_log_lines(caplog):
    pytest.importorskip("tqdm")
    caplog.set_level(logging.INFO, "mupbench")
    screen = Terminal()
    with Progress(400, 100, members=8, stream=screen) as progress:
        assert progress.bar is not None
        for step in range(100, 401, 100):
            progress.advance(step)
            progress.eval(step, [1.0] * 8, [0.5 + i for i in range(8)])
    text = screen.getvalue()
    assert "train (8 members)" in text and "400/400" in text and "8 members  median val 4.5" in text
    assert "<" in text and ("step/s" in text or "s/step" in text)  # tqdm's elapsed<remaining and its rate
    assert not [r for r in caplog.records if r.getMessage().startswith("step ")]


def test_elsewhere_log_lines_first_last_and_at_most_one_per_interval(caplog):
    caplog.set_level(logging.INFO, "mupbench")
    progress = Progress(400, 0, log_every_s=1e9, stream=io.StringIO())  # a file, as under SLURM
    assert progress.bar is None
    for step in range(0, 401, 100):
        progress.eval(step, [1.25], [1.5])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("step 0/400  train 1.25  val 1.5") and lines[1].startswith("step 400/400")
    assert lines[1].endswith("ETA 0:00:00")


def test_every_evaluation_logged_when_the_interval_is_zero_and_the_env_forces_lines(caplog, monkeypatch):
    monkeypatch.setenv("MUPBENCH_PROGRESS", "log")
    caplog.set_level(logging.INFO, "mupbench")
    progress = Progress(300, 0, log_every_s=0, stream=Terminal())
    assert progress.bar is None
    for step in (0, 100, 200, 300):
        progress.eval(step, [1.0, 2.0], [3.0, float("nan")])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("2 members  median val 3" in line for line in lines)


def test_fmt_eta():
    assert fmt_eta(3725.9) == "1:02:05" and fmt_eta(float("nan")) == "?" and fmt_eta(float("inf")) == "?"
