"""`lumamba montage`: check a recording's channels against a task's layout, list and show layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli.console import err, print_json, show_disclaimer
from lumamba_cli.errors import BadInputError, MontageError, UsageError

montage_app = typer.Typer(
    name="montage",
    help=(
        "Electrode positions and channel layouts: check which channels of a recording a task can use.\n\n"
        f"{DISCLAIMER}"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def register(app: typer.Typer) -> None:
    app.add_typer(montage_app, name="montage")


def layout_for_task(task: str) -> str | None:
    """Layout name of a task from its recipe (``models/tasks/<task>.yaml``); None means every EEG channel (qc)."""
    from lumamba_cli.recipes import load_recipe

    layout = load_recipe(task).layout
    return str(layout) if layout is not None else None


def _open_channels(path: Path) -> Any:
    """The recording, closed again at once: a montage check needs only the header (its channels are plain data)."""
    from lumamba_cli.recording import open_recording

    with open_recording(path) as recording:
        return recording


def _fmt_xyz(xyz: Any) -> str:
    if xyz is None:
        return ""
    return ", ".join(f"{1000 * float(v):.1f}" for v in xyz)


def _report_tables(report: Any) -> None:
    table = Table(title=f"Channels of {report.path}", title_justify="left", show_lines=False)
    for column in ("#", "label", "kind", "name", "source", "x, y, z (mm)", "use", "why / feeds"):
        table.add_column(column, overflow="fold", no_wrap=column == "x, y, z (mm)")
    for row in report.rows:
        source = row.match.source if row.kind == "eeg" else "non-EEG"
        use = "[green]used[/]" if row.used else "[dim]dropped[/]"
        why = ", ".join(row.feeds) if row.used and report.layout else row.reason
        table.add_row(str(row.index), row.label, row.kind, row.match.canonical or "", source,
                      _fmt_xyz(row.position), use, why)
    err.print(table)
    if report.layout:
        need = Table(title=f"Layout {report.layout}", title_justify="left")
        for column in ("channel", "status", "how"):
            need.add_column(column, overflow="fold")
        colour = {"present": "green", "derivable": "cyan", "missing": "red"}
        for q in report.required:
            need.add_row(q.name, f"[{colour[q.status]}]{q.status}[/]", q.how)
        err.print(need)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    style = "bold green" if report.usable else "bold red"
    err.print(f"[{style}]{report.verdict}[/]", highlight=False)


@montage_app.command("check")
def check(
    recording: Path = typer.Argument(..., help="EDF/EDF+/BDF recording to check.", show_default=False),
    task: str | None = typer.Option(
        None, "--task", metavar="TASK", help="Check against the layout of this task's recipe (e.g. tuab, mumtaz)."
    ),
    layout: str | None = typer.Option(
        None, "--layout", metavar="NAME", help="Check against this layout (see `lumamba montage list`)."
    ),
    aliases: Path | None = typer.Option(
        None, "--aliases", metavar="FILE",
        help=(
            "Extra names and positions: a TSV with a header row 'name, canonical' (alias → known electrode) "
            "and/or 'name, x, y, z' (metres, head frame), or JSON {\"aliases\": {...}, \"positions\": {...}}."
        ),
    ),
    as_json: bool = typer.Option(False, "--json", help="Write the report as JSON on stdout."),
) -> None:
    """Map every channel to an electrode position and say whether TASK/LAYOUT can be built.

    Exit 0 when usable, 4 when not, 3 when the file cannot be read. Without --task/--layout: usable when at least one
    EEG channel has a known position.
    """
    from lumamba_cli.montage import get_layout, load_registry

    show_disclaimer(quiet=False)
    if task and layout:
        raise UsageError("give --task or --layout, not both")
    if not recording.exists():
        raise BadInputError("no such file", path=recording)
    registry = load_registry(aliases)
    layout_name = layout_for_task(task) if task else layout
    chosen = get_layout(layout_name, registry=registry) if layout_name else None
    rec = _open_channels(recording)
    report = registry.resolve(rec, chosen, on_missing="ignore")
    report.path = str(recording)
    if task and report.usable and report.derivation is not None and report.derivation.sfreq:
        # The channels may all be there and still be unusable: the recipe filters at the native rate.
        from lumamba_cli.recipes import load_recipe

        problem = load_recipe(task).native_rate_problem(float(report.derivation.sfreq))
        if problem:
            report.usable = False
            report.derivation = None
            report.verdict = f"not usable for {task}: {problem}"
    if as_json:
        data = report.to_dict()
        data["task"] = task
        data["registry"] = registry.stats()
        data["disclaimer"] = DISCLAIMER
        print_json(data)
    else:
        _report_tables(report)
    if not report.usable:
        names_missing = any(q.status == "missing" for q in report.required) or report.layout is None
        raise MontageError(report.verdict, path=recording,
                           hint="add an alias with --aliases FILE if the file names them differently"
                           if names_missing else None)


@montage_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Write the layouts and registry statistics as JSON on stdout."),
) -> None:
    """List the named layouts and the electrode registry's size."""
    from lumamba_cli.montage import get_layout, list_layouts, load_registry

    show_disclaimer(quiet=False)
    registry = load_registry()
    layouts = [get_layout(name, registry=registry) for name in list_layouts()]
    if as_json:
        print_json({
            "layouts": [
                {"name": lay.name, "kind": lay.kind, "frame": lay.frame, "channels": len(lay.channels),
                 "description": lay.description} for lay in layouts
            ],
            "registry": registry.stats(),
            "disclaimer": DISCLAIMER,
        })
        return
    table = Table(title="Layouts", title_justify="left")
    for column in ("name", "kind", "frame", "C", "description"):
        table.add_column(column, overflow="fold")
    for lay in layouts:
        table.add_row(lay.name, lay.kind, lay.frame, str(len(lay.channels)), lay.description)
    err.print(table)
    stats = registry.stats()
    raw = ", ".join(f"{name} ({n})" for name, n in stats["raw_frame_tables"].items())
    err.print(
        f"Registry: {stats['head_frame_electrodes']} electrodes (MNE standard_1005, head frame), "
        f"raw-frame tables: {raw}, {stats['aliases']} aliases.",
        highlight=False,
    )


