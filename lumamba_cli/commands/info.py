"""`lumamba info REC`: what a recording holds, before anything is computed from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lumamba_cli import DISCLAIMER, __version__
from lumamba_cli.channels import unit_to_uv
from lumamba_cli.commands.options import JsonOption, ReaderOption
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.recording import Reader, Recording, open_recording


def _seconds(value: float) -> str:
    minutes, seconds = divmod(value, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    clock = f"{hours:d}:{minutes:02d}:{seconds:06.3f}"
    return f"{value:g} s ({clock})"


def info(
    recording: Annotated[Path, typer.Argument(metavar="REC", help="EDF, EDF+ or BDF(+) recording to describe.")],
    as_json: JsonOption = False,
    reader: ReaderOption = Reader.auto,
    scan_flat: Annotated[bool, typer.Option(
        "--scan-flat",
        help="Read all samples to flag constant (flat) channels; without it only the header can show a flat channel.",
    )] = False,
    max_annotations: Annotated[int, typer.Option(
        "--max-annotations", min=0, help="How many annotations the table lists (--json always gives all).")] = 20,
) -> None:
    """Describe a recording: format, start, duration, channels (kind, rate, unit, range), segments, annotations."""
    with open_recording(recording, reader=reader) as rec:
        if scan_flat:
            flat = rec.scan_flat()
            if flat:
                rec.warnings.append("flat (constant) channels: " + ", ".join(repr(c.label) for c in flat))
        if as_json:
            described = rec.to_dict(with_annotations=True)
            described["lumamba_version"] = __version__
            described["disclaimer"] = DISCLAIMER
            print_json(described)
            return
        _show(rec, max_annotations)


def _show(rec: Recording, max_annotations: int) -> None:
    err.print(f"[bold]{escape(clean(rec.path))}[/]")
    start = rec.start_time.isoformat(sep=" ") if rec.start_time else "unknown"
    err.print(
        f"  format {rec.file_format} · read with {rec.reader} · {rec.file_size:,} bytes\n"
        f"  start {start} (local clock of the recording) · stored data {_seconds(rec.duration_s)}\n"
        f"  {len(rec.channels)} channels · {len(rec.segments)} segment(s) · {len(rec.annotations)} annotation(s)"
    )

    table = Table(title="Channels", title_justify="left", show_edge=False, pad_edge=False)
    for column, justify in (
        ("#", "right"),
        ("label", "left"),
        ("kind", "left"),
        ("Hz", "right"),
        ("unit", "left"),
        ("×µV", "right"),
        ("physical range", "right"),
        ("flat", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")
    for channel in rec.channels:
        table.add_row(
            str(channel.index),
            escape(clean(channel.label)),
            channel.kind,
            f"{channel.sfreq:g}",
            escape(clean(channel.unit)) or "—",
            _scale(channel),
            f"{channel.physical_min:g} … {channel.physical_max:g}",
            {True: "[red]yes[/]", False: "no", None: "?"}[channel.flat],
        )
    err.print(table)

    if len(rec.segments) > 1:
        segments = Table(title="Contiguous segments (EDF+D)", title_justify="left", show_edge=False, pad_edge=False)
        for column in ("#", "true onset s", "stored-data start s", "duration s"):
            segments.add_column(column, justify="right")
        for number, segment in enumerate(rec.segments):
            segments.add_row(
                str(number), f"{segment.onset_s:g}", f"{segment.data_start_s:g}", f"{segment.duration_s:g}"
            )
        err.print(segments)

    if rec.annotations and max_annotations:
        notes = Table(title="Annotations", title_justify="left", show_edge=False, pad_edge=False)
        notes.add_column("onset s", justify="right")
        notes.add_column("duration s", justify="right")
        notes.add_column("text", overflow="fold")
        for annotation in rec.annotations[:max_annotations]:
            duration = "" if annotation.duration_s is None else f"{annotation.duration_s:g}"
            notes.add_row(f"{annotation.onset_s:.3f}", duration, escape(clean(annotation.text)))
        err.print(notes)
        if len(rec.annotations) > max_annotations:
            err.print(f"  … {len(rec.annotations) - max_annotations} more (use --json for all)")

    for warning in rec.warnings:
        err.print(f"[yellow]warning:[/] {escape(clean(warning))}", markup=True, highlight=False)


def _scale(channel) -> str:
    if channel.to_uv is not None:
        return f"{channel.to_uv:g}"
    # A unit we understand but that is no voltage (%, bpm) is not a defect; an unknown one is.
    return "not a voltage" if unit_to_uv(channel.unit)[1] else "[red]unknown[/]"


def register(app: typer.Typer) -> None:
    app.command("info")(info)
