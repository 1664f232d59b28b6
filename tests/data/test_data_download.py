"""download.py: verified, atomic downloads and extraction; the offline error says what to do."""

import hashlib
import io
import logging
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mupbench.data import DataError
from mupbench.data.download import cache_dir, check_file, digest, extract, fetch

REAL_SHA256 = "a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214"


@pytest.fixture
def real(shared_data):
    """A real file with a known sha256."""
    return shared_data / "california_housing" / "cal_housing.data"


def _offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path))
    assert cache_dir("x", "y") == tmp_path / "x" / "y"
    monkeypatch.delenv("MUPBENCH_DATA")
    assert cache_dir() == Path("~/.cache/mupbench").expanduser()


def test_fetch_downloads_verifies_and_then_uses_the_cache(real, monkeypatch, tmp_path):
    dest = tmp_path / "sub" / "cal_housing.data"
    assert fetch(real.as_uri(), dest, sha256=REAL_SHA256) == dest
    assert dest.read_bytes() == real.read_bytes()
    assert os.listdir(dest.parent) == ["cal_housing.data"]  # no temp file left behind
    _offline(monkeypatch)  # a verified copy in place: no network needed
    assert fetch("https://unreachable.invalid/x", dest, sha256=REAL_SHA256) == dest


def test_fetch_md5(real, tmp_path):
    md5 = hashlib.md5(real.read_bytes()).hexdigest()
    assert fetch(real.as_uri(), tmp_path / "f", md5=md5.upper()).is_file()


def test_fetch_offline_says_what_to_do(monkeypatch, tmp_path):
    _offline(monkeypatch)
    dest = tmp_path / "cal_housing.tgz"
    with pytest.raises(DataError) as e:
        fetch("https://unreachable.invalid/f", dest, sha256=REAL_SHA256, root_hint="dataset.root=DIR")
    msg = str(e.value)
    assert "\n" not in msg
    assert "could not download cal_housing.tgz from https://unreachable.invalid/f (offline?" in msg
    assert f"put a copy at {dest} or set dataset.root=DIR" in msg
    assert os.listdir(tmp_path) == []


def test_fetch_checksum_mismatch_keeps_nothing(real, tmp_path):
    dest = tmp_path / "f"
    with pytest.raises(DataError, match=f"has sha256 {REAL_SHA256}, expected 0+; it was discarded"):
        fetch(real.as_uri(), dest, sha256="0" * 64)
    assert os.listdir(tmp_path) == []


def test_fetch_replaces_a_corrupted_cached_copy(real, tmp_path, caplog):
    dest = tmp_path / "f"
    dest.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        fetch(real.as_uri(), dest, sha256=REAL_SHA256)
    assert digest(dest) == REAL_SHA256
    assert "fails its sha256 check" in caplog.text


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_verifies_each_member(tmp_path):
    archive = _tar(tmp_path / "a.tgz", {"d/good": b"good", "d/bad": b"bad"})
    good = hashlib.sha256(b"good").hexdigest()
    extract(archive, {"d/good": (tmp_path / "out" / "good", "sha256", good)})
    assert (tmp_path / "out" / "good").read_bytes() == b"good"
    with pytest.raises(DataError, match="d/bad in .* has sha256"):
        extract(archive, {"d/bad": (tmp_path / "out" / "bad", "sha256", good)})
    with pytest.raises(DataError, match="has no file d/missing"):
        extract(archive, {"d/missing": (tmp_path / "out" / "missing", "sha256", good)})
    assert os.listdir(tmp_path / "out") == ["good"]


def test_check_file(real, tmp_path, caplog):
    assert check_file(real, sha256=REAL_SHA256) == REAL_SHA256
    with pytest.raises(DataError, match="not found; put it there"):
        check_file(tmp_path / "nope", sha256=REAL_SHA256, missing_hint="put it there")
    bad = tmp_path / "bad"
    bad.write_bytes(b"x")
    with pytest.raises(DataError, match="expected a2b44dcc.*dataset.verify=false"):
        check_file(bad, sha256=REAL_SHA256)
    with caplog.at_level(logging.WARNING):
        assert check_file(bad, sha256=REAL_SHA256, verify=False) is None
    assert "without checking its sha256" in caplog.text
