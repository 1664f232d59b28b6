"""Tiny Shakespeare: GPT-2 ids, the contiguous 25,000-token val and test at the end, the token cache."""

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import requests
import tiktoken
import torch

from mupbench.data import DataError, DataSpec
from mupbench.data import tiny_shakespeare as ts

CPU = torch.device("cpu")


@pytest.fixture
def text(shared_data):
    """The folder holding the real input.txt."""
    return shared_data / "tinyshakespeare"


@pytest.fixture
def offline_tiktoken(monkeypatch, tmp_path):
    """tiktoken with no encoding loaded in this process and no network; an empty data cache."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})

    def refuse(*a, **k):
        raise requests.ConnectionError("Failed to resolve 'openaipublic.blob.core.windows.net'")

    monkeypatch.setattr(requests, "get", refuse)  # what tiktoken downloads with
    monkeypatch.setenv("MUPBENCH_DATA", str(tmp_path / "cache"))


@pytest.fixture
def bpe(shared_data, offline_tiktoken, monkeypatch, tmp_path):
    """A private copy of the BPE files (tiktoken deletes a cache file it finds corrupted)."""
    shutil.copytree(shared_data / "gpt2" / "tiktoken_cache", tmp_path / "bpe")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "bpe"))


@pytest.fixture
def tokenized(bpe, monkeypatch):
    """Counts calls of the tokenizer."""
    calls, real = [], ts.tokenize
    monkeypatch.setattr(ts, "tokenize", lambda text: (calls.append(len(text)), real(text))[1])
    return calls


def test_ids_splits_and_cache(text, tokenized, tmp_path):
    s = ts.load(ts.Config(root=str(text)), CPU)
    assert s.spec == DataSpec("lm", (128,), 50257)
    (train,), (val,), (test,) = s.train, s.val, s.test
    assert s.info["tokens"] == 338_025 and (len(train), len(val), len(test)) == (288_025, 25_000, 25_000)
    assert all(t.dtype == torch.int64 and t.dim() == 1 for t in (train, val, test))
    assert train[:5].tolist() == [5962, 22307, 25, 198, 8421]
    ids = torch.cat([train, val, test])
    assert ids.max().item() == 50255
    assert tiktoken.get_encoding("gpt2").decode(ids.tolist()) == (text / "input.txt").read_text()  # contiguous, in order
    # nanoGPT's published val split starts at character int(0.9 n): its first ids sit inside our train stream
    assert ids[301_966:301_976].tolist() == [30, 198, 198, 28934, 8895, 46, 25, 198, 10248, 2146]
    assert tokenized == [1_115_394]
    cached = Path(s.info["token_cache"])
    assert cached.parent == tmp_path / "cache" / "tiny_shakespeare" and ts.FILE_SHA256 in cached.name and "gpt2" in cached.name
    assert np.load(cached).dtype == np.uint16

    again = ts.load(ts.Config(root=str(text), context=64), CPU)
    assert tokenized == [1_115_394]  # the cache answered: no second tokenization
    assert again.spec.input_shape == (64,) and torch.equal(again.val[0], val)


def test_download_path(text, tokenized, monkeypatch, tmp_path):
    monkeypatch.setattr(ts, "URL", (text / "input.txt").as_uri())
    s = ts.load(ts.Config(), CPU)
    assert s.info["source"] == str(tmp_path / "cache" / "tiny_shakespeare" / "input.txt") and s.info["verified"]
    assert s.info["tokens"] == 338_025


def test_offline_without_a_copy(offline_tiktoken, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    with pytest.raises(DataError, match=r"could not download input.txt from .* \(offline\? offline\); put a copy at .* or set dataset.root=DIR holding input.txt"):
        ts.load(ts.Config(), CPU)


def test_empty_bpe_cache_says_what_to_do(text, offline_tiktoken, monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError) as e:
        ts.load(ts.Config(root=str(text)), CPU)
    msg = str(e.value)
    assert "\n" not in msg and "tiktoken could not load the 'gpt2' BPE files (ConnectionError; offline?)" in msg
    assert f"set TIKTOKEN_CACHE_DIR (now {tmp_path / 'empty'})" in msg
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing cached


def test_another_text_is_refused_unless_verify_false(tokenized, tmp_path, caplog):
    (tmp_path / "input.txt").write_text("First Citizen:\n" * 20_000)
    with pytest.raises(DataError, match="input.txt has sha256 .*expected 86c4e6aa"):
        ts.load(ts.Config(root=str(tmp_path)), CPU)
    s = ts.load(ts.Config(root=str(tmp_path), verify=False), CPU)
    assert not s.info["verified"] and s.info["sha256"] != ts.FILE_SHA256 and s.info["sha256"] in s.info["token_cache"]
    assert s.info["tokens"] == 80_000 and s.train[0][:4].tolist() == [5962, 22307, 25, 198]
    assert "without checking its sha256" in caplog.text
