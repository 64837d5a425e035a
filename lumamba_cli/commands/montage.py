"""`lumamba montage`: check a recording's channels against a task's layout, list and show layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli.commands.options import AliasesOption, JsonOption
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.errors import MontageError, UsageError
from lumamba_cli.montage import MontageReport, get_layout, list_layouts, load_registry
from lumamba_cli.recording import open_recording

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


def _fmt_xyz(xyz: Any) -> str:
    if xyz is None:
        return ""
    return ", ".join(f"{1000 * float(v):.1f}" for v in xyz)


def _report_tables(report: MontageReport) -> None:
    table = Table(title=f"Channels of {escape(clean(report.path))}", title_justify="left", show_lines=False)
    for column in ("#", "label", "kind", "name", "source", "x, y, z (mm)", "use", "why / feeds"):
        table.add_column(column, overflow="fold", no_wrap=column == "x, y, z (mm)")
    for row in report.rows:
        source = row.match.source if row.kind == "eeg" else "non-EEG"
        use = "[green]used[/]" if row.used else "[dim]dropped[/]"
        why = ", ".join(row.feeds) if row.used and report.layout else row.reason
        table.add_row(str(row.index), escape(clean(row.label)), row.kind, row.match.canonical or "", source,
                      _fmt_xyz(row.position), use, escape(clean(why)))
    err.print(table)
    if report.layout:
        need = Table(title=f"Layout {report.layout}", title_justify="left")
        for column in ("channel", "status", "how"):
            need.add_column(column, overflow="fold")
        colour = {"present": "green", "derivable": "cyan", "missing": "red"}
        for q in report.required:
            need.add_row(q.name, f"[{colour[q.status]}]{q.status}[/]", escape(clean(q.how)))
        err.print(need)
    for warning in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(clean(warning))}", highlight=False)


@montage_app.command("check")
def check(
    recording: Annotated[Path, typer.Argument(help="EDF/EDF+/BDF recording to check.", show_default=False)],
    task: Annotated[Optional[str], typer.Option(
        "--task", metavar="TASK", help="Check against the layout (and rate needs) of this task's recipe "
                                       "(e.g. tuab, mumtaz).")] = None,
    layout: Annotated[Optional[str], typer.Option(
        "--layout", metavar="NAME", help="Check against this layout (see `lumamba montage list`).")] = None,
    aliases: AliasesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Map every channel to an electrode position and say whether TASK/LAYOUT can be built.

    Exit 0 when usable, 4 when not, 3 when the file cannot be read. Without --task/--layout: usable when at least one
    EEG channel has a known position.
    """
    from lumamba_cli.preprocess import prepare
    from lumamba_cli.recipes import load_recipe

    if task and layout:
        raise UsageError("give --task or --layout, not both")
    registry = load_registry(aliases)
    # a montage check needs only the header: the recording is closed again at once
    with open_recording(recording) as rec:
        if task:
            task_input = prepare(rec, load_recipe(task), registry)
            report = task_input.montage
            verdict = task_input.problem or report.verdict
        else:
            report = registry.resolve(rec, get_layout(layout, registry=registry) if layout else None,
                                      on_missing="ignore")
            task_input, verdict = None, report.verdict
    report.path = str(recording)
    usable = task_input.usable if task_input is not None else report.usable
    if as_json:
        data = report.to_dict()
        data.update(task=task, usable=usable, verdict=verdict, registry=registry.stats(), disclaimer=DISCLAIMER)
        print_json(data)
    else:
        _report_tables(report)
        style = "bold green" if usable else "bold red"
        err.print(f"[{style}]{escape(clean(verdict))}[/]", highlight=False)
    if task_input is not None:
        task_input.require()
    elif not report.usable:
        raise MontageError(verdict, path=recording, hint="add an alias with --aliases FILE if the file names them "
                                                         "differently")


@montage_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the named layouts and the electrode registry's size."""
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
    name: Annotated[str, typer.Argument(help="Layout name (see `lumamba montage list`).", show_default=False)],
    aliases: AliasesOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a layout's channels, in order, with their positions (metres; bipolar = midpoint)."""
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
