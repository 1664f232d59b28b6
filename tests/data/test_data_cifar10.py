"""CIFAR-10 from the real 1000-image subsets: layout, split, and that nothing unverified is unpickled."""

import hashlib
import logging
import os
import pickle
import shutil
import sys
import tarfile
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from mupbench.data import DataError, DataSpec
from mupbench.data import cifar10 as c

CPU = torch.device("cpu")


@pytest.fixture
def subset(shared_data):
    """The real first 1000 images of every file, in the usual layout (not the originals: verify=false)."""
    return shared_data / "cifar10" / "subset_first1000"


def _subset(subset, **kw):
    return c.load(c.Config(root=str(subset), verify=False, **kw), CPU)


@pytest.fixture
def as_original(subset, monkeypatch):
    """Pretend the subset files are the originals: the manifest lists their md5."""
    md5 = {f: hashlib.md5((subset / c.FOLDER / f).read_bytes()).hexdigest() for f in c.MANIFEST}
    monkeypatch.setattr(c, "MANIFEST", md5)
    return md5


@pytest.fixture
def unpickled(monkeypatch):
    """The files that were unpickled, in order."""
    seen, real = [], c._unpickle
    monkeypatch.setattr(c, "_unpickle", lambda path: (seen.append(path.name), real(path))[1])
    return seen


def _offline(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))


def test_subset_layout_and_pixels(subset, caplog):
    with caplog.at_level(logging.WARNING):
        s = _subset(subset)
    assert s.spec == DataSpec("classification", (3, 32, 32), 10)
    assert [len(t) for t in s.train + s.val + s.test] == [4000, 4000, 1000, 1000, 1000, 1000]  # 80/20 of 5000
    assert s.info["sizes"] == {"train": 4000, "val": 1000, "test": 1000}
    for x, y in (s.train, s.val, s.test):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
        assert 0 <= x.min() and x.max() <= 255 and torch.equal(x, x.round())  # raw 0-255, as the paper feeds it
        assert 0 <= y.min() and y.max() <= 9
    assert s.test[0][0, :, 0, :3].T.tolist() == [[158, 112, 49], [159, 111, 47], [165, 116, 51]]  # HWC
    assert s.test[1][:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(s.test[1]).tolist() == [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    assert s.test[0].mean().item() == pytest.approx(121.927, abs=1e-3)
    assert not s.info["verified"] and s.info["md5"] is None
    assert "data_batch_1 without checking its md5 (dataset.verify=false)" in caplog.text


def test_split_is_seeded_and_partitions_the_train_files(subset):
    a, b, other = _subset(subset), _subset(subset), _subset(subset, split_seed=1)
    assert torch.equal(a.val[0], b.val[0]) and not torch.equal(a.val[1], other.val[1])
    labels = np.concatenate([c._unpickle(subset / c.FOLDER / f)[b"labels"] for f in c.TRAIN_FILES])
    for s in (a, other):
        assert torch.equal(torch.cat([s.train[1], s.val[1]]).bincount(), torch.from_numpy(labels).bincount())


def test_normalize_uses_train_statistics(subset):
    x = _subset(subset, normalize=True).train[0].double()
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)


def test_files_that_differ_from_the_originals_are_refused_before_unpickling(subset, unpickled):
    with pytest.raises(DataError, match=r"data_batch_1 has md5 .*expected c99cafc152244af753f735de768cd75f.*dataset.verify=false"):
        c.load(c.Config(root=str(subset)), CPU)
    assert unpickled == []


def test_a_corrupted_copy_is_refused_before_unpickling(subset, tmp_path, as_original, unpickled):
    shutil.copytree(subset / c.FOLDER, tmp_path / c.FOLDER)
    assert c.load(c.Config(root=str(tmp_path)), CPU).info["verified"]  # the intact copy passes
    assert len(unpickled) == 6
    unpickled.clear()
    path = tmp_path / c.FOLDER / "test_batch"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one pixel byte
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        c.load(c.Config(root=str(tmp_path)), CPU)
    assert str(e.value).startswith(f"{path} has md5 ") and "\n" not in str(e.value)
    assert unpickled == []


def test_missing_file(subset, tmp_path):
    shutil.copytree(subset / c.FOLDER, tmp_path / c.FOLDER)
    (tmp_path / c.FOLDER / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3 not found; dataset.root must hold cifar-10-batches-py/"):
        c.load(c.Config(root=str(tmp_path), verify=False), CPU)


def test_unpickler_runs_no_code_even_unverified(subset, tmp_path):
    shutil.copytree(subset / c.FOLDER, tmp_path / c.FOLDER)
    marker = tmp_path / "pwned"
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / c.FOLDER / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 batch \(UnpicklingError: .* is not part of a CIFAR-10 batch\)"):
        c.load(c.Config(root=str(tmp_path), verify=False), CPU)
    assert not marker.exists()


def _archive(subset: Path, path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        tar.add(subset / c.FOLDER, arcname=c.FOLDER)
    return path


def test_download_with_the_standard_library(subset, monkeypatch, tmp_path, as_original):
    archive = _archive(subset, tmp_path / c.ARCHIVE)
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if it were not installed
    monkeypatch.setattr(c, "URL", archive.as_uri())
    monkeypatch.setattr(c, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    s = c.load(c.Config(), CPU)
    assert s.info["verified"] and s.info["source"] == str(tmp_path / "cache" / "cifar10" / c.FOLDER)
    _offline(monkeypatch)
    (tmp_path / "cache" / "cifar10" / c.ARCHIVE).unlink()  # the verified extracted files suffice now
    assert torch.equal(c.load(c.Config(), CPU).val[0], s.val[0])


def test_a_broken_torchvision_falls_back_to_the_standard_library(monkeypatch, tmp_path):
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path / "cache"))
    _offline(monkeypatch)
    with pytest.raises(DataError, match=rf"could not download {c.ARCHIVE} from {c.URL} \(offline\? offline\); put a copy at "):
        c.load(c.Config(), CPU)


def test_what_torchvision_extracts_is_verified_too(subset, monkeypatch, tmp_path, as_original, unpickled):
    calls = []

    def download_and_extract_archive(url, download_root, filename, md5):
        calls.append((url, filename, md5))
        with tarfile.open(_archive(subset, tmp_path / c.ARCHIVE)) as tar:
            tar.extractall(download_root, filter="data")
        (Path(download_root) / c.FOLDER / "test_batch").write_bytes(b"tampered")

    utils = types.ModuleType("torchvision.datasets.utils")
    utils.download_and_extract_archive = download_and_extract_archive
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.ModuleType("torchvision.datasets"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets.utils", utils)
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="test_batch has md5"):
        c.load(c.Config(), CPU)
    assert calls == [(c.URL, c.ARCHIVE, c.ARCHIVE_MD5)] and unpickled == []
