"""Folders of recordings: discovery, the run manifest, resuming, failure isolation and pipelining.

The per-file work is split in two callables so that decoding and preprocessing (``produce``: NumPy/MNE, mostly
outside the GIL) of the next recording overlaps the model on the current one (``consume``):

* ``produce(found) -> Iterator[item]`` runs in a producer thread (``jobs == 1``, items stream through a bounded
  queue, so memory does not grow with recording length) or in worker processes (``jobs > 1``, each worker
  returns one recording's items as a list; at most ``jobs + 1`` recordings are in flight).
* ``consume(found, items) -> FileResult`` runs in the main thread (the model, report writing).

One failing file is recorded in ``manifest.jsonl`` and never stops the others.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import errno
import fnmatch
import hashlib
import json
import multiprocessing
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from lumamba_cli import DISCLAIMER
from lumamba_cli.errors import BadInputError, ExitCode, LumambaError, OutputError
from lumamba_cli.fileio import NAME_MAX, atomic_write, atomic_write_bytes, output_error, sweep_temporaries
from lumamba_cli.report import SCHEMA_VERSION

try:  # optional: Parquet summaries beside the CSV
    import pyarrow  # noqa: F401

    _HAS_PYARROW = True
except ImportError:
    _HAS_PYARROW = False

RECORDING_SUFFIXES = {".edf", ".bdf"}
MANIFEST_NAME = "manifest.jsonl"
DEFAULT_OUT_NAME = "lumamba"


# ----------------------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class FoundRecording:
    """A recording to process and where its reports go (``out_dir / stem`` + ``.<task>.…``)."""

    path: Path  # as walked (a symbolic link stays a link: reports are named after it, not its target)
    out_dir: Path
    stem: str
    explicit: bool  # named on the command line (not found by walking a folder)
    problem: str | None = None  # why it cannot be processed (a broken or escaping link): a failed entry


def default_out_dir(path: Path) -> Path:
    """Reports go to a ``lumamba/`` folder beside a file, or inside a folder that is walked."""
    return (path if path.is_dir() else path.parent) / DEFAULT_OUT_NAME


def find_recordings(paths: Sequence[str | Path], glob: str | None = None, out: str | Path | None = None, *,
                    files_from: Sequence[str | Path] = ()) -> list[FoundRecording]:
    """Expand files and folders into recordings, in a deterministic order.

    Folders are walked recursively for ``.edf``/``.bdf`` in any letter case (``--glob`` narrows that, matched
    against the path relative to the folder and against the file name); report folders and hidden folders are not
    entered. Files named explicitly (or listed in ``files_from``) are taken whatever their extension: the reader
    decides whether they are EDF/BDF. Symbolic links are followed only to read and to de-duplicate: a recording is
    named by the path it was found at. A link that is broken, loops, or leaves the walked folder (and the git or
    DataLad repository it sits in, whose annexed files live in ``.git/annex``) is one failed entry, never an abort.
    """
    found: list[FoundRecording] = []
    seen: set[Path] = set()
    out_root = Path(out).absolute() if out is not None else None
    listed = len(paths)
    for index, raw in enumerate([*paths, *files_from]):
        path = Path(os.path.abspath(Path(raw).expanduser()))
        from_list = index >= listed  # one stale line of a 10,000-line list is a failed entry, not an abort
        if not os.path.lexists(path):
            if not from_list:
                raise BadInputError("no such file or folder", path=path)
            found.append(FoundRecording(path, out_root or default_out_dir(path), path.stem, explicit=False,
                                        problem="no such file (listed in --files-from)"))
            continue
        if path.is_dir():
            target = out_root or default_out_dir(path)
            for file, problem in _walk(path, glob, skip={_real(target), _real(path / DEFAULT_OUT_NAME)}):
                real = _real(file)
                if problem is None and real in seen:
                    continue
                seen.add(real)
                stem = file.relative_to(path).with_suffix("").as_posix()
                found.append(FoundRecording(file, target, stem, explicit=False, problem=problem))
        else:
            real = _real(path)
            if real in seen:
                continue
            seen.add(real)
            target = out_root or default_out_dir(path)
            found.append(FoundRecording(path, target, path.stem, explicit=not from_list,
                                        problem=_link_problem(path, None)))
    return _disambiguate(found)


def read_file_list(source: str) -> list[str]:
    """``--files-from``: one path per line of a file, or of standard input for ``-``; blank lines and ``#``
    comments are skipped."""
    import sys

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read the file list: {exc}", path=source) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _real(path: Path) -> Path:
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError):  # a loop: the path itself stands for it
        return path


def _link_problem(path: Path, root: Path | None) -> str | None:
    """Why a (possibly linked) recording cannot be read, or None."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except RuntimeError:
        return "symbolic link loop"
    except OSError as exc:
        return "broken symbolic link" if exc.errno == errno.ENOENT else f"symbolic link cannot be followed ({exc})"
    if root is None:
        return None
    allowed = [root.resolve()] + [parent for parent in path.parents if (parent / ".git").exists()]
    if not any(target == base or base in target.parents for base in (a.resolve() for a in allowed)):
        return f"symbolic link leads outside the walked folder (to {target})"
    return None


