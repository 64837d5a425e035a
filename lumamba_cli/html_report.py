"""One self-contained HTML page per recording (and an index page per folder) from the JSON reports `screen` wrote.

Everything is embedded (PNG figures as base64, no scripts or styles fetched), so the page opens from a mail
attachment or an air-gapped server. matplotlib is imported here only, with the Agg backend, so a `screen` run
that writes no HTML never pays for it. Long recordings are drawn from at most ``MAX_POINTS`` columns: what is
drawn is downsampled (max per bin, so a short positive burst stays visible), never what the JSON holds.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lumamba_cli import DISCLAIMER
from lumamba_cli.errors import BadInputError
from lumamba_cli.fileio import atomic_write_bytes

MAX_POINTS = 2000  # columns drawn per timeline / heat map: enough for a 1920-pixel screen
MAX_ANNOTATIONS = 300  # recording annotations drawn (and listed); the rest are counted
INDEX_NAME = "index.html"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass
class LoadedReport:
    """One JSON report as read back, with the file it came from."""

    path: Path
    document: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.document["task"])

    @property
    def stem(self) -> str:
        suffix = f".{self.task}.json"
        return self.path.name[: -len(suffix)] if self.path.name.endswith(suffix) else self.path.stem


def load_report(path: Path) -> LoadedReport:
    """Read one report JSON; a file that is not one is refused with its name."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"cannot read this report: {exc}", path=path) from exc
    if not isinstance(document, dict) or "windows" not in document or "task" not in document:
        raise BadInputError("not a lumamba report (no 'task' / 'windows')", path=path)
    return LoadedReport(path, document)


# ------------------------------------------------------------------------------------------------ figures


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bins(starts: np.ndarray, ends: np.ndarray, total_s: float) -> np.ndarray:
    """Bin index of every window on a grid of at most MAX_POINTS columns over the whole recording."""
    n = max(1, min(MAX_POINTS, len(starts)))
    width = max(total_s, float(ends.max()) if len(ends) else 1.0) / n
    return np.minimum((starts / width).astype(int), n - 1), n, width


def timeline_figure(document: dict[str, Any], label: str) -> str:
    """Probability of ``label`` over the recording: threshold line, QC-excluded windows shaded, gaps between
    EDF+D segments (or windows that do not touch) left as gaps, the recording's annotations as vertical marks."""
    plt = _pyplot()
    windows = document["windows"]
    header = document["input"]["header"]
    total = float(header["duration_s"])
    starts = np.array([w["start_s"] for w in windows], dtype=float)
    ends = np.array([w["end_s"] for w in windows], dtype=float)
    probs = np.array([np.nan if w["probabilities"] is None else w["probabilities"].get(label, np.nan)
                      for w in windows], dtype=float)
    excluded = np.array([w["excluded"] for w in windows], dtype=bool)
    fig, ax = plt.subplots(figsize=(12, 2.6))
    if len(windows):
        index, n, width = _bins(starts, ends, total)
        drawn = np.full(n, np.nan)
        shaded = np.zeros(n, dtype=bool)
        covered = np.zeros(n, dtype=bool)
        valid = ~np.isnan(probs)
        # max per bin: a positive burst shorter than a bin must not vanish from the picture
        np.fmax.at(drawn, index[valid], probs[valid])
        np.logical_or.at(shaded, index, excluded)
        np.logical_or.at(covered, index, True)
        drawn[~covered] = np.nan  # no window there (an EDF+D gap): the line breaks
        x = np.arange(n) * width
        ax.step(x, drawn, where="post", color="#1f4e99", lw=1)
        for k in np.flatnonzero(shaded):
            ax.axvspan(x[k], x[k] + width, color="#999999", alpha=0.35, lw=0)
        for k in np.flatnonzero(~covered):
            ax.axvspan(x[k], x[k] + width, facecolor="none", edgecolor="#cccccc", hatch="//", lw=0)
    threshold = float(document["summary"]["threshold"])
    ax.axhline(threshold, color="#c0392b", ls="--", lw=1, label=f"threshold {threshold:g}")
    for annotation in document["input"].get("annotations", [])[:MAX_ANNOTATIONS]:
        ax.axvline(annotation["onset_s"], color="#2e8b57", lw=0.8, alpha=0.8)
    ax.set_xlim(0, max(total, float(ends.max()) if len(ends) else 1.0))
    ax.set_ylim(0, 1)
    # the qc task has no probabilities: its timeline shows the excluded windows and the annotations only
    ax.set_ylabel(f"p({label})" if document.get("labels") else "qc: excluded shaded")
    _time_axis(ax, header.get("start_time"), total)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def _time_axis(ax, start_time: str | None, total: float) -> None:
    """Seconds, or clock time (HH:MM:SS) when the header has a start time."""
    if start_time is None:
        ax.set_xlabel("time from start (s)")
        return
    start = _dt.datetime.fromisoformat(start_time)
    ticks = np.linspace(0, total, 7)
    ax.set_xticks(ticks)
    ax.set_xticklabels([(start + _dt.timedelta(seconds=float(t))).strftime("%H:%M:%S") for t in ticks])
    ax.set_xlabel(f"clock time (recording started {start.isoformat()})")


