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
import datetime as _dt
import fnmatch
import json
import multiprocessing
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from lumamba_cli.errors import BadInputError, ExitCode, LumambaError
from lumamba_cli.fileio import sweep_temporaries
from lumamba_cli.report import SCHEMA_VERSION

RECORDING_SUFFIXES = {".edf", ".bdf"}
MANIFEST_NAME = "manifest.jsonl"
DEFAULT_OUT_NAME = "lumamba"


# ----------------------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class FoundRecording:
    """A recording to process and where its reports go (``out_dir / stem`` + ``.<task>.…``)."""

    path: Path
    out_dir: Path
    stem: str
    explicit: bool  # named on the command line (not found by walking a folder)


def default_out_dir(path: Path) -> Path:
    """Reports go to a ``lumamba/`` folder beside a file, or inside a folder that is walked."""
    return (path if path.is_dir() else path.parent) / DEFAULT_OUT_NAME


def find_recordings(paths: Sequence[str | Path], glob: str | None = None,
                    out: str | Path | None = None) -> list[FoundRecording]:
    """Expand files and folders into recordings, in a deterministic order.

    Folders are walked recursively for ``.edf``/``.bdf`` in any letter case (``--glob`` narrows that, matched
    against the path relative to the folder and against the file name); report folders are not re-entered.
    Files named explicitly are taken whatever their extension: the reader decides whether they are EDF/BDF.
    """
    found: list[FoundRecording] = []
    seen: set[Path] = set()
    out_root = Path(out).resolve() if out is not None else None
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise BadInputError("no such file or folder", path=path)
        path = path.resolve()
        if path.is_dir():
            target = out_root or default_out_dir(path)
            for file in _walk(path, glob, skip={target, path / DEFAULT_OUT_NAME}):
                if file in seen:
                    continue
                seen.add(file)
                rel = file.relative_to(path)
                found.append(FoundRecording(file, target, rel.with_suffix("").as_posix(), explicit=False))
        else:
            if path in seen:
                continue
            seen.add(path)
            target = out_root or default_out_dir(path)
            found.append(FoundRecording(path, target, path.stem, explicit=True))
    return _disambiguate(found)


def _walk(root: Path, glob: str | None, skip: set[Path]) -> list[Path]:
    files: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(folder)
        # Sorted in place so os.walk descends in a stable order on every file system.
        dirnames[:] = sorted(d for d in dirnames if (here / d).resolve() not in skip and not d.startswith("."))
        for name in sorted(filenames):
            file = here / name
            if file.suffix.lower() not in RECORDING_SUFFIXES or name.startswith("."):
                continue
            if glob and not (fnmatch.fnmatch(file.relative_to(root).as_posix(), glob) or fnmatch.fnmatch(name, glob)):
                continue
            files.append(file.resolve())
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
        FoundRecording(item.path, item.out_dir, item.stem + "_" + item.path.suffix.lstrip(".").lower(), item.explicit)
        if keys[(item.out_dir, item.stem)] > 1 else item
        for item in found
    ]
    keys = counts(with_suffix)
    result = []
    for item in with_suffix:
        if keys[(item.out_dir, item.stem)] > 1:
            tag = hashlib.sha256(str(item.path).encode("utf-8")).hexdigest()[:8]
            item = FoundRecording(item.path, item.out_dir, f"{item.stem}_{tag}", item.explicit)
        result.append(item)
    return result


# ------------------------------------------------------------------------------------------------ manifest


class Manifest:
    """``manifest.jsonl`` in a report folder: one JSON line per file and run, appended and fsynced line by line.

    Each line is written with a single ``write`` on an ``O_APPEND`` descriptor, so a crash leaves at worst a
    final line that does not parse; such lines are ignored on reading.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST_NAME

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "path" in entry and "status" in entry:
                entries.append(entry)
        return entries

    def last_completed(self) -> dict[str, dict[str, Any]]:
        """Per input path, the newest entry that did work (``skipped`` lines only repeat an earlier ``ok``)."""
        latest: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            if entry["status"] != "skipped":
                latest[entry["path"]] = entry
        return latest

    def append(self, entry: dict[str, Any]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # After a torn final line (a crash mid-write), start on a fresh line so this entry still parses.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


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


@dataclass
class FileResult:
    """What ``consume`` returns for one recording."""

    outputs: list[Path]
    windows: int = 0  # all tasks together: a measure of work, not of the recording
    notes: list[str] = field(default_factory=list)  # one line per task for the human summary


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
) -> BatchResult:
    """Process every recording, appending one manifest line per file as soon as it is finished.

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
            manifests[item.out_dir] = Manifest(item.out_dir)
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
            **({"params": params} if params is not None else {}),
            "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        outcomes[index] = outcome
        progress.file_finished(outcome)

    progress.start(len(found))
    for index, item in enumerate(found):
        manifest_for(item)
        before = previous[item.out_dir].get(str(item.path))
        if skip_existing and is_done(item, before, expected_outputs(item), tasks, params):
            record(index, FileOutcome(item, "skipped", outputs=list(before.get("outputs", [])),
                                      windows=int(before.get("windows") or 0)))
        else:
            todo.append(index)
    if estimate_windows is not None:
        progress.expect_windows(sum(estimate_windows(found[index]) for index in todo))

    def finish(index: int, items: Iterator[Any], started: float) -> None:
        item = found[index]
        progress.file_started(item)
        try:
            result = consume(item, items)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - isolation: any failure of one file is that file's outcome
            message, code = _error_fields(exc)
            record(index, FileOutcome(item, "failed", time.perf_counter() - started, error=message,
                                      error_code=code, exception=exc))
            return
        names = [_relative(path, item.out_dir) for path in result.outputs]
        record(index, FileOutcome(item, "ok", time.perf_counter() - started, outputs=names, windows=result.windows,
                                  notes=list(result.notes)))

    try:
        if jobs <= 1:
            _run_threaded(found, todo, produce, finish, queue_items)
        else:
            _run_pool(found, todo, produce, finish, jobs)
    finally:
        progress.stop()
    return BatchResult([outcomes[i] for i in sorted(outcomes)])


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