def _walk(root: Path, glob: str | None, skip: set[Path]) -> list[tuple[Path, str | None]]:
    files: list[tuple[Path, str | None]] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(folder)
        # Sorted in place so os.walk descends in a stable order on every file system.
        dirnames[:] = sorted(d for d in dirnames if _real(here / d) not in skip and not d.startswith("."))
        for name in sorted(filenames):
            file = here / name
            if file.suffix.lower() not in RECORDING_SUFFIXES or name.startswith("."):
                continue
            if glob and not (fnmatch.fnmatch(file.relative_to(root).as_posix(), glob) or fnmatch.fnmatch(name, glob)):
                continue
            files.append((file, _link_problem(file, root)))
    return files


def _disambiguate(found: list[FoundRecording]) -> list[FoundRecording]:
    """Recordings that would write the same report names must not overwrite each other's reports.

    ``a.edf`` and ``a.bdf`` in one folder keep their suffix (``a_edf``, ``a_bdf``). Names that still collide
    (``x.edf`` in two folders sent to one ``--out``, or ``x.edf`` beside ``x.EDF``) also get a short hash of the
    input's absolute path: stable from run to run, and the report's ``input.path`` says which file it was.
    """
    import hashlib

    def counts(items: list[FoundRecording]) -> dict[tuple[Path, str], int]:
        keys: dict[tuple[Path, str], int] = {}
        for item in items:
            keys[(item.out_dir, item.stem)] = keys.get((item.out_dir, item.stem), 0) + 1
        return keys

    keys = counts(found)
    with_suffix = [
        dataclasses.replace(item, stem=item.stem + "_" + item.path.suffix.lstrip(".").lower())
        if keys[(item.out_dir, item.stem)] > 1 else item
        for item in found
    ]
    keys = counts(with_suffix)
    result = []
    for item in with_suffix:
        if keys[(item.out_dir, item.stem)] > 1:
            tag = hashlib.sha256(str(item.path).encode("utf-8")).hexdigest()[:8]
            item = dataclasses.replace(item, stem=f"{item.stem}_{tag}")
        result.append(item)
    return result


# ------------------------------------------------------------------------------------------------ manifest


SHARD_MANIFEST = re.compile(r"^manifest\.(\d+)-of-(\d+)\.jsonl$")


def manifest_name(shard: tuple[int, int] | None = None) -> str:
    """``manifest.jsonl``, or ``manifest.K-of-N.jsonl`` for shard K of N: shards never append to one file."""
    return MANIFEST_NAME if shard is None else f"manifest.{shard[0]}-of-{shard[1]}.jsonl"


