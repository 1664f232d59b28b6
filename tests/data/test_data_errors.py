"""A local copy that is not the dataset (dataset.verify=false with an altered, truncated or other
file) is one DataError line that says what to do, never a traceback from numpy or pickle."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mupbench.data import DataError
from mupbench.data import california_housing as ch
from mupbench.data import cifar10 as c
from mupbench.data import tiny_shakespeare as ts

CPU = torch.device("cpu")
ROW = "-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0"


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def california(tmp_path, text: str) -> DataError:
    (tmp_path / ch.FILE).write_text(text)
    with pytest.raises(DataError) as e:
        ch.load(ch.Config(root=str(tmp_path), verify=False), CPU)
    return e


@pytest.mark.parametrize("text, says", [
    ("\n".join([",".join(ROW.split(",")[:8])] * 5000), "has 8 columns, cal_housing.data has 9"),  # a column dropped
    ("\n".join([ROW] * 4999 + [ROW[:20]]), "is not a cal_housing.data of comma-separated numbers"),  # truncated mid-row
    ("\n".join([ROW.replace("8.3252", "high")] * 5000), "is not a cal_housing.data of comma-separated numbers"),  # a word
    ("\n".join([ROW.replace("126.0", "0.0")] * 5000), "households ≤ 0"),  # division by zero households
    ("\n".join([ROW + ",1.0"] * 5000), "has 10 columns"),
])
def test_california_altered_file(tmp_path, text, says):
    line = one_line(california(tmp_path, text))
    assert says in line and "dataset.verify=true" in line and str(tmp_path) in line


def test_california_too_few_rows(tmp_path):
    assert "too few for 2000 val + 2000 test rows" in one_line(california(tmp_path, "\n".join([ROW] * 100)))


def cifar_copy(tmp_path, first: bytes) -> pytest.ExceptionInfo:
    folder = tmp_path / c.FOLDER
    folder.mkdir()
    for name in c.MANIFEST:
        (folder / name).write_bytes(b"")
    (folder / "data_batch_1").write_bytes(first)
    with pytest.raises(DataError) as e:
        c.load(c.Config(root=str(tmp_path), verify=False), CPU)
    return e


GOOD = pickle.dumps({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 10}, protocol=4)


@pytest.mark.parametrize("first, says", [
    (GOOD[: len(GOOD) // 2], "is not a CIFAR-10 batch (UnpicklingError"),  # truncated
    (b"", "is not a CIFAR-10 batch (EOFError"),  # empty
    (bytes(range(256)) * 10, "is not a CIFAR-10 batch ("),  # random bytes
    (pickle.dumps({b"pixels": 1}, protocol=4), "is not a CIFAR-10 batch (KeyError"),  # another dict
    (pickle.dumps([1, 2, 3], protocol=4), "is not a CIFAR-10 batch (TypeError"),  # not a dict
    (pickle.dumps({b"data": np.zeros((10, 100), np.uint8), b"labels": [0] * 10}, protocol=4), "data (10, 100)"),  # wrong shape
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 99]}, protocol=4), "2 labels"),  # label 99
])
def test_cifar_altered_batch(tmp_path, first, says):
    line = one_line(cifar_copy(tmp_path, first))
    assert "data_batch_1" in line and says in line and "dataset.verify=true" in line


def test_tiny_shakespeare_not_text(tmp_path, monkeypatch):
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path / "cache"))
    (tmp_path / ts.FILE).write_bytes(b"\xff\xfe not utf-8 \x80")
    with pytest.raises(DataError) as e:
        ts.load(ts.Config(root=str(tmp_path), verify=False), CPU)
    assert "is not UTF-8 text" in one_line(e) and "dataset.verify=true" in str(e.value)
