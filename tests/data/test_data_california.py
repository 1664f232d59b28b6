"""California Housing: scikit-learn's features from the real file, the seeded 16,640/2,000/2,000 split."""

import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from mupbench.data import DataError, DataSpec
from mupbench.data import california_housing as ch
from mupbench.data.download import digest

CPU = torch.device("cpu")


@pytest.fixture
def root(shared_data):
    return shared_data / "california_housing"


def _load(root, **kw):
    return ch.load(ch.Config(root=str(root), **kw), CPU)


def test_features_equal_scikit_learns_frame(root):
    x, y = ch.derive(np.loadtxt(root / "cal_housing.data", delimiter=","))
    frame = np.loadtxt(root / "california_housing.csv", delimiter=",", skiprows=1)
    assert (root / "california_housing.csv").read_text().splitlines()[0].split(",") == [*ch.FEATURES, "MedHouseVal"]
    np.testing.assert_array_equal(x, frame[:, :8])  # bit for bit
    np.testing.assert_array_equal(y, frame[:, 8])


def test_load_raw(root):
    s = _load(root)
    assert s.spec == DataSpec("regression", (8,), 1)
    assert [t.shape for t in s.train + s.val + s.test] == [(16640, 8), (16640, 1), (2000, 8), (2000, 1), (2000, 8), (2000, 1)]
    assert all(t.dtype == torch.float32 and t.device == CPU for t in s.train + s.val + s.test)
    x, y = (torch.cat(parts).double() for parts in zip(s.train, s.val, s.test))
    assert len(x) == 20640
    assert abs(y.mean().item() - 2.068558) < 1e-4
    assert abs(x[:, 0].mean().item() - 3.870671) < 1e-4
    assert y.max().item() == pytest.approx(5.00001) and x[:, 4].max().item() == 35682  # raw, not standardised
    assert s.info["verified"] and s.info["sha256"] == ch.FILE_SHA256 and s.info["sizes"]["train"] == 16640


def test_split_is_fixed_by_split_seed(root):
    a, b, c = _load(root, split_seed=0), _load(root, split_seed=0), _load(root, split_seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a.train + a.val + a.test, b.train + b.val + b.test))
    assert not torch.equal(a.val[1], c.val[1])
    # the three splits partition the rows: the sorted targets are the same whichever the seed
    assert torch.equal(torch.cat([a.train[1], a.val[1], a.test[1]]).sort(0).values,
                       torch.cat([c.train[1], c.val[1], c.test[1]]).sort(0).values)


def test_standardize_uses_train_statistics(root):
    raw, s = _load(root), _load(root, standardize=True)
    x = s.train[0].double()
    torch.testing.assert_close(x.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(0, correction=0), torch.ones(8, dtype=torch.float64), atol=1e-5, rtol=0)
    assert abs(s.val[0].double().mean().item()) > 1e-3  # val is mapped with train statistics, not its own
    assert torch.equal(s.train[1], raw.train[1])  # the target stays raw


def test_root_with_another_file_is_refused(root, tmp_path):
    (tmp_path / "cal_housing.data").write_bytes((root / "cal_housing.data").read_bytes().replace(b"\n", b"\r\n"))
    with pytest.raises(DataError, match=r"cal_housing.data has sha256 .*expected a2b44dcc"):
        ch.load(ch.Config(root=str(tmp_path)), CPU)
    s = ch.load(ch.Config(root=str(tmp_path), verify=False), CPU)  # explicit opt-out
    assert not s.info["verified"] and s.info["rows"] == 20640


def test_root_without_the_file(tmp_path):
    with pytest.raises(DataError, match="cal_housing.data not found; dataset.root must hold cal_housing.data"):
        ch.load(ch.Config(root=str(tmp_path)), CPU)


def test_offline_without_a_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(DataError) as e:
        ch.load(ch.Config(), CPU)
    assert str(e.value) == (f"could not download cal_housing.tgz from {ch.URL} (offline? offline); put a copy at "
                            f"{tmp_path / 'california_housing' / 'cal_housing.tgz'} or set dataset.root=DIR holding cal_housing.data")


def test_download_path_extracts_and_caches(root, monkeypatch, tmp_path):
    archive = tmp_path / "src" / "cal_housing.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "cal_housing.data", arcname=ch.MEMBER)
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(ch, "URL", archive.as_uri())
    monkeypatch.setattr(ch, "ARCHIVE_SHA256", digest(archive))
    s = ch.load(ch.Config(), CPU)
    cached = tmp_path / "cache" / "california_housing" / "cal_housing.data"
    assert s.info["source"] == str(cached) and digest(cached) == ch.FILE_SHA256
    archive.unlink()  # the extracted, verified copy is enough from now on
    assert torch.equal(ch.load(ch.Config(), CPU).test[0], s.test[0])