class Manifest:
    """The run manifest of a report folder: one JSON line per file and run, appended and fsynced line by line, to
    ``manifest.jsonl`` or, for a shard of a job array, to its own ``manifest.K-of-N.jsonl``. Reading merges
    every manifest file of the folder, so ``--skip-existing`` and summaries see all shards as one run.

    Each line is written with a single ``write`` on an ``O_APPEND`` descriptor, so a crash leaves at worst a
    final line that does not parse; such lines are ignored on reading. A manifest that is a symbolic link is
    refused, never followed.
    """

    def __init__(self, out_dir: Path, shard: tuple[int, int] | None = None):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / manifest_name(shard)

    def files(self) -> list[Path]:
        if not self.out_dir.is_dir():
            return []
        return sorted(p for p in self.out_dir.iterdir()
                      if p.name == MANIFEST_NAME or SHARD_MANIFEST.match(p.name))

    def entries(self) -> list[dict[str, Any]]:
        """Every line of every manifest file in the folder, duplicates (a merged copy) once, in finishing order."""
        seen: set[str] = set()
        entries = []
        for path in self.files():
            for line in _read_no_follow(path).splitlines():
                if line in seen:
                    continue
                seen.add(line)
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "path" in entry and "status" in entry:
                    entries.append(entry)
        entries.sort(key=lambda e: str(e.get("finished_utc") or ""))  # stable: file order within one second
        return entries

    def last_completed(self) -> dict[str, dict[str, Any]]:
        """Per input path, the newest entry that did work (``skipped`` lines only repeat an earlier ``ok``)."""
        latest: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            if entry["status"] != "skipped":
                latest[entry["path"]] = entry
        return latest

    def append(self, entry: dict[str, Any]) -> None:
        # ASCII (non-ASCII escaped): a path that is not valid UTF-8 still makes a valid JSON line
        data = (json.dumps(entry, ensure_ascii=True, sort_keys=True) + "\n").encode("ascii")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        try:
            size = os.fstat(fd).st_size
            # After a torn final line (a crash mid-write), start on a fresh line so this entry still parses.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        except OSError as exc:
            raise output_error(exc, self.path) from None
        finally:
            os.close(fd)

    def merge(self) -> tuple[Path, int]:
        """Write every manifest of the folder into ``manifest.jsonl`` (atomically), then remove the shard files;
        returns (path, number of lines)."""
        entries = self.entries()
        text = "".join(json.dumps(e, ensure_ascii=True, sort_keys=True) + "\n" for e in entries)
        target = self.out_dir / MANIFEST_NAME
        if target.is_symlink():
            raise OutputError("manifest is a symbolic link; lumamba never writes through one", path=target)
        atomic_write_bytes(target, text.encode("utf-8"))
        for path in self.files():
            if path != target:
                path.unlink()
        return target, len(entries)


