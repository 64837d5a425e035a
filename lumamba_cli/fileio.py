"""File primitives shared by reports, weights, head files and caches: streaming sha256 (with a cache keyed by
path, size and modification time), atomic replacement, the sweep of a killed writer's temporaries, and the one
JSON encoder for the non-JSON values lumamba writes.

Everything lumamba writes that a user keeps (reports, imported encoders, head files, caches, checkpoints) goes
through :func:`atomic_write`, :func:`atomic_write_bytes` or :func:`atomic_copy`, so a crash, a full disk or Ctrl-C
leaves either the old file or the complete new one, never a truncated file under the final name.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, TypeVar

from lumamba_cli.errors import OutputError
from lumamba_cli.resources import cache_dir

# Temporaries carry this suffix and their writer's pid (see _write_atomically) so that sweep_temporaries can tell
# a killed writer's leftover from a file another process is still writing.
TMP_SUFFIX = ".lumamba-tmp"
NAME_MAX = 255  # bytes in one file name on every file system lumamba writes to (ext4, xfs, btrfs, APFS, NTFS)
CHUNK_BYTES = 1 << 20  # large enough to stream at disk speed, small enough to keep memory flat for any file size
_SHA_CACHE_ENTRIES = 2048  # recordings of a large run, weights; the file stays well under a megabyte

_Result = TypeVar("_Result")
# mkstemp creates 0600 files; what lumamba keeps gets the permissions any other program's file would (0666 less
# the umask), so colleagues on a shared server can read reports. Read once, at import: os.umask can only be read
# by setting it, which must not race with other threads.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK
_sha_memo: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def sha256_file(path: str | Path, *, cached: bool = False) -> str:
    """Hex sha256 of a file, streamed. ``cached`` reuses a digest computed earlier for the same resolved path,
    size and modification time (in this process, or recorded in ``<cache>/sha256.json`` by an earlier one), so
    re-checking a 17 MB encoder or a 1 GB recording on every run costs a ``stat``. Without it the file is always
    read, and a stale record of it is corrected (nothing new is recorded). OSError propagates; callers word it for
    their user."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if cached:
        with _sha_lock:
            if key in _sha_memo:
                return _sha_memo[key]
            hit = _read_sha_cache().get(key[0])
        if isinstance(hit, list) and len(hit) == 3 and hit[0] == key[1] and hit[1] == key[2]:
            with _sha_lock:
                _sha_memo[key] = str(hit[2])
            return str(hit[2])
    digest = _sha256_stream(path)
    with _sha_lock:
        _sha_memo[key] = digest
        stored = _read_sha_cache()
        if cached or (key[0] in stored and stored[key[0]] != [key[1], key[2], digest]):
            stored.pop(key[0], None)
            stored[key[0]] = [key[1], key[2], digest]
            _write_sha_cache(stored)
    return digest


def _sha256_stream(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _sha_cache_path() -> Path:
    return cache_dir() / "sha256.json"


def _read_sha_cache() -> dict[str, list]:
    try:
        data = json.loads(_sha_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs a recomputation
    return data if isinstance(data, dict) else {}


def _write_sha_cache(cache: dict[str, list]) -> None:
    if len(cache) > _SHA_CACHE_ENTRIES:
        cache = dict(list(cache.items())[-_SHA_CACHE_ENTRIES:])
    try:
        atomic_write_bytes(_sha_cache_path(), json.dumps(cache, indent=0).encode("utf-8"))
    except OutputError:
        pass  # read-only home: the cache is an optimisation only


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the complete new file."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write(path: str | Path, fill: Callable[[BinaryIO], _Result]) -> _Result:
    """Let ``fill`` write into a temporary beside ``path``, then put it in place atomically; returns what
    ``fill`` returns. For files too large to hold in memory (window caches) or written by a library (torch.save)."""
    return _write_atomically(Path(path), fill)


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


# The writer's host joins its pid in a temporary's name: on a shared file system the shards of a job array write
# into one folder from many machines, and a pid says nothing about a process on another host.
_HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0])[:32] or "host"
# Another host's temporary is a leftover once it is this old: writing one report never takes a day.
STALE_REMOTE_S = 24 * 3600


def temporary_prefix(name: str, limit: int = NAME_MAX) -> str:
    """The start of a temporary's name for ``name``: the name itself, shortened so that prefix, host and pid,
    mkstemp's 8 random characters and the suffix fit the file system's name limit whenever ``name`` itself does."""
    writer = f".{_HOST}_{os.getpid()}."
    room = limit - len(writer.encode()) - 8 - len(TMP_SUFFIX) - 1
    encoded = name.encode("utf-8", "surrogateescape")[: max(room, 1)]
    return "." + encoded.decode("utf-8", "ignore") + writer


def _write_atomically(path: Path, fill: Callable[[BinaryIO], _Result]) -> _Result:
    # The temporary lives in the destination folder because os.replace is only atomic within one file system.
    # It is fsynced before the rename and the folder after it, so a power cut cannot leave an empty file.
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=TMP_SUFFIX, dir=path.parent)
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            result = fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        # KeyboardInterrupt included: a leftover temporary would look like an unfinished file.
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise output_error(exc, path) from None
        raise
    _fsync_dir(path.parent)
    return result


def output_error(exc: OSError, path: Path) -> OutputError:
    """The one-line refusal for a result that cannot be written (exit 8), naming the path and the real cause."""
    reasons = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large for this file system",
               errno.ENAMETOOLONG: "file name too long", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system",
               errno.EDQUOT: "disk quota exceeded", errno.ENOTDIR: "a path component is a file, not a folder",
               errno.EEXIST: "a path component exists and is not a folder",
               errno.ELOOP: "is a symbolic link (never followed)", errno.EISDIR: "is a folder"}
    return OutputError(f"cannot write: {reasons.get(exc.errno, exc.strerror or str(exc))}", path=path)


def sweep_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed lumamba process left in ``folder``: this host's whose writer pid is
    gone, and other hosts' older than a day (their writers may still be running on a shared file system)."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for candidate in folder.rglob(f".*{TMP_SUFFIX}"):
        parts = candidate.name[: -len(TMP_SUFFIX)].rsplit(".", 2)
        host, _, pid = parts[1].rpartition("_") if len(parts) == 3 else ("", "", "")
        if host == _HOST and pid.isdigit():
            if int(pid) != os.getpid() and _pid_alive(int(pid)):
                continue
        elif host:
            try:
                if time.time() - candidate.lstat().st_mtime < STALE_REMOTE_S:
                    continue
            except OSError:
                continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def write_json(path: str | Path, data: Any, *, indent: int | None = 1) -> Path:
    """A JSON document written atomically (UTF-8, NaN refused: JSON has no NaN)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return Path(path)


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
