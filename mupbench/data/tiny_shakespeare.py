"""Tiny Shakespeare (SPEC §3): GPT-2 BPE ids, the last 25,000 tokens test, the 25,000 before val.

The text is tokenized once and the ids are cached beside the download, keyed by the text's
sha256 and the encoding, so later runs (and offline ones) need neither tiktoken's BPE files nor
the tokenizer's time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mupbench.rules import flag, integer
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DataError, DatasetConfig, DataSpec, Splits
from mupbench.data.download import cache_dir, check_file, digest, fetch
from mupbench.fileio import atomic_write

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
FILE, FILE_SHA256 = "input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
ENCODING, VOCAB = "gpt2", 50257
N_VAL = N_TEST = 25_000


@dataclass
class Config(DatasetConfig):
    name: str = "tiny_shakespeare"
    context: int = 128  # tokens per training window
    verify: bool = True  # check a local copy's sha256; false = use another text anyway (logged)


CHECKS = {**DATA_CHECKS, "context": integer(ge=1, lt=N_VAL, hint="the val and test splits hold 25,000 tokens"),
          "verify": flag()}


def spec(cfg) -> DataSpec:
    return DataSpec("lm", (cfg.context,), VOCAB)


def rows(cfg) -> None:
    return None  # windows are drawn at random offsets: any batch size fits


def _text(cfg) -> tuple[Path, str]:
    """The text file to read and its sha256 (the token cache's key)."""
    if cfg.root is None:
        path = fetch(URL, cache_dir("tiny_shakespeare") / FILE, sha256=FILE_SHA256,
                     root_hint=f"dataset.root=DIR holding {FILE}")
        return path, FILE_SHA256
    path = Path(cfg.root).expanduser() / FILE
    return path, check_file(path, sha256=FILE_SHA256, verify=cfg.verify,
                            missing_hint=f"dataset.root must hold {FILE} (Tiny Shakespeare)") or digest(path)


def tokenize(text: str) -> np.ndarray:
    """GPT-2 BPE ids of ``text``; tiktoken reads its BPE files from TIKTOKEN_CACHE_DIR or the network."""
    import tiktoken

    try:
        enc = tiktoken.get_encoding(ENCODING)
    except Exception as e:  # offline without its files: requests' ConnectionError, or a hash mismatch
        where = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or "unset"
        raise DataError(
            f"tiktoken could not load the {ENCODING!r} BPE files ({type(e).__name__}; offline?); set TIKTOKEN_CACHE_DIR "
            f"(now {where}) to a folder holding them under tiktoken's cache names (sha1 of each download URL; "
            f"one online get_encoding('{ENCODING}') with the variable set fills it)"
        ) from None
    assert enc.n_vocab == VOCAB, enc.n_vocab
    return np.asarray(enc.encode_ordinary(text), dtype=np.uint16)  # ids < 50257 fit in uint16


def token_ids(path: Path, sha256: str) -> tuple[np.ndarray, Path]:
    """The ids of the text at ``path`` (whose sha256 is given), from the cache or tokenized once and cached."""
    cached = cache_dir("tiny_shakespeare") / f"{sha256}.{ENCODING}.npy"
    if cached.is_file():
        try:
            return np.load(cached), cached
        except (ValueError, OSError, EOFError):  # a damaged cache file: tokenize again, replacing it
            pass
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); use an unmodified copy "
                        f"(dataset.verify=true checks it)") from None
    ids = tokenize(text)
    with atomic_write(cached) as f:
        np.save(f, ids)
    return ids, cached


def load(cfg, device: torch.device) -> Splits:
    path, sha256 = _text(cfg)
    ids, cached = token_ids(path, sha256)
    n = len(ids)
    if n - N_VAL - N_TEST <= cfg.context:
        raise DataError(f"{path} gives {n} tokens, too few for {N_VAL} val + {N_TEST} test and a {cfg.context}-token train window")
    ids = torch.from_numpy(ids.astype(np.int64)).to(device)
    train, val, test = ids[: n - N_VAL - N_TEST], ids[n - N_VAL - N_TEST : n - N_TEST], ids[n - N_TEST :]
    info = {"source": str(path), "sha256": sha256, "verified": cfg.root is None or cfg.verify,
            "encoding": ENCODING, "tokens": n, "token_cache": str(cached),
            "sizes": {"train": len(train), "val": N_VAL, "test": N_TEST}}
    return Splits(spec(cfg), (train,), (val,), (test,), info)
