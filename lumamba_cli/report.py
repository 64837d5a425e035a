"""Per-window rows, the recording-level summary and provenance → CSV and JSON files (+ their JSON Schema).

Reports are the product a researcher keeps, so they are written atomically (a crash leaves either the old file
or the new one, never half of one), carry the research-only disclaimer inside the file itself, and contain no
wall-clock timestamp: the same recording and weights give byte-identical reports.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import math
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from lumamba_cli import DISCLAIMER, __version__
from lumamba_cli.fileio import atomic_write_bytes, write_json
from lumamba_cli.qc import CHANNEL_METRICS, QCWindow
from lumamba_cli.recording import RecordingLike

SCHEMA_VERSION = "1.1"
QC_COLUMNS = ("ptp_max_uv", "line_ratio_median", "hf_ratio_median", "bad_channels")
# Probabilities are rounded so that reports do not depend on the last float32 bits of a BLAS kernel.
PROBABILITY_DECIMALS = 6
QC_TASK = "qc"


# --------------------------------------------------------------------------------------------------- files


def output_names(stem: str, task: str) -> tuple[str, str]:
    """File names (CSV, JSON) of one recording's report for one task; qc-only runs use task ``qc``."""
    return f"{stem}.{task}.windows.csv", f"{stem}.{task}.json"


# ---------------------------------------------------------------------------------------------------- rows


@dataclass
class WindowRow:
    """One analysed window. Windows that fail QC stay in the report, flagged; ``excluded`` only means that
    the window does not count towards the summary."""

    index: int
    start_s: float
    end_s: float
    segment: int = 0
    probabilities: dict[str, float] | None = None
    predicted: list[str] = field(default_factory=list)  # output names predicted (one class, or positive outputs)
    qc_pass: bool = True
    qc_flags: list[str] = field(default_factory=list)
    qc_bad_channels: dict[str, list[str]] = field(default_factory=dict)  # flag → channels (JSON only)
    qc: QCWindow | None = None  # the numbers behind the flags
    excluded: bool = False
    excluded_reason: str | None = None

    @property
    def label(self) -> str | None:
        """The predicted outputs as the report writes them: one class, or the positive outputs joined by ';'."""
        return ";".join(self.predicted) if self.predicted else (None if self.probabilities is None else "")

    def clock(self, start_time: _dt.datetime | None) -> str | None:
        if start_time is None:
            return None
        return (start_time + _dt.timedelta(seconds=self.start_s)).isoformat()


def probability_column(label: str) -> str:
    safe = "".join(ch if ch.isalnum() else "_" for ch in label.strip()).strip("_") or "class"
    return f"p_{safe}"


# ------------------------------------------------------------------------------------------------- summary


def _longest_run(flags: Sequence[bool], rows: Sequence[WindowRow]) -> tuple[int, float]:
    """Longest stretch of consecutive windows above threshold; windows that do not touch (a gap, a segment
    boundary, an excluded window in between) break the run, so a run is always one contiguous stretch of EEG."""
    best_n, best_s = 0, 0.0
    run_n, run_start, prev = 0, 0.0, None
    for flag, row in zip(flags, rows):
        contiguous = prev is not None and row.segment == prev.segment and abs(row.start_s - prev.end_s) < 1e-6
        if flag:
            if run_n and contiguous:
                run_n += 1
            else:
                run_n, run_start = 1, row.start_s
            run_s = row.end_s - run_start
            if run_n > best_n or (run_n == best_n and run_s > best_s):
                best_n, best_s = run_n, run_s
        else:
            run_n = 0
        prev = row
    return best_n, round(best_s, 6)


def summarise(
    rows: Sequence[WindowRow],
    labels: Sequence[str] | None,
    *,
    threshold: float = 0.5,
    positive_label: str | None = None,
) -> dict[str, Any]:
    """Recording-level figures over the windows that are not excluded.

    Upstream scores windows independently and publishes no recording-level rule, so these are descriptive
    statistics only (mean, fraction above threshold, longest run), never a verdict.
    """
    used = [row for row in rows if not row.excluded]
    summary: dict[str, Any] = {
        "threshold": threshold,
        "windows_total": len(rows),
        "windows_used": len(used),
        "windows_excluded": len(rows) - len(used),
        "qc_failed": sum(1 for row in rows if not row.qc_pass),
        "positive_label": positive_label,
        "classes": [],
        "positive": None,
    }
    if not labels:
        return summary
    for label in labels:
        values = [row.probabilities[label] for row in used if row.probabilities is not None]
        above = [value >= threshold for value in values]
        run_n, run_s = _longest_run(above, [row for row in used if row.probabilities is not None])
        entry = {
            "label": label,
            "mean_probability": round(math.fsum(values) / len(values), PROBABILITY_DECIMALS) if values else None,
            "fraction_above_threshold": round(sum(above) / len(values), PROBABILITY_DECIMALS) if values else None,
            "longest_run_windows": run_n,
            "longest_run_s": run_s,
            "predicted": sum(1 for row in used if label in row.predicted),
        }
        summary["classes"].append(entry)
        if label == positive_label:
            summary["positive"] = entry
    return summary