def _read_no_follow(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise output_error(exc, path) from None
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode("utf-8", errors="replace")


def shard_of(found: FoundRecording, n: int) -> int:
    """The shard a recording belongs to: a stable hash of its path relative to the folder it was found in (its
    report name), so every shard of every machine agrees and the shards cover the whole set exactly once."""
    digest = hashlib.sha256(found.stem.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def select_shard(found: list[FoundRecording], shard: tuple[int, int] | None) -> list[FoundRecording]:
    """The recordings of shard (K, N), K counted from 0 (``$SLURM_ARRAY_TASK_ID`` of ``--array=0-(N-1)``)."""
    if shard is None:
        return found
    k, n = shard
    return [item for item in found if shard_of(item, n) == k]


SUMMARY_NAME = "summary.csv"


def summary_rows(out_dir: Path) -> list[dict[str, Any]]:
    """One row per recording and part (task) from the folder's manifests: the latest run of each recording, its
    status and, for a part that ran, its summary figures (as the manifest line carries them)."""
    rows = []
    for path, entry in sorted(Manifest(out_dir).last_completed().items()):
        parts = entry.get("parts") or {task: {"status": entry["status"], "error": entry.get("error"),
                                              "error_code": entry.get("error_code")}
                                       for task in entry.get("tasks", [])}
        for task, info in parts.items():
            row = {"path": path, "task": task, "status": info.get("status", entry["status"]),
                   "error": info.get("error"), "error_code": info.get("error_code"),
                   "duration_s": entry.get("duration_s"), "finished_utc": entry.get("finished_utc")}
            row.update({k: v for k, v in info.items() if k not in row})
            rows.append(row)
    return rows


def write_summary(out_dir: Path) -> list[Path]:
    """``summary.csv`` (and ``summary.parquet`` when pyarrow is installed) of a folder's runs, atomically."""
    import pandas as pd

    frame = pd.DataFrame.from_records(summary_rows(out_dir))
    # As in the window CSVs: the disclaimer in its own last column, on the first row, so read_csv still works.
    frame["disclaimer"] = [DISCLAIMER] + [""] * (len(frame) - 1) if len(frame) else []
    written = [out_dir / SUMMARY_NAME]
    data = frame.to_csv(index=False).encode("utf-8")
    parquet = out_dir / "summary.parquet"
    # A run that only skipped leaves the summary as it was (a resume touches no file it did not redo).
    unchanged = written[0].is_file() and written[0].read_bytes() == data
    if not unchanged:
        atomic_write_bytes(written[0], data)
    if _HAS_PYARROW and len(frame):
        written.append(parquet)
        if not (unchanged and parquet.is_file()):
            atomic_write(parquet, lambda handle: frame.to_parquet(handle, index=False))
    return written


def _refusal(item: FoundRecording, outputs: Sequence[str]) -> LumambaError | None:
    """Why a found recording is not processed at all: a broken or escaping link, or report names longer than a
    file name may be (checked before any work; the names come from the recording's)."""
    if item.problem is not None:
        return BadInputError(item.problem, path=item.path)
    for name in outputs:
        size = len(name.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX:
            return OutputError(f"report name {name[:40]}… would be {size} bytes, more than the {NAME_MAX} a file "
                               "name may have: rename the recording", path=item.path)
    return None


def _file_identity(path: Path) -> tuple[int | None, int | None]:
    try:
        stat = path.stat()
    except OSError:
        return None, None
    return stat.st_size, stat.st_mtime_ns


def is_done(found: FoundRecording, previous: dict[str, Any] | None, expected: Sequence[str],
            tasks: Sequence[str], params: dict[str, Any] | None = None) -> bool:
    """A recording is finished when the manifest says ``ok`` for these tasks, the input has not changed since,
    every expected report exists and, when ``params`` is given, each task ran with the same parameters (a
    changed threshold, head or preprocessing gives different reports, so those are never skipped)."""
    if not previous or previous.get("status") != "ok":
        return False
    if not set(tasks) <= set(previous.get("tasks", [])):
        return False
    if params is not None:
        before = previous.get("params")
        # An entry from a run that did not record its parameters cannot prove they match: redo it.
        if not isinstance(before, dict) or any(before.get(task) != params.get(task) for task in tasks):
            return False
    size, mtime_ns = _file_identity(found.path)
    if previous.get("size") != size or previous.get("mtime_ns") != mtime_ns:
        return False
    recorded = set(previous.get("outputs", []))
    return all(name in recorded and (found.out_dir / name).is_file() for name in expected)


# ----------------------------------------------------------------------------------------------- execution


class LoadedJob(Protocol):
    identity: dict[str, Any]  # what must be equal on every worker and on the client

    def __call__(self, found: FoundRecording) -> FileResult: ...


class WorkerJob(Protocol):
    """A picklable description of a run's work; ``load()`` runs once in each worker process (and once here)."""

    def load(self) -> LoadedJob: ...


@dataclass(frozen=True)
class Cluster:
    """Run on Dask (``cluster.py``): ``scheduler`` (``tcp://host:8786``) of a running cluster, or None for a
    LocalCluster of ``workers`` processes sized to this machine."""

    job: WorkerJob
    identity: dict[str, Any]  # the client's, from its own loaded job
    scheduler: str | None = None
    workers: int | None = None


class Executor(StrEnum):
    """Where recordings are done: ``local`` (a producer thread or ``--jobs`` worker processes feeding this
    process's model) or ``dask`` (whole recordings on the workers of a Dask cluster, ``cluster.py``)."""

    local = "local"
    dask = "dask"


@dataclass
class FileResult:
    """What ``consume`` returns for one recording. ``parts`` describes each part of the job (screen: each task)
    for the manifest; a part that failed leaves the others' outputs standing and makes the file ``failed`` with
    ``failure``'s line and exit code."""

    outputs: list[Path]
    windows: int = 0  # all tasks together: a measure of work, not of the recording
    notes: list[str] = field(default_factory=list)  # one line per task for the human summary
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: LumambaError | None = None


@dataclass
class FileOutcome:
    found: FoundRecording
    status: str  # ok | failed | skipped
    duration_s: float = 0.0
    outputs: list[str] = field(default_factory=list)
    windows: int = 0
    error: str | None = None
    error_code: int | None = None
    exception: BaseException | None = None
    notes: list[str] = field(default_factory=list)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class BatchResult:
    outcomes: list[FileOutcome]

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def exit_code(self) -> int:
        return int(ExitCode.PARTIAL) if self.count("failed") else int(ExitCode.OK)

    def summary(self) -> dict[str, Any]:
        return {
            "files": len(self.outcomes),
            "ok": self.count("ok"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "windows": sum(outcome.windows for outcome in self.outcomes),
            "exit_code": self.exit_code,
            "failures": [{"path": str(o.found.path), "error": o.error} for o in self.outcomes if o.status == "failed"],
        }


class Progress:
    """Hooks for a progress display; the default does nothing (quiet runs, pipes, tests)."""

    def start(self, total_files: int) -> None: ...

    def expect_windows(self, total: int | None) -> None: ...

    def file_started(self, found: FoundRecording) -> None: ...

    def windows_done(self, count: int) -> None: ...

    def file_finished(self, outcome: FileOutcome) -> None: ...

    def stop(self) -> None: ...


_END = object()
_FAILED = object()


def _error_fields(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, LumambaError):
        return exc.line(), int(exc.code)
    return f"internal error: {type(exc).__name__}: {exc}", int(ExitCode.INTERNAL)


def run_batch(
    found: Sequence[FoundRecording],
    produce: Callable[[FoundRecording], Iterable[Any]],
    consume: Callable[[FoundRecording, Iterator[Any]], FileResult],
    *,
    tasks: Sequence[str],
    expected_outputs: Callable[[FoundRecording], list[str]],
    skip_existing: bool = False,
    jobs: int = 1,
    queue_items: int = 4,
    progress: Progress | None = None,
    estimate_windows: Callable[[FoundRecording], int] | None = None,
    params: dict[str, Any] | None = None,
    shard: tuple[int, int] | None = None,
    cluster: Cluster | None = None,
) -> BatchResult:
    """Process every recording, appending one manifest line per file as soon as it is finished.

    Locally, ``produce`` runs in a thread (``jobs`` 1) or in worker processes and ``consume`` here; with a
    ``cluster`` each recording is done whole on a Dask worker by the cluster's job, and this process only writes
    the manifest (the only writer, as locally).

    ``params`` (per task, JSON-ready: whatever changes that task's reports) is written to each manifest line and
    compared by ``skip_existing``.
    """
    progress = progress or Progress()
    if params is not None:
        # The same form the manifest stores (tuples become lists, keys sorted), so comparison is by value.
        params = json.loads(json.dumps(params, sort_keys=True))
    manifests: dict[Path, Manifest] = {}
    previous: dict[Path, dict[str, dict[str, Any]]] = {}
    outcomes: dict[int, FileOutcome] = {}
    todo: list[int] = []

    def manifest_for(item: FoundRecording) -> Manifest:
        if item.out_dir not in manifests:
            sweep_temporaries(item.out_dir)  # half-written reports of a run that was killed
            manifests[item.out_dir] = Manifest(item.out_dir, shard)
            previous[item.out_dir] = manifests[item.out_dir].last_completed() if skip_existing else {}
        return manifests[item.out_dir]

    def record(index: int, outcome: FileOutcome) -> None:
        item = outcome.found
        size, mtime_ns = _file_identity(item.path)
        manifest_for(item).append({
            "schema_version": SCHEMA_VERSION,
            "path": str(item.path),
            "status": outcome.status,
            "error": outcome.error,
            "error_code": outcome.error_code,
            "duration_s": round(outcome.duration_s, 3),
            "outputs": outcome.outputs,
            "tasks": list(tasks),
            "size": size,
            "mtime_ns": mtime_ns,
            "windows": outcome.windows,
            **({"parts": outcome.parts} if outcome.parts else {}),
            **({"params": params} if params is not None else {}),
            "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        outcomes[index] = outcome
        progress.file_finished(outcome)

    progress.start(len(found))
    for index, item in enumerate(found):
        manifest_for(item)
        before = previous[item.out_dir].get(str(item.path))
        refusal = _refusal(item, expected_outputs(item))
        if refusal is not None:
            record(index, FileOutcome(item, "failed", error=refusal.line(), error_code=int(refusal.code),
                                      exception=refusal))
        elif skip_existing and is_done(item, before, expected_outputs(item), tasks, params):
            record(index, FileOutcome(item, "skipped", outputs=list(before.get("outputs", [])),
                                      windows=int(before.get("windows") or 0), parts=dict(before.get("parts") or {})))
        else:
            todo.append(index)
    if estimate_windows is not None:
        progress.expect_windows(sum(estimate_windows(found[index]) for index in todo))

    def finish(index: int, items: Iterator[Any], started: float) -> None:
        item = found[index]
        progress.file_started(item)
        record(index, outcome_of(item, lambda: consume(item, items), started))

    try:
        if cluster is not None:
            from lumamba_cli.cluster import run_on_cluster

            run_on_cluster(cluster, found, todo, record, progress)
        elif jobs <= 1:
            _run_threaded(found, todo, produce, finish, queue_items)
        else:
            _run_pool(found, todo, produce, finish, jobs)
    finally:
        progress.stop()
        if cluster is not None:
            for out_dir in manifests:  # temporaries of a worker that was killed mid-write (its pid is gone)
                sweep_temporaries(out_dir)
    return BatchResult([outcomes[i] for i in sorted(outcomes)])


def outcome_of(item: FoundRecording, work: Callable[[], FileResult], started: float) -> FileOutcome:
    """Do one recording's work and say what came of it: the unit every executor runs, in this process, a worker
    process or on a cluster node, so that an outcome never depends on where it was computed."""
    try:
        result = work()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - isolation: any failure of one file is that file's outcome
        message, code = _error_fields(exc)
        return FileOutcome(item, "failed", time.perf_counter() - started, error=message, error_code=code,
                           exception=exc)
    names = [_relative(path, item.out_dir) for path in result.outputs]
    failure = result.failure
    return FileOutcome(item, "ok" if failure is None else "failed", time.perf_counter() - started,
                       outputs=names, windows=result.windows, notes=list(result.notes),
                       error=failure.line() if failure else None,
                       error_code=int(failure.code) if failure else None, exception=failure, parts=result.parts)


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(path)


def _run_threaded(found, todo, produce, finish, queue_items: int) -> None:
    """One producer thread decodes/preprocesses ahead of the model, through a bounded queue."""
    channel: queue.Queue = queue.Queue(maxsize=max(1, queue_items))
    stop = threading.Event()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                channel.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def producer() -> None:
        for index in todo:
            try:
                for payload in produce(found[index]):
                    if not put((index, None, payload)):
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which owns the outcome
                if not put((index, _FAILED, exc)):
                    return
                continue
            if not put((index, _END, None)):
                return

    thread = threading.Thread(target=producer, name="lumamba-producer", daemon=True)
    thread.start()
    try:
        for index in todo:
            state = {"ended": False}

            def items(index=index, state=state) -> Iterator[Any]:
                while True:
                    got_index, tag, payload = channel.get()
                    assert got_index == index, "producer and consumer out of step"
                    if tag is _END:
                        state["ended"] = True
                        return
                    if tag is _FAILED:
                        state["ended"] = True
                        raise payload
                    yield payload

            started = time.perf_counter()
            stream = items()
            finish(index, stream, started)
            # A consumer that stopped early (an error) leaves this file's remaining items in the queue.
            while not state["ended"]:
                got_index, tag, _ = channel.get()
                if tag is _END or tag is _FAILED:
                    state["ended"] = True
    finally:
        stop.set()
        thread.join(timeout=5)


SPILL_BYTES = 8 << 20


@dataclass
class _Spilled:
    """An item whose large ``data`` array waits in a temporary .npy file instead of in memory."""

    item: Any
    path: str


def _materialise(produce, item: FoundRecording) -> list[Any]:
    """A worker's whole output for one recording. Large arrays go to temporary files: the main process then holds
    one block at a time however long the recordings in flight are."""
    import dataclasses
    import tempfile

    folder = None
    out: list[Any] = []
    try:
        for payload in produce(item):
            data = getattr(payload, "data", None)
            if dataclasses.is_dataclass(payload) and isinstance(data, np.ndarray) and data.nbytes > SPILL_BYTES:
                folder = folder or tempfile.mkdtemp(prefix="lumamba-spill-")
                path = os.path.join(folder, f"{len(out)}.npy")
                np.save(path, data)
                payload = _Spilled(dataclasses.replace(payload, data=None), path)
            out.append(payload)
    except BaseException:
        _discard_spills(out)
        raise
    return out


def _unspill(payload: Any) -> Any:
    import dataclasses

    if not isinstance(payload, _Spilled):
        return payload
    data = np.load(payload.path)
    _discard_spills([payload])
    return dataclasses.replace(payload.item, data=data)


def _discard_spills(items: Iterable[Any]) -> None:
    for payload in items:
        if isinstance(payload, _Spilled):
            try:
                os.unlink(payload.path)
                os.rmdir(os.path.dirname(payload.path))  # succeeds once the folder is empty
            except OSError:
                pass


def _run_pool(found, todo, produce, finish, jobs: int) -> None:
    """Worker processes decode/preprocess whole recordings; the main process runs the model in input order."""
    # spawn, not fork: forking a process that already runs torch/OpenMP threads can deadlock the child.
    context = multiprocessing.get_context("spawn")
    pending: dict[int, cf.Future] = {}
    order = list(todo)
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        try:
            submitted = 0
            for position, index in enumerate(order):
                while submitted < len(order) and submitted <= position + jobs:
                    pending[order[submitted]] = pool.submit(_materialise, produce, found[order[submitted]])
                    submitted += 1
                started = time.perf_counter()
                future = pending.pop(index)

                def items(future=future) -> Iterator[Any]:
                    payloads = future.result()
                    try:
                        for position, payload in enumerate(payloads):
                            payloads[position] = None  # let each block go as soon as it is scored
                            yield _unspill(payload)
                    finally:
                        _discard_spills(p for p in payloads if p is not None)

                finish(index, items(), started)
        except BaseException:
            for future in pending.values():
                future.cancel()
                if future.done() and not future.cancelled() and future.exception() is None:
                    _discard_spills(future.result())