def heatmap_figure(document: dict[str, Any], values: list[list[float] | None], channels: Sequence[str],
                   title: str) -> str:
    """Channel × time picture of one per-channel value (max per time bin)."""
    plt = _pyplot()
    windows = document["windows"]
    total = float(document["input"]["header"]["duration_s"])
    starts = np.array([w["start_s"] for w in windows], dtype=float)
    ends = np.array([w["end_s"] for w in windows], dtype=float)
    index, n, width = _bins(starts, ends, total)
    grid = np.full((len(channels), n), np.nan)
    for k, row in enumerate(values):
        if row is not None:
            grid[:, index[k]] = np.fmax(grid[:, index[k]], np.asarray(row, dtype=float))
    fig, ax = plt.subplots(figsize=(12, 0.18 * len(channels) + 1.2))
    image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="magma",
                      extent=(0, n * width, len(channels), 0))
    ax.set_yticks(np.arange(len(channels)) + 0.5)
    ax.set_yticklabels(list(channels), fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, pad=0.01)
    _time_axis(ax, document["input"]["header"].get("start_time"), total)
    return _png(fig)


def head_figure(montage: dict[str, Any]) -> str:
    """Electrode positions seen from above (x right, y nose): the file's electrodes used as they are, the positions
    the layout derived (bipolar midpoints, from ``positions_m``), and file channels with a position left unused.
    Channels the layout needs but the file cannot give have no position to draw: the caption lists them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="#444444"))
    ax.plot([-0.1, 0, 0.1], [0.99, 1.1, 0.99], color="#444444")  # nose
    groups: dict[str, list[tuple[str, list[float]]]] = {"present": [], "derived": [], "not used": []}
    for row in montage.get("rows", []):
        if row.get("position_m"):
            groups["present" if row["used"] else "not used"].append((row.get("canonical") or row["raw"],
                                                                     row["position_m"]))
    # the layout's own channels that are not file electrodes (bipolar pairs, interpolations) are the derived ones
    present = {str(name).lower() for name, _ in groups["present"]}
    groups["derived"] = [(name, xyz) for name, xyz in zip(montage.get("used_channels", []),
                                                           montage.get("positions_m", []))
                         if str(name).lower() not in present]
    every = [xyz for members in groups.values() for _, xyz in members]
    scale = max((float(np.hypot(x, y)) for x, y, _ in every), default=1.0) or 1.0
    styles = {"present": ("#1f4e99", "o"), "derived": ("#e67e22", "s"), "not used": ("#aaaaaa", "x")}
    for kind, members in groups.items():
        colour, marker = styles[kind]
        ax.scatter([], [], c=colour, marker=marker, label=f"{kind} ({len(members)})")
        for name, (x, y, _z) in members:
            x, y = x / scale * 0.9, y / scale * 0.9
            ax.scatter([x], [y], c=colour, marker=marker, s=24)
            ax.annotate(str(name), (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return _png(fig)


def missing_channels(montage: dict[str, Any]) -> list[str]:
    """The layout channels the file could not give (status neither present nor derivable)."""
    return [str(q["name"]) for q in montage.get("required", []) if q.get("status") not in ("present", "derivable")]


def per_channel_maps(document: dict[str, Any]) -> list[tuple[str, list[str], list[list[float] | None]]]:
    """For per-channel heads (mc: one output per channel; mmc: 'channel:class'), one channel × time matrix of
    probabilities per class: (class, channels, per-window values)."""
    model = document.get("model") or {}
    kind = (model.get("classification_type") or "").lower()
    if kind not in ("mc", "mmc"):
        return []
    by_class: dict[str, list[str]] = {}
    for output in document.get("labels", []):
        _, _, cls = output.partition(":")
        by_class.setdefault(cls or "positive", []).append(output)
    maps = []
    for cls, outputs in by_class.items():
        values = [None if w["probabilities"] is None else [w["probabilities"].get(o, np.nan) for o in outputs]
                  for w in document["windows"]]
        maps.append((cls, [o.partition(":")[0] for o in outputs], values))
    return maps


# --------------------------------------------------------------------------------------------------- page

_STYLE = """
body{font-family:sans-serif;margin:1.5em;max-width:1300px;color:#222}
.disclaimer{background:#fff3cd;border:1px solid #e0c060;padding:.6em;font-weight:bold}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#eee;cursor:pointer}img{max-width:100%}.warn{color:#a04000}
"""


def _img(data: str, alt: str) -> str:
    return f'<figure><img class="figure" src="data:image/png;base64,{data}" alt="{_e(alt)}"></figure>'


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str], table_id: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _task_section(report: LoadedReport) -> str:
    document = report.document
    parts = [f"<h2>Task {_e(report.task)}</h2>"]
    summary = document["summary"]
    parts.append(_table([[_e(k), _e(summary.get(k))] for k in
                         ("threshold", "windows_total", "windows_used", "windows_excluded", "qc_failed",
                          "positive_label")], ["summary", "value"]))
    if summary["classes"]:
        parts.append(_table([[_e(c["label"]), _e(c["mean_probability"]), _e(c["fraction_above_threshold"]),
                              _e(c["longest_run_s"])] for c in summary["classes"]],
                            ["class", "mean probability", "fraction ≥ threshold", "longest run (s)"]))
    for label in document.get("labels", []):
        parts.append(_img(timeline_figure(document, label), f"timeline {report.task} {label}"))
    if not document.get("labels"):
        parts.append(_img(timeline_figure(document, "qc"), f"timeline {report.task}"))
    qc = document.get("qc") or {}
    metrics = qc.get("channel_metrics") or {}
    channels = metrics.get("channels") or []
    for name, title in (("ptp_uv", "peak-to-peak (µV)"), ("line_ratio", "line-noise ratio"),
                        ("hf_ratio", "high-frequency ratio")):
        values = metrics.get(name)
        if channels and values and any(v is not None for v in values):
            parts.append(_img(heatmap_figure(document, values, channels, f"{report.task}: QC {title} per channel"),
                              f"heatmap {report.task} {name}"))
    for cls, names, values in per_channel_maps(document):
        parts.append(_img(heatmap_figure(document, values, names, f"{report.task}: p({cls}) per channel"),
                          f"heatmap {report.task} p {cls}"))
    if document.get("montage"):
        montage = document["montage"]
        parts.append(f"<h3>Montage ({_e(montage.get('layout'))}; {_e(montage.get('verdict'))})</h3>")
        parts.append(_img(head_figure(montage), f"head {report.task}"))
        missing = missing_channels(montage)
        parts.append(f"<p>Missing (no position to draw): {_e(', '.join(missing) or 'none')}</p>")
        parts.append(_table([[_e(r["raw"]), _e(r["canonical"]), _e(r["source"]), _e(r["used"]), _e(r.get("reason"))]
                             for r in montage["rows"]], ["channel", "canonical", "source", "used", "reason"]))
    provenance = {"recipe": document.get("recipe"), "model": document.get("model"), "versions": document["versions"]}
    parts.append(f"<h3>Provenance</h3><pre>{_e(json.dumps(provenance, indent=1, ensure_ascii=False))}</pre>")
    if document.get("warnings"):
        parts.append("<h3>Warnings</h3><ul>" + "".join(f'<li class="warn">{_e(w)}</li>'
                                                       for w in document["warnings"]) + "</ul>")
    return "\n".join(parts)


def recording_html(reports: Sequence[LoadedReport]) -> str:
    """The page of one recording: every task's report, one after the other."""
    first = reports[0].document
    source = first["input"]
    header = source["header"]
    annotations = source.get("annotations", [])
    listed = "".join(f"<tr><td>{a['onset_s']:.3f}</td><td>{_e(a['text'])}</td></tr>"
                     for a in annotations[:MAX_ANNOTATIONS])
    more = f"<p>… {len(annotations) - MAX_ANNOTATIONS} more annotations</p>" if len(annotations) > MAX_ANNOTATIONS else ""
    body = "\n".join(_task_section(r) for r in reports)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lumamba report: {_e(reports[0].stem)}</title>
<style>{_STYLE}</style></head><body>
<p class="disclaimer">{_e(DISCLAIMER)}</p>
<h1>{_e(reports[0].stem)}</h1>
<p>{_e(source['path'])} · {_e(header['format'])} · {header['duration_s']:.1f} s · {_e(header['channels'])} channels ·
start {_e(header.get('start_time') or 'unknown')} · sha256 {_e(source['sha256'])}</p>
{body}
<h2>Recording annotations</h2><table><tr><th>onset (s)</th><th>text</th></tr>{listed}</table>{more}
<p class="disclaimer">{_e(DISCLAIMER)}</p>
</body></html>
"""


def html_name(stem: str) -> str:
    return f"{stem}.report.html"


def write_recording_html(out_dir: Path, stem: str, reports: Sequence[LoadedReport]) -> Path:
    path = out_dir / html_name(stem)
    atomic_write_bytes(path, recording_html(reports).encode("utf-8"))
    return path


# -------------------------------------------------------------------------------------------------- index

_SORT_SCRIPT = """
document.querySelectorAll('th').forEach(function(th, col){th.addEventListener('click', function(){
 var body = th.closest('table').tBodies[0]; var rows = Array.from(body.rows); var asc = th.dataset.asc !== '1';
 rows.sort(function(a, b){var x = a.cells[col].textContent, y = b.cells[col].textContent;
  var nx = parseFloat(x), ny = parseFloat(y);
  var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y); return asc ? r : -r;});
 th.dataset.asc = asc ? '1' : '0'; rows.forEach(function(r){body.appendChild(r);});});});
"""


def index_html(out_dir: Path, pages: dict[str, Path]) -> str:
    """One sortable row per recording × task from summary.csv's rows (the manifest), failures with reasons."""
    from lumamba_cli.batch import summary_rows

    rows = []
    for entry in summary_rows(out_dir):
        stem = Path(entry["path"]).stem
        link = pages.get(stem)
        name = f'<a href="{_e(link.name)}">{_e(Path(entry["path"]).name)}</a>' if link else _e(Path(entry["path"]).name)
        rows.append([name, _e(entry["task"]), _e(entry["status"]), _e(entry.get("windows_used")),
                     _e(entry.get("mean_probability")), _e(entry.get("fraction_above_threshold")),
                     _e(entry.get("longest_run_s")), _e(entry.get("error") or "")])
    table = _table(rows, ["recording", "task", "status", "windows used", "mean p", "fraction ≥ thr",
                          "longest run (s)", "error"], "runs")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lumamba archive index</title><style>{_STYLE}</style></head>
<body><p class="disclaimer">{_e(DISCLAIMER)}</p><h1>lumamba: {_e(out_dir)}</h1>
<p>Click a column header to sort.</p>{table}<script>{_SORT_SCRIPT}</script></body></html>
"""


def build_folder(out_dir: Path, stems: Sequence[str] | None = None) -> list[Path]:
    """(Re)build the HTML of every recording whose JSON reports lie in ``out_dir`` (or only ``stems``), and the
    folder's index page; the model is never run."""
    grouped: dict[str, list[LoadedReport]] = {}
    for path in sorted(out_dir.glob("*.json")):
        if path.name.startswith("manifest") or path.name.endswith("_events.json"):
            continue  # the run's manifest and the events.tsv sidecars are not reports
        report = load_report(path)
        if stems is None or report.stem in stems:
            grouped.setdefault(report.stem, []).append(report)
    if not grouped:
        raise BadInputError("no lumamba JSON reports (<stem>.<task>.json) in this folder", path=out_dir)
    written = {stem: write_recording_html(out_dir, stem, sorted(reports, key=lambda r: r.task != "qc"))
               for stem, reports in grouped.items()}
    pages = {path.name[: -len(".report.html")]: path for path in out_dir.glob("*.report.html")}
    index = out_dir / INDEX_NAME
    atomic_write_bytes(index, index_html(out_dir, pages).encode("utf-8"))
    return [*written.values(), index]