# -------------------------------------------------------------------------------------------------- report


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"lumamba": __version__, "python": platform.python_version()}
    for dist in ("torch", "mne", "numpy", "pyedflib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def build_report(
    *,
    task: str,
    input_info: dict[str, Any],
    rows: Sequence[WindowRow],
    labels: Sequence[str] | None,
    summary: dict[str, Any],
    montage: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    qc: dict[str, Any] | None = None,
    start_time: _dt.datetime | None = None,
    warnings: Iterable[str] = (),
) -> dict[str, Any]:
    """Assemble one recording's report for one task as a JSON-ready dict (validated by :func:`json_schema`)."""
    if qc is not None:
        qc = {**qc, "channel_metrics": channel_metrics(rows, qc.get("channels", []))}
    return {
        "schema_version": SCHEMA_VERSION,
        "disclaimer": DISCLAIMER,
        "task": task,
        "input": input_info,
        "montage": montage,
        "recipe": recipe,
        "model": model,
        "qc": qc,
        "versions": library_versions(),
        "labels": list(labels) if labels else [],
        "summary": summary,
        "warnings": list(warnings),
        "windows": [
            {
                "index": row.index,
                "start_s": round(row.start_s, 6),
                "end_s": round(row.end_s, 6),
                "start_time": row.clock(start_time),
                "segment": row.segment,
                "probabilities": row.probabilities,
                "label": row.label,
                "qc_pass": row.qc_pass,
                "qc_flags": list(row.qc_flags),
                "qc_bad_channels": dict(row.qc_bad_channels),
                "qc_values": _qc_values(row),
                "excluded": row.excluded,
                "excluded_reason": row.excluded_reason,
            }
            for row in rows
        ],
    }


def _qc_values(row: WindowRow) -> dict[str, float | int | None]:
    if row.qc is None:
        return {name: None for name in QC_COLUMNS}
    values = row.qc.values()
    return {name: (None if isinstance(value, float) and not math.isfinite(value) else
                   (value if isinstance(value, int) else float(f"{value:.4g}"))) for name, value in values.items()}


def channel_metrics(rows: Sequence[WindowRow], channels: Sequence[str]) -> dict[str, Any]:
    """Per window and channel, the QC metrics behind the flags (4 significant digits): the report's heat map."""
    out: dict[str, Any] = {"channels": list(channels)}
    for name in CHANNEL_METRICS:
        out[name] = [[float(f"{v:.4g}") for v in row.qc.channel_metrics[name]]
                     if row.qc is not None and row.qc.channel_metrics else None for row in rows]
    return out


