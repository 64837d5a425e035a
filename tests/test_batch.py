"""batch.py with fake per-file jobs: discovery, manifest, resuming, failure isolation, pipelining, interrupts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from lumamba_cli.batch import FileResult, Manifest, find_recordings, run_batch
from lumamba_cli.errors import BadInputError
from lumamba_cli.fileio import atomic_write_bytes as atomic_write
from lumamba_cli.report import json_schema


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_find_recordings_walks_recursively_in_stable_order(tmp_path):
    root = tmp_path / "study"
    _touch(root / "b.edf")
    _touch(root / "A.EDF")
    _touch(root / "sub" / "c.Bdf")
    _touch(root / "notes.txt")
    _touch(root / "lumamba" / "old.edf")  # a previous run's report folder is never walked
    _touch(root / ".cache" / "hidden.edf")
    found = find_recordings([root])
    assert [f.stem for f in found] == ["A", "b", "sub/c"]
    assert all(f.out_dir == root.resolve() / "lumamba" and not f.explicit for f in found)

    assert [f.stem for f in find_recordings([root], glob="sub/*")] == ["sub/c"]
    assert [f.stem for f in find_recordings([root], glob="b.*")] == ["b"]


def test_find_recordings_explicit_files_and_collisions(tmp_path):
    a_edf = _touch(tmp_path / "a.edf")
    a_bdf = _touch(tmp_path / "a.bdf")
    found = find_recordings([a_edf, a_bdf, a_edf], out=tmp_path / "reports")
    assert [f.stem for f in found] == ["a_edf", "a_bdf"]  # same stem: suffix kept; duplicates dropped
    assert all(f.explicit and f.out_dir == (tmp_path / "reports").resolve() for f in found)
    assert find_recordings([a_edf])[0].out_dir == tmp_path.resolve() / "lumamba"
    with pytest.raises(BadInputError, match="no such file"):
        find_recordings([tmp_path / "missing.edf"])


def _produce(found):
    if found.path.name.startswith("bad"):
        raise BadInputError("truncated file", path=found.path)
    for k in range(3):
        yield k


def _make_consume(log):
    def consume(found, items):
        got = list(items)
        assert got == [0, 1, 2]
        log.append(found.stem)
        out = found.out_dir / f"{found.stem}.qc.json"
        atomic_write(out, json.dumps({"stem": found.stem}).encode())
        return FileResult([out], windows=len(got))

    return consume


def _expected(found):
    return [f"{found.stem}.qc.json"]


def test_failure_isolation_manifest_and_skip_existing(tmp_path):
    root = tmp_path / "d"
    for name in ("a.edf", "bad.edf", "c.edf"):
        _touch(root / name)
    found = find_recordings([root])
    log: list[str] = []
    result = run_batch(found, _produce, _make_consume(log), tasks=[], expected_outputs=_expected)
    assert log == ["a", "c"]
    assert [o.status for o in result.outcomes] == ["ok", "failed", "ok"]
    assert result.exit_code == 6
    assert "truncated file" in result.outcomes[1].error and result.outcomes[1].error_code == 3

    manifest = Manifest(root / "lumamba")
    entries = manifest.entries()
    schema = json_schema("manifest")
    for entry in entries:
        jsonschema.validate(entry, schema)
    assert [(Path(e["path"]).name, e["status"]) for e in entries] == [("a.edf", "ok"), ("bad.edf", "failed"),
                                                                      ("c.edf", "ok")]
    assert entries[0]["outputs"] == ["a.qc.json"]

    report = root / "lumamba" / "a.qc.json"
    before = report.stat().st_mtime_ns
    log.clear()
    again = run_batch(found, _produce, _make_consume(log), tasks=[], expected_outputs=_expected,
                      skip_existing=True)
    assert log == []  # good files are not redone; the bad one is retried and fails again
    assert [o.status for o in again.outcomes] == ["skipped", "failed", "skipped"]
    assert report.stat().st_mtime_ns == before

    # A finished recording whose report was deleted, or whose input changed, is done again.
    report.unlink()
    os.utime(root / "c.edf", ns=(1, 1))
    log.clear()
    run_batch(found, _produce, _make_consume(log), tasks=[], expected_outputs=_expected, skip_existing=True)
    assert log == ["a", "c"]


def test_consumer_error_midway_does_not_desynchronise_the_next_file(tmp_path):
    found = find_recordings([_touch(tmp_path / "x.edf"), _touch(tmp_path / "y.edf")], out=tmp_path / "o")
    seen = []

    def consume(item, items):
        first = next(items)
        if item.stem == "x":
            raise ValueError("model blew up")  # leaves items 1 and 2 of x in the queue
        rest = list(items)
        seen.append([first] + rest)
        return FileResult([], windows=3)

    result = run_batch(found, _produce, consume, tasks=[], expected_outputs=_expected, queue_items=1)
    assert [o.status for o in result.outcomes] == ["failed", "ok"]
    assert result.outcomes[0].error.startswith("internal error: ValueError")
    assert seen == [[0, 1, 2]]


def test_interrupt_stops_the_run_and_keeps_finished_entries(tmp_path):
    found = find_recordings([_touch(tmp_path / n) for n in ("a.edf", "b.edf", "c.edf")], out=tmp_path / "o")
    log: list[str] = []
    consume_ok = _make_consume(log)

    def consume(item, items):
        if item.stem == "b":
            raise KeyboardInterrupt
        return consume_ok(item, items)

    with pytest.raises(KeyboardInterrupt):
        run_batch(found, _produce, consume, tasks=[], expected_outputs=_expected)
    entries = Manifest(tmp_path / "o").entries()
    assert [(Path(e["path"]).name, e["status"]) for e in entries] == [("a.edf", "ok")]
    assert not [p for p in (tmp_path / "o").iterdir() if "tmp" in p.name]

    log.clear()
    result = run_batch(found, _produce, consume_ok, tasks=[], expected_outputs=_expected, skip_existing=True)
    assert [o.status for o in result.outcomes] == ["skipped", "ok", "ok"] and log == ["b", "c"]


def test_worker_processes_give_the_same_outcomes(tmp_path):
    root = tmp_path / "d"
    for name in ("a.edf", "bad.edf", "c.edf", "d.edf"):
        _touch(root / name)
    found = find_recordings([root])
    log: list[str] = []
    result = run_batch(found, _produce, _make_consume(log), tasks=[], expected_outputs=_expected, jobs=2)
    assert [o.status for o in result.outcomes] == ["ok", "failed", "ok", "ok"]
    assert log == ["a", "c", "d"]


def test_manifest_ignores_a_torn_last_line(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.append({"path": "/a.edf", "status": "ok"})
    with open(manifest.path, "a", encoding="utf-8") as handle:
        handle.write('{"path": "/b.edf", "sta')
    assert [e["path"] for e in manifest.entries()] == ["/a.edf"]
    manifest.append({"path": "/c.edf", "status": "ok"})
    assert [e["path"] for e in manifest.entries()] == ["/a.edf", "/c.edf"]


@dataclass
class BigBlock:
    data: np.ndarray
    index: int


def _produce_big(found):
    for k in range(3):
        yield BigBlock(np.full((3 << 20,), float(k), dtype=np.float32), k)  # 12 MB each: spilled to disk


def test_worker_blocks_are_spilled_and_cleaned_up(tmp_path, monkeypatch):
    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill_root))  # read by the spawned workers' tempfile module
    found = find_recordings([_touch(tmp_path / n) for n in ("a.edf", "b.edf")], out=tmp_path / "o")
    seen = []

    def consume(item, items):
        for block in items:
            assert isinstance(block, BigBlock) and block.data.shape == (3 << 20,)
            seen.append((item.stem, block.index, float(block.data[-1])))
        return FileResult([], windows=3)

    result = run_batch(found, _produce_big, consume, tasks=[], expected_outputs=_expected, jobs=2)
    assert [o.status for o in result.outcomes] == ["ok", "ok"]
    assert seen == [(s, k, float(k)) for s in ("a", "b") for k in range(3)]
    assert list(spill_root.iterdir()) == []


def test_skip_existing_redoes_a_file_whose_run_parameters_changed(tmp_path):
    root = tmp_path / "d"
    _touch(root / "a.edf")
    found = find_recordings([root])
    log: list[str] = []

    def run(params):
        return run_batch(found, _produce, _make_consume(log), tasks=["qc"], expected_outputs=_expected,
                         skip_existing=True, params=params)

    run({"qc": {"threshold": 0.5, "preprocessing": ("whole", 300.0)}})
    # Tuples and lists are the same value once in the manifest: an unchanged run is skipped.
    assert [o.status for o in run({"qc": {"threshold": 0.5, "preprocessing": ["whole", 300.0]}}).outcomes] == ["skipped"]
    assert [o.status for o in run({"qc": {"threshold": 0.7, "preprocessing": ["whole", 300.0]}}).outcomes] == ["ok"]
    assert [o.status for o in run({"qc": {"threshold": 0.7, "preprocessing": ["whole", 300.0]}}).outcomes] == [
        "skipped"]
    assert log == ["a", "a"]
    entries = Manifest(root / "lumamba").entries()
    for entry in entries:
        jsonschema.validate(entry, json_schema("manifest"))
    assert entries[-1]["params"]["qc"]["threshold"] == 0.7
    # A manifest written without parameters cannot prove they match.
    run_batch(found, _produce, _make_consume(log), tasks=["qc"], expected_outputs=_expected)
    assert [o.status for o in run({"qc": {"threshold": 0.7, "preprocessing": ["whole", 300.0]}}).outcomes] == ["ok"]


def test_recordings_that_would_share_report_names_never_overwrite_each_other(tmp_path):
    _touch(tmp_path / "site1" / "x.edf")
    _touch(tmp_path / "site2" / "x.edf")
    _touch(tmp_path / "site2" / "y.edf")
    _touch(tmp_path / "site2" / "y.EDF")  # a different file on a case-sensitive file system
    out = tmp_path / "reports"
    found = find_recordings([tmp_path / "site1", tmp_path / "site2"], out=out)
    assert len(found) == 4 and len({(f.out_dir, f.stem) for f in found}) == 4
    assert all(f.stem.startswith(("x_", "y_")) for f in found)
    assert [f.stem for f in find_recordings([tmp_path / "site1", tmp_path / "site2"], out=out)] == [
        f.stem for f in found]  # stable from run to run
    log: list[str] = []
    run_batch(found, _produce, _make_consume(log), tasks=[], expected_outputs=_expected)
    written = sorted(p.name for p in out.glob("*.qc.json"))
    assert len(written) == 4
    # Files named alone keep their plain stem when nothing collides.
    assert find_recordings([tmp_path / "site2" / "x.edf"], out=out)[0].stem == "x"
