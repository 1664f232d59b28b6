"""CIFAR-10 (SPEC §3): the official 50,000 train images split 40,000 / 10,000 (seeded), official test.

The files are pickles, so every one is checked against the md5 of the original (torchvision's
list) before anything is unpickled, and the unpickler accepts only the numpy array classes the
originals use. ``verify: false`` skips the md5 check for a deliberately different copy (such as the
1000-image test subset); the split then keeps the same proportion, a fifth of the train pool for val.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mupbench.rules import flag
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DataError, DatasetConfig, DataSpec, Splits
from mupbench.data.download import cache_dir, check_file, digest, extract, fetch

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE, ARCHIVE_MD5 = "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
# md5 of the original files, as torchvision's CIFAR10 lists them
MANIFEST = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class Config(DatasetConfig):
    name: str = "cifar10"
    normalize: bool = False  # per-channel mean/std from the train split; the paper feeds raw 0-255
    verify: bool = True  # md5 of every local file before unpickling; false = explicit opt-out (logged)


CHECKS = {**DATA_CHECKS, "normalize": flag(), "verify": flag()}


def spec(cfg) -> DataSpec:
    return DataSpec("classification", (3, 32, 32), len(CLASSES))


def rows(cfg) -> tuple[int, int] | None:
    return (40_000, 10_000) if cfg.verify else None  # an unverified copy (a subset) may be smaller


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the globals a CIFAR batch needs, so no other pickle can run code here."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return _ArrayUnpickler(f, encoding="bytes").load()


HINT = f"dataset.root must hold {FOLDER}/ with {', '.join(MANIFEST)}"


def _download() -> Path:
    """The cache's ``cifar-10-batches-py``, verified, downloaded and extracted when needed."""
    folder = cache_dir("cifar10")
    out = folder / FOLDER
    if all((out / f).is_file() and digest(out / f, "md5") == md5 for f, md5 in MANIFEST.items()):
        return out
    try:  # torchvision's downloader when it works; it is optional and must not be needed
        from torchvision.datasets.utils import download_and_extract_archive
    except Exception:  # not installed, or broken (e.g. a CUDA/torch mismatch): the standard library does it
        archive = fetch(URL, folder / ARCHIVE, md5=ARCHIVE_MD5, root_hint=f"dataset.root=DIR holding {FOLDER}/")
        extract(archive, {f"{FOLDER}/{f}": (out / f, "md5", md5) for f, md5 in MANIFEST.items()})
        return out
    try:
        download_and_extract_archive(URL, str(folder), filename=ARCHIVE, md5=ARCHIVE_MD5)
    except Exception as e:
        raise DataError(f"could not download {ARCHIVE} from {URL} ({type(e).__name__}: "
                        f"{' '.join(str(e).split())}); put {FOLDER}/ in {folder} or set dataset.root=DIR") from None
    for f, md5 in MANIFEST.items():  # what torchvision extracted is checked like any local copy
        check_file(out / f, md5=md5, missing_hint=HINT)
    return out


def _files(cfg) -> tuple[Path, bool]:
    """The folder of batch files and whether they were verified; nothing is unpickled yet."""
    if cfg.root is None:
        return _download(), True
    folder = Path(cfg.root).expanduser() / FOLDER
    for f, md5 in MANIFEST.items():
        check_file(folder / f, md5=md5, verify=cfg.verify, missing_hint=HINT)
    return folder, cfg.verify


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    fix = "use an unmodified copy (dataset.verify=true checks every file's md5)"
    try:
        d = _unpickle(path)
        x, y = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as e:  # truncated, altered, or not a pickle at all: nothing was run (see _ArrayUnpickler)
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise DataError(f"{path} is not a CIFAR-10 batch ({reason}); {fix}") from None
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(y) != len(x) or len(y) == 0 or y.min() < 0 or y.max() >= len(CLASSES):
        raise DataError(f"{path} is not a CIFAR-10 batch (data {x.shape}, {len(y)} labels); {fix}")
    return x.reshape(-1, 3, 32, 32), y


def load(cfg, device: torch.device) -> Splits:
    folder, verified = _files(cfg)
    train = [_batch(folder / f) for f in TRAIN_FILES]
    x = torch.from_numpy(np.concatenate([b[0] for b in train]))
    y = torch.from_numpy(np.concatenate([b[1] for b in train]))
    test_x, test_y = (torch.from_numpy(a) for a in _batch(folder / "test_batch"))
    n = len(x)
    n_val = n // 5  # 10,000 of the official 50,000
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed))
    parts = [(x[i], y[i]) for i in (perm[: n - n_val], perm[n - n_val :])] + [(test_x, test_y)]
    # uint8 crosses to the device (4x less traffic), the float conversion happens there
    parts = [(px.to(device).float(), py.to(device)) for px, py in parts]
    if cfg.normalize:
        mean = parts[0][0].mean((0, 2, 3), keepdim=True)
        std = parts[0][0].std((0, 2, 3), keepdim=True)
        parts = [((px - mean) / std, py) for px, py in parts]
    info = {"source": str(folder), "md5": dict(MANIFEST) if verified else None,
            "verified": verified, "sizes": {"train": n - n_val, "val": n_val, "test": len(test_x)},
            "classes": list(CLASSES), "normalize": cfg.normalize}
    return Splits(spec(cfg), *parts, info)
