"""File primitives shared by reports, weights and head files: streaming sha256, atomic replacement, and the
one JSON encoder for the non-JSON values lumamba writes.

Everything lumamba writes that a user keeps (reports, imported encoders, head files, caches) goes through
:func:`atomic_write_bytes` or :func:`atomic_copy`, so a crash, a full disk or Ctrl-C leaves either the old file
or the complete new one, never a truncated file under the final name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar

# Temporaries carry this suffix and their writer's pid (see _temporary_beside) so that
# report.sweep_temporaries can tell a killed writer's leftover from a file another process is still writing.
TMP_SUFFIX = ".lumamba-tmp"
CHUNK_BYTES = 1 << 20  # large enough to stream at disk speed, small enough to keep memory flat for any file size

_Result = TypeVar("_Result")


def sha256_file(path: str | Path, chunk: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks. OSError propagates; callers word it for their user."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the complete new file."""
    _write_atomically(Path(path), lambda handle: handle.write(data))


def atomic_copy(source: str | Path, dest: str | Path) -> str:
    """Copy ``source`` onto ``dest`` atomically, streaming; return the sha256 of the bytes actually written.

    Hashing while copying lets a caller that verified ``source`` earlier check that the file did not change
    between its verification and the copy, without reading it a third time.
    """
    source = Path(source)

    def copy_and_hash(out: BinaryIO) -> str:
        digest = hashlib.sha256()
        with source.open("rb") as src:
            while block := src.read(CHUNK_BYTES):
                digest.update(block)
                out.write(block)
        return digest.hexdigest()

    return _write_atomically(Path(dest), copy_and_hash)


def _write_atomically(path: Path, fill: Callable[[BinaryIO], _Result]) -> _Result:
    # The temporary lives in the destination folder because os.replace is only atomic within one file system.
    # It is fsynced before the rename and the folder after it, so a power cut cannot leave an empty file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            result = fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # KeyboardInterrupt included: a leftover temporary would look like an unfinished file.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return result


def _fsync_dir(folder: Path) -> None:
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms (Windows) cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def json_default(value: Any) -> Any:
    """``default=`` for json.dumps: the few non-JSON types lumamba puts in its documents (dates, paths,
    pydantic models, numpy/torch values). Anything else is an error rather than a silent ``str()``."""
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
