"""Annotation-only EDF+ and events.tsv exports, read back by MNE and pyedflib; oracle: runs worked out by hand."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math

import pytest

from lumamba_cli import DISCLAIMER
from lumamba_cli.exports import EVENTS_COLUMNS, events_names, write_edf, write_events
from lumamba_cli.report import WindowRow, build_report, summarise

START = dt.datetime(2001, 2, 3, 4, 5, 6)
# (start_s, segment, p(abnormal), excluded): 5-s windows; window 4 fails QC; window 7 opens segment 1.
WINDOWS = [(0, 0, 0.9, False), (5, 0, 0.8, False), (10, 0, 0.2, False), (15, 0, 0.7, False), (20, 0, 0.7, True),
           (25, 0, 0.6, False), (30, 0, 0.9, False), (35, 1, 0.95, False), (40, 1, 0.95, False), (45, 1, 0.1, False)]
# By hand, threshold 0.5: positive runs [0,10) mean .85, [15,20) .7, [25,35) .75, [35,45) .95 (the segment change
# at 35 s breaks the run even though the windows touch); one QC run [20,25).
EXPECTED = [(0.0, 10.0, "lumamba tuab abnormal p=0.850"), (15.0, 5.0, "lumamba tuab abnormal p=0.700"),
            (20.0, 5.0, "lumamba tuab qc_excluded"), (25.0, 10.0, "lumamba tuab abnormal p=0.750"),
            (35.0, 10.0, "lumamba tuab abnormal p=0.950")]


def _document(classification_type: str = "bc", label: str = "abnormal") -> dict:
    rows = [WindowRow(index=k, start_s=s, end_s=s + 5, segment=seg, probabilities={label: p},
                      predicted=[label] if p >= 0.5 else [], qc_pass=not bad, excluded=bad,
                      excluded_reason="qc failed" if bad else None)
            for k, (s, seg, p, bad) in enumerate(WINDOWS)]
    header = {"format": "EDF+D", "reader": "native", "duration_s": 60.0, "start_time": START.isoformat(),
              "channels": 2, "segments": [], "warnings": []}
    model = {"encoder": {"file": None, "sha256": None}, "head": {"id": "x", "sha256": "0"}, "backend": "torch",
             "device": "cpu", "precision": "float32", "classification_type": classification_type}
    return build_report(task="tuab", input_info={"path": "/x.edf", "size": 1, "sha256": "0" * 64, "header": header},
                        rows=rows, labels=[label], summary=summarise(rows, [label], threshold=0.5), model=model,
                        start_time=START)


def _ours(onsets, durations, texts):
    return [(float(o), float(d), str(t)) for o, d, t in zip(onsets, durations, texts) if str(t).startswith("lumamba")]


def test_edf_annotations_read_back_by_mne(tmp_path):
    mne = pytest.importorskip("mne")
    path = write_edf(tmp_path, "rec", _document())
    annotations = mne.read_annotations(path)
    got = _ours(annotations.onset, annotations.duration, annotations.description)
    assert [(o, d) for o, d, _ in got] == [(o, d) for o, d, _ in EXPECTED]
    assert [t for _, _, t in got] == [t for _, _, t in EXPECTED]
    assert any(DISCLAIMER[:60] in str(t) for t in annotations.description)


def test_edf_read_back_by_pyedflib_with_the_recordings_start_and_duration(tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    path = write_edf(tmp_path, "rec", _document())
    reader = pyedflib.EdfReader(str(path))
    try:
        onsets, durations, texts = reader.readAnnotations()
        assert reader.signals_in_file == 0  # TAL only
        assert reader.getFileDuration() == 60
        assert reader.getStartdatetime() == START
        assert "RESEARCH_USE_ONLY" in reader.getRecordingAdditional()
    finally:
        reader.close()
    got = _ours(onsets, durations, texts)
    assert [(o, d) for o, d, _ in got] == [(o, d) for o, d, _ in EXPECTED]


def test_per_channel_outputs_carry_the_channel_as_edfbrowser_reads_it(tmp_path):
    mne = pytest.importorskip("mne")
    path = write_edf(tmp_path, "rec", _document("mc", "FP1-F7"))
    texts = [str(t) for t in mne.read_annotations(path).description if str(t).startswith("lumamba")]
    positives = [t for t in texts if "qc_excluded" not in t]
    assert positives and all(t.endswith("@@FP1-F7") for t in positives)


def test_events_tsv_follows_the_bids_rules(tmp_path):
    document = _document("mc", "FP1-F7")
    tsv, sidecar = write_events(tmp_path, "rec", document)
    assert (tsv.name, sidecar.name) == events_names("rec", "tuab")
    text = tsv.read_text()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0].split("\t") == list(EVENTS_COLUMNS) == ["onset", "duration", "trial_type", "value", "channel"]
    rows = list(csv.reader(lines[1:], delimiter="\t"))
    assert all(len(r) == 5 for r in rows)
    for onset, duration, trial_type, value, channel in rows:
        assert math.isfinite(float(onset)) and float(duration) >= 0  # BIDS: onset/duration numeric
        assert value == "n/a" or 0 <= float(value) <= 1
        assert trial_type and (channel == "n/a" or channel == "FP1-F7")
    assert [(float(r[0]), float(r[1])) for r in rows] == [(o, d) for o, d, _ in EXPECTED]
    qc = [r for r in rows if r[2] == "qc_excluded"]
    assert qc == [["20", "5", "qc_excluded", "n/a", "n/a"]]
    described = json.loads(sidecar.read_text())
    assert set(EVENTS_COLUMNS) <= set(described)
    assert set(described["trial_type"]["Levels"]) == {r[2] for r in rows}
    assert described["onset"]["Units"] == "s" and described["GeneratedBy"]["Disclaimer"] == DISCLAIMER
