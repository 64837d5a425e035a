"""Output writers chosen by name (`lumamba screen --format csv,json,html,edf,tsv,all`).

`screening.py` calls :func:`write_task` for each task report and :func:`write_recording` once per recording; the
folder's index page is written by :func:`write_folder`. Heavy imports (matplotlib, edfio) happen inside the
writers, so a run that does not ask for them never loads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from lumamba_cli.errors import UsageError


class OutputFormat(str, Enum):
    csv = "csv"
    json = "json"
    html = "html"
    edf = "edf"
    tsv = "tsv"
    all = "all"


DEFAULT_FORMATS = (OutputFormat.csv, OutputFormat.json)


def parse_formats(values: Iterable[str] | None) -> frozenset[OutputFormat]:
    """Comma-separated and/or repeated names → the set of writers. JSON is always written: it marks a task as
    done for --skip-existing and is what the HTML report and `lumamba report` read."""
    chosen: set[OutputFormat] = set()
    for value in values or ():
        for name in (part.strip().lower() for part in value.split(",")):
            if not name:
                continue
            try:
                chosen.add(OutputFormat(name))
            except ValueError:
                raise UsageError(f"--format: unknown writer {name!r} (choose from "
                                 f"{', '.join(f.value for f in OutputFormat)})") from None
    if not chosen:
        chosen = set(DEFAULT_FORMATS)
    if OutputFormat.all in chosen:
        chosen = set(OutputFormat) - {OutputFormat.all}
    return frozenset(chosen | {OutputFormat.json})


def write_task(formats: frozenset[OutputFormat], out_dir: Path, stem: str, document: dict[str, Any]) -> list[Path]:
    """The per-task exports besides CSV and JSON (which screening writes itself)."""
    written: list[Path] = []
    if OutputFormat.edf in formats:
        from lumamba_cli.exports import write_edf

        written.append(write_edf(out_dir, stem, document))
    if OutputFormat.tsv in formats:
        from lumamba_cli.exports import write_events

        written.extend(write_events(out_dir, stem, document))
    return written


def write_recording(formats: frozenset[OutputFormat], out_dir: Path, stem: str,
                    documents: Sequence[tuple[Path, dict[str, Any]]]) -> list[Path]:
    """The per-recording HTML page, from the task reports just written."""
    if OutputFormat.html not in formats or not documents:
        return []
    from lumamba_cli.html_report import LoadedReport, write_recording_html

    reports = sorted((LoadedReport(path, document) for path, document in documents), key=lambda r: r.task != "qc")
    return [write_recording_html(out_dir, stem, reports)]


def write_folder(formats: frozenset[OutputFormat], out_dir: Path) -> list[Path]:
    """The folder's index page (after the manifest and summary.csv are complete)."""
    if OutputFormat.html not in formats:
        return []
    from lumamba_cli.fileio import atomic_write_bytes
    from lumamba_cli.html_report import INDEX_NAME, index_html

    pages = {path.name[: -len(".report.html")]: path for path in out_dir.glob("*.report.html")}
    atomic_write_bytes(out_dir / INDEX_NAME, index_html(out_dir, pages).encode("utf-8"))
    return [out_dir / INDEX_NAME]
