"""report.py: atomic writes, the summary arithmetic, CSV layout and the published JSON Schema."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import socket
import time

import jsonschema
import pandas as pd
import pytest

from lumamba_cli import DISCLAIMER
from lumamba_cli.fileio import TMP_SUFFIX, sweep_temporaries, temporary_prefix
from lumamba_cli.fileio import atomic_write_bytes as atomic_write
from lumamba_cli.report import WindowRow, build_report, csv_bytes, json_schema, summarise
from lumamba_cli.report import write_report as write_json


def _rows(probs, *, step=5.0, segments=None, excluded=()):
    rows = []
    for k, p in enumerate(probs):
        seg = segments[k] if segments else 0
        start = k * step + (100.0 * seg)  # a new segment starts after a gap
        rows.append(WindowRow(index=k, start_s=start, end_s=start + step, segment=seg,
                              probabilities={"normal": 1 - p, "abnormal": p},
                              predicted=["abnormal" if p >= 0.5 else "normal"],
                              excluded=k in excluded, qc_pass=k not in excluded,
                              qc_flags=["flat"] if k in excluded else [],
                              excluded_reason="qc: flat" if k in excluded else None))
    return rows


def _input_info():
    return {"path": "/x/rec.edf", "size": 10, "sha256": "0" * 64,
            "header": {"format": "EDF+C", "reader": "pyedflib", "duration_s": 30.0, "start_time": None,
                       "channels": 2, "segments": [{"onset_s": 0.0, "data_start_s": 0.0, "duration_s": 30.0}]}}


def _model_block():
    return {"encoder": {"name": "x", "file": "x.safetensors", "sha256": "1" * 64},
            "head": {"id": "tuab-abc", "sha256": "2" * 64, "file": "/h.safetensors"},
            "backend": "torch", "device": "cpu", "precision": "float32"}


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "a.json"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.csv"
    atomic_write(target, b"old")

    def boom(src, dst):
        raise KeyboardInterrupt  # an interrupt between write and rename

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_sweep_removes_only_dead_writers_temporaries(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0])[:32]
    stale = tmp_path / f".a.json.{host}_{dead_pid}.abc123{TMP_SUFFIX}"
    live = tmp_path / f".b.json.{host}_{os.getppid()}.def456{TMP_SUFFIX}"
    # On a shared file system: another machine's writer may be alive whatever its pid means here.
    remote = tmp_path / f".c.json.othernode-07_{dead_pid}.ghi789{TMP_SUFFIX}"
    remote_old = tmp_path / f".d.json.othernode-07_{dead_pid}.jkl012{TMP_SUFFIX}"
    for path in (stale, live, remote, remote_old):
        path.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    os.utime(remote_old, (two_days_ago, two_days_ago))
    assert sorted(sweep_temporaries(tmp_path)) == sorted([stale, remote_old])
    assert live.exists() and remote.exists()


def test_temporaries_carry_host_and_pid_and_fit_the_name_limit():
    prefix = temporary_prefix("x" * 255)
    assert prefix.endswith(f"_{os.getpid()}.") and len(prefix.encode()) + 8 + len(TMP_SUFFIX) <= 255


def test_summary_longest_run_counts_only_touching_windows():
    # windows 1-3 above threshold, then 5-6, but a segment boundary between 5 and 6.
    probs = [0.1, 0.9, 0.8, 0.7, 0.2, 0.6, 0.95, 0.4]
    segments = [0, 0, 0, 0, 0, 0, 1, 1]
    summary = summarise(_rows(probs, segments=segments), ["normal", "abnormal"], threshold=0.5,
                        positive_label="abnormal")
    positive = summary["positive"]
    assert positive["longest_run_windows"] == 3
    assert positive["longest_run_s"] == pytest.approx(15.0)
    assert positive["fraction_above_threshold"] == pytest.approx(5 / 8)
    assert positive["mean_probability"] == pytest.approx(sum(probs) / 8, abs=1e-6)
    assert summary["windows_used"] == 8 and summary["windows_excluded"] == 0


def test_summary_excluded_windows_do_not_count_and_break_runs():
    probs = [0.9, 0.9, 0.9, 0.9]
    summary = summarise(_rows(probs, excluded={2}), ["normal", "abnormal"], threshold=0.5,
                        positive_label="abnormal")
    assert summary["windows_used"] == 3 and summary["windows_excluded"] == 1
    assert summary["qc_failed"] == 1
    assert summary["positive"]["longest_run_windows"] == 2
    assert summary["positive"]["fraction_above_threshold"] == 1.0


def test_threshold_is_honoured():
    rows = _rows([0.55, 0.65, 0.75])
    assert summarise(rows, ["normal", "abnormal"], threshold=0.6,
                     positive_label="abnormal")["positive"]["fraction_above_threshold"] == pytest.approx(2 / 3)
    assert summarise(rows, ["normal", "abnormal"], threshold=0.8,
                     positive_label="abnormal")["positive"]["longest_run_windows"] == 0


def test_csv_parses_with_a_plain_read_csv_and_carries_the_disclaimer():
    start = dt.datetime(2020, 1, 2, 3, 4, 5)
    data = csv_bytes(_rows([0.2, 0.7], excluded={1}), ["normal", "abnormal"], start).decode()
    frame = pd.read_csv(io.StringIO(data))  # no comment= needed
    assert list(frame.columns) == ["start_s", "end_s", "start_time", "p_normal", "p_abnormal", "predicted",
                                   "qc_pass", "qc_flags", "qc_ptp_max_uv", "qc_line_ratio_median",
                                   "qc_hf_ratio_median", "qc_bad_channels", "excluded", "excluded_reason",
                                   "disclaimer"]
    assert frame["disclaimer"].iloc[0] == DISCLAIMER and frame["disclaimer"].iloc[1:].isna().all()
    assert frame["qc_pass"].dtype == bool
    assert frame["start_time"].tolist() == ["2020-01-02T03:04:05", "2020-01-02T03:04:10"]
    assert frame["p_abnormal"].tolist() == pytest.approx([0.2, 0.7])
    assert frame["excluded"].tolist() == [False, True]
    assert frame["excluded_reason"].iloc[1] == "qc: flat"


def test_csv_without_start_time_has_no_clock_column():
    data = csv_bytes(_rows([0.2]), ["normal", "abnormal"], None).decode()
    frame = pd.read_csv(io.StringIO(data))
    assert "start_time" not in frame.columns


def test_report_validates_and_schema_catches_mistakes(tmp_path):
    rows = _rows([0.1, 0.9])
    report = build_report(task="tuab", input_info=_input_info(), rows=rows, labels=["normal", "abnormal"],
                          summary=summarise(rows, ["normal", "abnormal"], positive_label="abnormal"),
                          montage={"layout": "tuh_tcp22", "rows": [{"raw": "EEG FP1-REF", "canonical": "Fp1",
                                                                     "source": "direct", "used": True}]},
                          recipe={"id": "tuab", "hash": "abcd", "mode": "whole", "deviation": None},
                          model=_model_block(), start_time=None)
    path = write_json(tmp_path / "r.json", report)
    loaded = json.loads(path.read_text())
    schema = json_schema("report")
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(loaded, schema)
    assert loaded["disclaimer"] == DISCLAIMER
    assert {"lumamba", "torch", "mne", "numpy", "pyedflib", "python"} <= set(loaded["versions"])

    broken = json.loads(path.read_text())
    broken["windows"][0]["probabilities"]["abnormal"] = 1.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    broken = json.loads(path.read_text())
    del broken["disclaimer"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_reports_are_deterministic(tmp_path):
    rows = _rows([0.3, 0.6])
    kwargs = dict(task="qc", input_info=_input_info(), rows=rows, labels=[],
                  summary=summarise(rows, []), start_time=None)
    a = write_json(tmp_path / "a.json", build_report(**kwargs)).read_bytes()
    b = write_json(tmp_path / "b.json", build_report(**kwargs)).read_bytes()
    assert a == b


def test_schema_command_prints_both_schemas(capsys):
    from cli_helpers import run_cli

    for kind in ("report", "manifest"):
        code, out, _ = run_cli(["schema", "--kind", kind], capsys)
        assert code == 0
        printed = json.loads(out)
        assert printed == json_schema(kind)
        jsonschema.Draft202012Validator.check_schema(printed)


def test_per_channel_summary_counts_each_predicted_channel():
    rows = [WindowRow(index=k, start_s=5.0 * k, end_s=5.0 * k + 5, probabilities=probs, predicted=predicted)
            for k, (probs, predicted) in enumerate([({"FP1-F7": 0.7, "T3-T5": 0.6}, ["FP1-F7", "T3-T5"]),
                                                    ({"FP1-F7": 0.8, "T3-T5": 0.1}, ["FP1-F7"]),
                                                    ({"FP1-F7": 0.2, "T3-T5": 0.3}, [])])]
    classes = {c["label"]: c for c in summarise(rows, ["FP1-F7", "T3-T5"])["classes"]}
    assert classes["FP1-F7"]["predicted"] == 2 and classes["T3-T5"]["predicted"] == 1
    assert classes["FP1-F7"]["longest_run_windows"] == 2 and classes["T3-T5"]["longest_run_windows"] == 1


def test_written_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        import importlib

        import lumamba_cli.fileio as fileio

        importlib.reload(fileio)  # the umask is read once, at import
        fileio.atomic_write_bytes(tmp_path / "r.csv", b"x")
        assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        importlib.reload(fileio)
