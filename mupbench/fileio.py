"""Atomic file writes: a reader sees the old file or the whole new one, never a torn one."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

# what torch.save's zip writer raises when the disk is full or the file cannot be written
_TORCH_WRITE_FAILURES = ("inline_container", "PytorchStreamWriter")


class WriteError(OSError):
    """A file could not be written (disk full, no permission, a dir gone): one line saying which
    and what to do; the CLI prints it as it is."""


@contextmanager
def atomic_write(dest: Path) -> Iterator[BinaryIO]:
    """A temp file beside ``dest``, renamed over ``dest`` only if the block succeeds (removed if
    not). A failure to write (ENOSPC, EACCES, torch's zip writer failing) is a WriteError."""
    dest = Path(dest)
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(f"cannot write {dest}: {e.strerror or e}; free space there or choose another directory "
                         f"(hydra.run.dir / hydra.sweep.dir)") from e
    except RuntimeError as e:
        if not any(marker in str(e) for marker in _TORCH_WRITE_FAILURES):
            raise
        raise WriteError(f"cannot write {dest}: {str(e).splitlines()[0]} (disk full?); free space there or choose "
                         f"another directory (hydra.run.dir / hydra.sweep.dir)") from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
