"""Getting dataset files onto disk: a cache folder, verified downloads, archive members, local copies.

A file only ever appears under its final name after its checksum matched (it is written to a
temporary file beside it, checked, then renamed), so a reader never sees a partial or corrupted
download, and nothing is parsed (or unpickled) before it was verified.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

from mupbench.data import DataError
from mupbench.fileio import atomic_write

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def cache_dir(*parts: str) -> Path:
    """``$MUPBENCH_DATA`` or ``~/.cache/mupbench``, joined with ``parts`` (not created here)."""
    base = os.environ.get("MUPBENCH_DATA") or "~/.cache/mupbench"
    return Path(base).expanduser().joinpath(*parts)


def _expected(sha256: Optional[str], md5: Optional[str]) -> tuple[str, str]:
    if (sha256 is None) == (md5 is None):
        raise ValueError("give exactly one of sha256= or md5=")
    return ("sha256", sha256.lower()) if sha256 is not None else ("md5", md5.lower())


def digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _save(chunks: Iterable[bytes], dest: Path, algo: str, want: str, what: str) -> None:
    """Stream ``chunks`` to ``dest``, which appears only if their digest is ``want``."""
    h = hashlib.new(algo)
    with atomic_write(dest) as out:
        for chunk in chunks:
            h.update(chunk)
            out.write(chunk)
        if h.hexdigest() != want:
            raise DataError(f"{what} has {algo} {h.hexdigest()}, expected {want}; it was discarded, try again")


def _read_chunks(f) -> Iterable[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def fetch(url: str, dest: Path, *, sha256: Optional[str] = None, md5: Optional[str] = None,
          root_hint: str = "dataset.root=PATH", timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless a copy that passes the checksum is there already."""
    algo, want = _expected(sha256, md5)
    if dest.is_file():
        if digest(dest, algo) == want:
            return dest
        log.warning("cached %s fails its %s check; downloading it again", dest, algo)
    log.info("downloading %s to %s", url, dest)

    def body() -> Iterable[bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                yield from _read_chunks(resp)
        except OSError as e:  # URLError, HTTPError, socket timeouts and resets
            reason = " ".join(str(getattr(e, "reason", e)).split())
            raise DataError(f"could not download {dest.name} from {url} (offline? {reason}); "
                            f"put a copy at {dest} or set {root_hint}") from None

    _save(body(), dest, algo, want, f"{dest.name} downloaded from {url}")
    return dest


def extract(archive: Path, members: dict[str, tuple[Path, str, str]]) -> None:
    """Copy archive members out of a tar file: ``{member: (dest, algo, hexdigest)}``, each verified.

    Only the named members are read, each to a path chosen here, so a hostile archive cannot
    write anywhere else.
    """
    with tarfile.open(archive) as tar:
        for name, (dest, algo, want) in members.items():
            try:
                f = tar.extractfile(name)
            except KeyError:
                f = None
            if f is None:
                raise DataError(f"{archive} has no file {name}; delete it so that it is downloaded again")
            with f:
                _save(_read_chunks(f), dest, algo, want, f"{name} in {archive}")


def check_file(path: Path, *, sha256: Optional[str] = None, md5: Optional[str] = None, verify: bool = True,
               missing_hint: str = "") -> Optional[str]:
    """Make sure a local copy exists and is the expected file; return its digest (None when not verified)."""
    algo, want = _expected(sha256, md5)
    if not path.is_file():
        raise DataError(f"{path} not found{'; ' + missing_hint if missing_hint else ''}")
    if not verify:
        log.warning("using %s without checking its %s (dataset.verify=false)", path, algo)
        return None
    got = digest(path, algo)
    if got != want:
        raise DataError(
            f"{path} has {algo} {got}, expected {want}; use an unmodified copy, or dataset.verify=false to use it anyway"
        )
    return got
