"""California Housing (SPEC §3): scikit-learn's 8 features and target, split 16,640 / 2,000 / 2,000.

Read from scikit-learn's own source archive (or a local ``cal_housing.data``) rather than through
scikit-learn, so that the project does not depend on it; the features are derived with the same
arithmetic, which the tests check bit for bit against scikit-learn's frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mupbench.rules import flag
from mupbench.data import CHECKS as DATA_CHECKS
from mupbench.data import DataError, DatasetConfig, DataSpec, Splits
from mupbench.data.download import cache_dir, check_file, digest, extract, fetch

URL = "https://ndownloader.figshare.com/files/5976036"
ARCHIVE, ARCHIVE_SHA256 = "cal_housing.tgz", "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681"
MEMBER = "CaliforniaHousing/cal_housing.data"
FILE, FILE_SHA256 = "cal_housing.data", "a2b44dcc7e1c9091b43c4f458b25cbd1f7e8068d08edd26bc4703108d3fa6214"
FEATURES = ("MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude")
N_VAL = N_TEST = 2_000


@dataclass
class Config(DatasetConfig):
    name: str = "california_housing"
    standardize: bool = False  # features to zero mean / unit std with train statistics; the paper uses raw
    verify: bool = True  # check a local copy's sha256; false = use a modified file anyway (logged)


CHECKS = {**DATA_CHECKS, "standardize": flag(), "verify": flag()}
ROWS = 20_640


def spec(cfg) -> DataSpec:
    return DataSpec("regression", (len(FEATURES),), 1)


def rows(cfg) -> tuple[int, int] | None:
    return (ROWS - N_VAL - N_TEST, N_VAL) if cfg.verify else None  # an unverified copy may differ


def derive(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``fetch_california_housing`` arithmetic on the 9 raw columns (float64 in and out)."""
    raw = raw[:, [8, 7, 2, 3, 4, 5, 6, 1, 0]]
    target, x = raw[:, 0] / 100000.0, raw[:, 1:].copy()
    x[:, 2] /= x[:, 5]  # AveRooms = rooms / households
    x[:, 3] /= x[:, 5]  # AveBedrms = bedrooms / households
    x[:, 5] = x[:, 4] / x[:, 5]  # AveOccup = population / households
    return x, target


def _source(cfg) -> tuple[Path, bool]:
    """The verified ``cal_housing.data`` to read, and whether it was verified."""
    if cfg.root is not None:
        path = Path(cfg.root).expanduser() / FILE
        return path, check_file(path, sha256=FILE_SHA256, verify=cfg.verify,
                                missing_hint=f"dataset.root must hold {FILE} ({MEMBER} of {ARCHIVE})") is not None
    folder = cache_dir("california_housing")
    path = folder / FILE
    if not (path.is_file() and digest(path) == FILE_SHA256):
        archive = fetch(URL, folder / ARCHIVE, sha256=ARCHIVE_SHA256, root_hint=f"dataset.root=DIR holding {FILE}")
        extract(archive, {MEMBER: (path, "sha256", FILE_SHA256)})
    return path, True


def _read(path: Path) -> np.ndarray:
    """The 9 raw columns of ``path``; anything else (an altered, truncated or other file) is a DataError."""
    fix = "use an unmodified copy (dataset.verify=true checks it)"
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError, OSError) as e:
        reason = " ".join(str(e).split())[:200]
        raise DataError(f"{path} is not a {FILE} of comma-separated numbers ({reason}); {fix}") from None
    if raw.shape[1] != 9:
        raise DataError(f"{path} has {raw.shape[1]} columns, {FILE} has 9; {fix}")
    if not np.isfinite(raw).all() or (raw[:, 6] <= 0).any():
        raise DataError(f"{path} holds non-finite values or households ≤ 0; {fix}")
    return raw


def load(cfg, device: torch.device) -> Splits:
    path, verified = _source(cfg)
    x, y = derive(_read(path))
    n = len(x)
    if n <= N_VAL + N_TEST:
        raise DataError(f"{path} has {n} rows, too few for {N_VAL} val + {N_TEST} test rows")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.split_seed)).numpy()
    parts = np.split(perm, [n - N_VAL - N_TEST, n - N_TEST])
    if cfg.standardize:
        train_x = x[parts[0]]
        x = (x - train_x.mean(0)) / train_x.std(0)
    x, y = torch.from_numpy(x).float(), torch.from_numpy(y).float().unsqueeze(1)
    train, val, test = ((x[i].to(device), y[i].to(device)) for i in parts)
    info = {"source": str(path), "sha256": FILE_SHA256 if verified else None, "verified": verified,
            "rows": n, "sizes": {"train": len(parts[0]), "val": N_VAL, "test": N_TEST},
            "features": list(FEATURES), "standardize": cfg.standardize}
    return Splits(spec(cfg), train, val, test, info)
