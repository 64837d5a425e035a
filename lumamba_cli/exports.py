"""Viewer and BIDS exports of one JSON report: an annotation-only EDF+ file and a BIDS-style ``events.tsv``.

Both are built from the report document alone (what `lumamba report` also reads), so they can be rebuilt
without the model. Runs of positive windows are merged into one event per run; a run breaks where windows stop
touching (a gap, a segment change, an excluded or negative window in between), as in the report's summary.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumamba_cli import DISCLAIMER
from lumamba_cli.fileio import atomic_write_bytes, write_json

PER_CHANNEL_KINDS = ("mc", "mmc")  # classification types whose outputs are one per (bipolar) channel
EVENTS_COLUMNS = ("onset", "duration", "trial_type", "value", "channel")
QC_EVENT = "qc_excluded"
# The EDF header field "data record duration" (8 ASCII bytes at offset 244): see below why it is set here.
_RECORD_DURATION_FIELD = slice(244, 252)
_TAL_TEXT_MAX = 200  # characters per annotation text: EDFbrowser shows longer ones cut anyway


@dataclass(frozen=True)
class Event:
    """One merged run: of positive windows of one output, or of QC-excluded windows (``output`` None)."""

    onset_s: float
    duration_s: float
    trial_type: str
    value: float | None  # mean probability over the run's windows; None for QC runs
    channel: str | None  # the channel of a per-channel output
    label: str | None

    def text(self, task: str) -> str:
        if self.value is None:
            body = f"lumamba {task} {QC_EVENT}"
        else:
            body = f"lumamba {task} {self.label} p={self.value:.3f}"
        # EDFbrowser reads a trailing '@@<channel>' as the channel the annotation belongs to.
        return (body + (f"@@{self.channel}" if self.channel else ""))[:_TAL_TEXT_MAX]


def _output_channel(document: dict[str, Any], output: str) -> tuple[str, str | None]:
    """(label, channel) of one output: per-channel heads name outputs by channel ('FP1-F7' or 'FP1-F7:cls')."""
    model = document.get("model") or {}
    if (model.get("classification_type") or "").lower() not in PER_CHANNEL_KINDS:
        return output, None
    channel, _, cls = output.partition(":")
    return (cls or "positive"), channel


def _runs(windows: list[dict[str, Any]], member) -> list[tuple[float, float, list[dict[str, Any]]]]:
    """Maximal runs of touching windows for which ``member(window)`` holds: (onset, end, windows)."""
    runs: list[tuple[float, float, list[dict[str, Any]]]] = []
    previous = None
    for window in windows:
        if not member(window):
            previous = None
            continue
        touching = (previous is not None and window.get("segment", 0) == previous.get("segment", 0)
                    and window["start_s"] <= previous["end_s"] + 1e-6)
        if touching:
            onset, _, members = runs[-1]
            runs[-1] = (onset, max(window["end_s"], runs[-1][1]), members + [window])
        else:
            runs.append((window["start_s"], window["end_s"], [window]))
        previous = window
    return runs


def events(document: dict[str, Any]) -> list[Event]:
    """Every event of one report, sorted by onset: positive runs per output, then QC-excluded runs."""
    threshold = float(document["summary"]["threshold"])
    windows = document["windows"]
    found: list[Event] = []
    for output in document.get("labels", []):
        label, channel = _output_channel(document, output)

        def positive(w: dict[str, Any], output: str = output) -> bool:
            return (not w["excluded"] and w["probabilities"] is not None
                    and w["probabilities"].get(output, 0.0) >= threshold)

        for onset, end, members in _runs(windows, positive):
            mean = sum(w["probabilities"][output] for w in members) / len(members)
            found.append(Event(round(onset, 6), round(end - onset, 6), f"{document['task']}_{label}",
                               round(mean, 6), channel, label))
    for onset, end, _members in _runs(windows, lambda w: w["excluded"]):
        found.append(Event(round(onset, 6), round(end - onset, 6), QC_EVENT, None, None, None))
    return sorted(found, key=lambda e: (e.onset_s, e.trial_type, e.channel or ""))


# ---------------------------------------------------------------------------------------------------- EDF+


def edf_bytes(document: dict[str, Any]) -> bytes:
    """An annotation-only EDF+ file (one 'EDF Annotations' signal, no data signals) holding the report's events,
    with the recording's start date/time and duration."""
    import edfio

    header = document["input"]["header"]
    start = _dt.datetime.fromisoformat(header["start_time"]) if header.get("start_time") else None
    duration = float(header["duration_s"])
    task = document["task"]
    annotations = [edfio.EdfAnnotation(e.onset_s, e.duration_s, e.text(task)) for e in events(document)]
    # The disclaimer goes where EDFbrowser shows it first: the recording identification (80 characters in all,
    # so its short form), and as a first annotation at 0 s with the full text.
    annotations.insert(0, edfio.EdfAnnotation(0.0, None, DISCLAIMER[:_TAL_TEXT_MAX]))
    edf = edfio.Edf(
        [], annotations=annotations, starttime=start.time().replace(microsecond=0) if start else None,
        recording=edfio.Recording(startdate=start.date() if start else None,
                                  additional=("lumamba", task, "RESEARCH_USE_ONLY_NOT_FOR_DIAGNOSIS")),
    )
    data = bytearray(edf.to_bytes())
    # edfio writes annotation-only files as one data record of duration 0 (as EDF+ allows); the task asks for the
    # recording's duration, which an annotation-only file can carry as that one record's duration.
    field = f"{duration:<8.8g}"[:8].encode("ascii")
    data[_RECORD_DURATION_FIELD] = field.ljust(8)
    return bytes(data)