@montage_app.command("show")
def show(
    name: str = typer.Argument(..., help="Layout name (see `lumamba montage list`).", show_default=False),
    aliases: Path | None = typer.Option(
        None, "--aliases", metavar="FILE", help="TSV or JSON file with extra aliases/positions (see `montage check`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Write the channels and positions as JSON on stdout."),
) -> None:
    """Show a layout's channels, in order, with their positions (metres; bipolar = midpoint)."""
    from lumamba_cli.montage import get_layout, load_registry

    show_disclaimer(quiet=False)
    registry = load_registry(aliases)
    lay = get_layout(name, registry=registry)
    positions = lay.positions(dtype=float)
    rows = []
    for index, (channel, xyz) in enumerate(zip(lay.channels, positions)):
        match = registry.canonical(channel)
        rows.append({
            "index": index,
            "name": channel,
            "canonical": match.canonical,
            "source": match.source,
            "position_m": [round(float(v), 9) for v in xyz],
        })
    if as_json:
        print_json({"name": lay.name, "kind": lay.kind, "frame": lay.frame, "description": lay.description,
                    "source": lay.source, "channels": rows, "disclaimer": DISCLAIMER})
        return
    table = Table(title=f"{lay.name}: {lay.kind}, {lay.frame} frame, {len(lay.channels)} channels",
                  title_justify="left", caption=lay.source, caption_justify="left")
    for column in ("#", "channel", "electrode(s)", "source", "x (m)", "y (m)", "z (m)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        x, y, z = row["position_m"]
        table.add_row(str(row["index"]), row["name"], row["canonical"] or "", row["source"],
                      f"{x:.6f}", f"{y:.6f}", f"{z:.6f}")
    err.print(table)
