"""Bad input through the real console entrypoint, in a subprocess, exactly as a user types it:
exit status 2, one stderr line ``mupbench: error: <key>: ...``, no traceback, nothing written.
(The other bad inputs run in-process: tests/test_cli.py.)"""

from __future__ import annotations

import pytest

from conftest import TINY

pytestmark = pytest.mark.slow  # the full tier: a Python process per command


def one_line(out) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("mupbench: error: "), out.stderr
    return lines[0]


@pytest.mark.parametrize("args, key", [
    (["optimizer.betas=[0.9]"], "optimizer.betas"),
    (["-m", "model.width_mult=1,2,0.5", "seed=0,1"], "model.width_mult"),
])
def test_bad_value_one_line_nothing_written(cli, tmp_path, args, key):
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags go before the overrides
    assert one_line(cli(*flags, *TINY, *(a for a in args if a not in flags))).startswith(f"mupbench: error: {key}: ")
    assert not list(tmp_path.rglob("*"))


def test_run_dir_under_a_file(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    assert one_line(cli(*TINY, "hydra.run.dir=file/run")).startswith("mupbench: error: hydra.run.dir: cannot write file/run")
    assert [p.name for p in tmp_path.rglob("*")] == ["file"]