def edf_name(stem: str, task: str) -> str:
    return f"{stem}.{task}.annotations.edf"


def write_edf(out_dir: Path, stem: str, document: dict[str, Any]) -> Path:
    path = out_dir / edf_name(stem, document["task"])
    atomic_write_bytes(path, edf_bytes(document))
    return path


# ------------------------------------------------------------------------------------------------ events.tsv


def _cell(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))


def events_tsv(document: dict[str, Any]) -> str:
    lines = ["\t".join(EVENTS_COLUMNS)]
    for e in events(document):
        lines.append("\t".join(_cell(v) for v in (e.onset_s, e.duration_s, e.trial_type, e.value, e.channel)))
    return "\n".join(lines) + "\n"


def events_sidecar(document: dict[str, Any]) -> dict[str, Any]:
    """The JSON sidecar describing every column (BIDS: LongName/Description/Levels/Units)."""
    task = document["task"]
    levels = {QC_EVENT: "windows that failed the signal-quality checks (excluded from the summary)"}
    for output in document.get("labels", []):
        label, _ = _output_channel(document, output)
        levels[f"{task}_{label}"] = f"windows where the {task} head gave p({label}) ≥ the threshold"
    return {
        "onset": {"Description": "start of the run of windows, from the start of the recording", "Units": "s"},
        "duration": {"Description": "length of the run of touching windows", "Units": "s"},
        "trial_type": {"Description": "what the run is", "Levels": levels},
        "value": {"Description": "mean probability over the run's windows (n/a for QC runs)"},
        "channel": {"Description": "the channel of a per-channel output (n/a for whole-recording outputs)"},
        "GeneratedBy": {"Name": "lumamba", "Task": task,
                        "Threshold": document["summary"]["threshold"], "Disclaimer": DISCLAIMER},
    }


def events_names(stem: str, task: str) -> tuple[str, str]:
    return f"{stem}.{task}_events.tsv", f"{stem}.{task}_events.json"


def write_events(out_dir: Path, stem: str, document: dict[str, Any]) -> list[Path]:
    tsv_name, json_name = events_names(stem, document["task"])
    atomic_write_bytes(out_dir / tsv_name, events_tsv(document).encode("utf-8"))
    return [out_dir / tsv_name, write_json(out_dir / json_name, events_sidecar(document), indent=1)]