def csv_bytes(rows: Sequence[WindowRow], labels: Sequence[str] | None, start_time: _dt.datetime | None) -> bytes:
    """The per-window table, readable by a plain ``pandas.read_csv``: one header line, numeric QC columns, and the
    research-only disclaimer as the value of the last column (``disclaimer``) in the first row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["start_s", "end_s"]
    if start_time is not None:
        header.append("start_time")
    labels = list(labels or [])
    header += [probability_column(label) for label in labels]
    if labels:
        header.append("predicted")
    header += ["qc_pass", "qc_flags", *(f"qc_{name}" for name in QC_COLUMNS), "excluded", "excluded_reason",
               "disclaimer"]
    writer.writerow(header)
    for number, row in enumerate(rows):
        line: list[Any] = [f"{row.start_s:.6f}", f"{row.end_s:.6f}"]
        if start_time is not None:
            line.append(row.clock(start_time))
        for label in labels:
            value = None if row.probabilities is None else row.probabilities.get(label)
            line.append("" if value is None else f"{value:.{PROBABILITY_DECIMALS}f}")
        if labels:
            line.append(row.label or "")
        values = _qc_values(row)
        line += [
            "true" if row.qc_pass else "false",
            ";".join(row.qc_flags),
            *("" if values[name] is None else values[name] for name in QC_COLUMNS),
            "true" if row.excluded else "false",
            row.excluded_reason or "",
            DISCLAIMER if number == 0 else "",
        ]
        writer.writerow(line)
    return buffer.getvalue().encode("utf-8")


def write_csv(path: str | Path, rows: Sequence[WindowRow], labels: Sequence[str] | None,
              start_time: _dt.datetime | None = None) -> Path:
    atomic_write_bytes(path, csv_bytes(rows, labels, start_time))
    return Path(path)


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    return write_json(path, report, indent=1)


# ------------------------------------------------------------------------------------------------- schemas

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_NUM = {"type": ["number", "null"]}

_CLASS_SUMMARY = {
    "type": "object",
    "required": ["label", "mean_probability", "fraction_above_threshold", "longest_run_windows", "longest_run_s"],
    "properties": {
        "label": {"type": "string"},
        "mean_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "fraction_above_threshold": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "longest_run_windows": {"type": "integer", "minimum": 0},
        "longest_run_s": {"type": "number", "minimum": 0},
        "predicted": {"type": "integer", "minimum": 0},
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:lumamba:schema:report:" + SCHEMA_VERSION,
    "title": "lumamba screening report (one recording, one task)",
    "description": DISCLAIMER,
    "type": "object",
    "required": ["schema_version", "disclaimer", "task", "input", "montage", "recipe", "model", "versions",
                 "labels", "summary", "windows"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "disclaimer": {"const": DISCLAIMER},
        "task": {"type": "string", "description": "task recipe id, or 'qc' for the model-free quality screen"},
        "input": {
            "type": "object",
            "required": ["path", "size", "sha256", "header"],
            "properties": {
                "path": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "annotations": {
                    "type": "array",
                    "description": "the recording's own annotations (EDF+ TALs), true seconds from its start",
                    "items": {"type": "object", "required": ["onset_s", "duration_s", "text"],
                              "properties": {"onset_s": {"type": "number"}, "duration_s": _NULLABLE_NUM,
                                             "text": {"type": "string"}}},
                },
                "header": {
                    "type": "object",
                    "required": ["format", "reader", "duration_s", "start_time", "channels", "segments"],
                    "properties": {
                        "format": {"type": "string"},
                        "reader": {"type": "string"},
                        "duration_s": {"type": "number", "minimum": 0},
                        "start_time": _NULLABLE_STR,
                        "channels": {"type": "integer", "minimum": 0},
                        "segments": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["onset_s", "data_start_s", "duration_s"],
                                "properties": {
                                    "onset_s": {"type": "number"},
                                    "data_start_s": {"type": "number"},
                                    "duration_s": {"type": "number", "minimum": 0},
                                },
                            },
                        },
                        "warnings": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
        "montage": {
            "type": ["object", "null"],
            "required": ["rows"],
            "properties": {
                "layout": _NULLABLE_STR,
                "verdict": _NULLABLE_STR,
                "used_channels": {"type": "array", "items": {"type": "string"}},
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["raw", "canonical", "source", "used"],
                        "properties": {
                            "raw": {"type": "string"},
                            "canonical": _NULLABLE_STR,
                            "source": {"type": "string"},
                            "used": {"type": "boolean"},
                            "reason": _NULLABLE_STR,
                        },
                    },
                },
            },
        },
        "recipe": {
            "type": ["object", "null"],
            "required": ["id", "hash", "mode"],
            "properties": {
                "id": {"type": "string"},
                "hash": {"type": "string"},
                "mode": {"enum": ["whole", "chunked"]},
                "deviation": _NULLABLE_STR,
                "window_s": {"type": "number"},
                "step_s": {"type": "number"},
                "target_sfreq": {"type": "number"},
            },
        },
        "model": {
            "type": ["object", "null"],
            "required": ["encoder", "head", "backend", "device", "precision"],
            "properties": {
                "encoder": {
                    "type": "object",
                    "required": ["file", "sha256"],
                    "properties": {"file": _NULLABLE_STR, "sha256": _NULLABLE_STR, "name": _NULLABLE_STR,
                                   "embedded_in_head": {"type": "boolean"}},
                },
                "head": {
                    "type": "object",
                    "required": ["id", "sha256"],
                    "properties": {"id": {"type": "string"}, "sha256": {"type": "string"}, "file": _NULLABLE_STR},
                },
                "backend": {"type": "string"},
                "device": {"type": "string"},
                "precision": {"enum": ["float32", "bfloat16", "float64"]},
                "threads": {"type": ["integer", "null"]},
                "classification_type": _NULLABLE_STR,
            },
        },
        "qc": {
            "type": ["object", "null"],
            "properties": {
                "window_s": {"type": "number"},
                "channels": {"type": "array", "items": {"type": "string"}},
                "channel_metrics": {
                    "type": "object",
                    "description": "per window (in the order of 'windows') and channel (in the order of 'channels'): "
                                   "peak-to-peak µV, line-noise ratio, high-frequency ratio; null where a window "
                                   "has no QC",
                    "required": ["channels", "ptp_uv", "line_ratio", "hf_ratio"],
                },
            },
        },
        "versions": {
            "type": "object",
            "required": ["lumamba", "python", "torch", "mne", "numpy", "pyedflib"],
            "additionalProperties": _NULLABLE_STR,
        },
        "labels": {"type": "array", "items": {"type": "string"}},
        "summary": {
            "type": "object",
            "required": ["threshold", "windows_total", "windows_used", "windows_excluded", "classes", "positive"],
            "properties": {
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "windows_total": {"type": "integer", "minimum": 0},
                "windows_used": {"type": "integer", "minimum": 0},
                "windows_excluded": {"type": "integer", "minimum": 0},
                "qc_failed": {"type": "integer", "minimum": 0},
                "positive_label": _NULLABLE_STR,
                "classes": {"type": "array", "items": _CLASS_SUMMARY},
                "positive": {"oneOf": [{"type": "null"}, _CLASS_SUMMARY]},
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
        "windows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "start_s", "end_s", "start_time", "probabilities", "label", "qc_pass",
                             "qc_flags", "excluded", "excluded_reason"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "start_s": {"type": "number", "minimum": 0},
                    "end_s": {"type": "number", "minimum": 0},
                    "start_time": _NULLABLE_STR,
                    "segment": {"type": "integer", "minimum": 0},
                    "probabilities": {
                        "type": ["object", "null"],
                        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "label": _NULLABLE_STR,
                    "qc_pass": {"type": "boolean"},
                    "qc_flags": {"type": "array", "items": {"type": "string"}},
                    "qc_bad_channels": {"type": "object",
                                        "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                    "qc_values": {
                        "type": "object",
                        "description": "largest peak-to-peak (µV), median line-noise and high-frequency ratios over "
                                       "the window's channels, and how many channels carry a flag",
                        "properties": {"ptp_max_uv": _NULLABLE_NUM, "line_ratio_median": _NULLABLE_NUM,
                                       "hf_ratio_median": _NULLABLE_NUM,
                                       "bad_channels": {"type": ["integer", "null"], "minimum": 0}},
                    },
                    "excluded": {"type": "boolean"},
                    "excluded_reason": _NULLABLE_STR,
                },
            },
        },
    },
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:lumamba:schema:manifest:" + SCHEMA_VERSION,
    "title": "lumamba run manifest: one JSON object per line of manifest.jsonl",
    "description": DISCLAIMER,
    "type": "object",
    "required": ["schema_version", "path", "status", "error", "duration_s", "outputs", "tasks"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "path": {"type": "string", "description": "absolute path of the input recording"},
        "status": {"enum": ["ok", "failed", "skipped"]},
        "error": _NULLABLE_STR,
        "error_code": {"type": ["integer", "null"]},
        "duration_s": {"type": "number", "minimum": 0},
        "outputs": {"type": "array", "items": {"type": "string"}, "description": "paths relative to the manifest"},
        "tasks": {"type": "array", "items": {"type": "string"}},
        "size": {"type": ["integer", "null"]},
        "mtime_ns": {"type": ["integer", "null"]},
        "windows": {"type": ["integer", "null"]},
        "parts": {
            "type": "object",
            "description": "per task: status (ok | failed), the error of a failed task, the summary figures of one "
                           "that ran (the same as in summary.csv)",
            "additionalProperties": {"type": "object", "required": ["status"],
                                     "properties": {"status": {"enum": ["ok", "failed"]},
                                                    "error": _NULLABLE_STR,
                                                    "error_code": {"type": ["integer", "null"]}}},
        },
        "params": {"type": "object", "additionalProperties": {"type": "object"},
                   "description": "per task, the run parameters that shape its reports (compared by "
                                  "--skip-existing)"},
        "finished_utc": _NULLABLE_STR,
    },
}


def json_schema(kind: str = "report") -> dict[str, Any]:
    """The published JSON Schema of a report (``report``) or of one manifest line (``manifest``)."""
    if kind == "report":
        return REPORT_SCHEMA
    if kind == "manifest":
        return MANIFEST_SCHEMA
    raise ValueError(f"unknown schema kind {kind!r} (report or manifest)")


def input_summary(recording: RecordingLike, sha256: str) -> dict[str, Any]:
    """The ``input`` block of a report from an open recording."""
    start = recording.start_time
    return {
        "path": str(Path(recording.path).resolve()) if recording.path.exists() else str(recording.path),
        "size": recording.file_size,
        "sha256": sha256,
        "annotations": [{"onset_s": a.onset_s, "duration_s": a.duration_s, "text": a.text}
                        for a in recording.annotations],
        "header": {
            "format": str(recording.file_format),
            "reader": str(recording.reader),
            "duration_s": float(recording.duration_s),
            "start_time": start.isoformat() if start is not None else None,
            "channels": len(recording.channels),
            "segments": [
                {"onset_s": float(seg.onset_s), "data_start_s": float(seg.data_start_s),
                 "duration_s": float(seg.duration_s)}
                for seg in recording.segments
            ],
            "warnings": list(recording.warnings),
        },
    }
