"""`lumamba heads`: the local store of task heads (list, show, import, remove)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli import weights as W
from lumamba_cli.console import err, print_json, show_disclaimer

heads_app = typer.Typer(
    help=(
        "Task heads stored in $LUMAMBA_HOME/heads/<task>/ (default: the platform's user data folder). The public "
        "LuMamba release has pre-trained encoders only, no task heads: train one with `lumamba train` or import "
        "one you were given.\n\n" + DISCLAIMER
    ),
    no_args_is_help=True,
)

_JSON = typer.Option(False, "--json", help="Write JSON to stdout instead of a table on stderr.")


def register(app: typer.Typer) -> None:
    app.add_typer(heads_app, name="heads")


def _encoder_text(record: W.HeadRecord) -> str:
    encoder = record.encoder
    if not encoder:
        return "-"
    name = encoder.get("name") or "?"
    sha = encoder.get("sha256") or ""
    return f"{name} ({sha[:12]})" if sha else name


def _metric_text(record: W.HeadRecord) -> str:
    metrics = record.metadata.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return "-"
    # Metrics may be flat {"auroc": 0.9} or per split {"test": {"auroc": 0.9}}; show a few flat numbers.
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            flat[key] = value
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
    return ", ".join(f"{k} {v:.3g}" for k, v in list(flat.items())[:3]) or "-"


@heads_app.command("list")
def list_command(
    task: Optional[str] = typer.Option(None, "--task", help="Only heads for this task (recipe id)."),
    json_output: bool = _JSON,
) -> None:
    """List stored heads, newest first (read from each file's own metadata)."""
    show_disclaimer()
    problems: list[str] = []
    heads = W.list_heads(task, errors=problems)
    if json_output:
        print_json(
            {
                "disclaimer": DISCLAIMER,
                "store": str(W.heads_dir()),
                "heads": [h.to_dict() for h in heads],
                "unreadable": problems,
            }
        )
        return
    for line in problems:
        err.print(f"[yellow]skipped unreadable head file: {line}[/]")
    if not heads:
        what = f"for task '{task}' " if task else ""
        err.print(f"no heads {what}in {W.heads_dir()}")
        err.print("The public LuMamba release has pre-trained encoders only, no task heads: train one with "
                  "`lumamba train --task T ...` or import one with `lumamba heads import FILE`.")
        return
    table = Table(title=f"task heads in {W.heads_dir()}")
    table.add_column("id", no_wrap=True)
    table.add_column("recipe", no_wrap=True)
    table.add_column("head")
    table.add_column("encoder")
    table.add_column("created", no_wrap=True)
    table.add_column("metrics")
    for h in heads:
        encoder = h.encoder or {}
        table.add_row(
            h.id,
            f"{h.recipe_id}@{h.recipe_hash[:8]}",
            str(h.metadata.get("head_option") or "-"),
            str(encoder.get("name") or "-") if isinstance(encoder, dict) else "-",
            (h.created or "-")[:10],
            _metric_text(h),
        )
    err.print(table)
    err.print("`lumamba heads show ID` for details; ids may be shortened to any unique prefix.")


@heads_app.command("show")
def show_command(
    head: str = typer.Argument(..., help="A head id (or unique id prefix) from `lumamba heads list`, or a head file."),
    json_output: bool = _JSON,
) -> None:
    """Show everything a head file records about itself: task, recipe, labels, encoder, training, metrics."""
    show_disclaimer()
    record = W.show_head(head)
    if json_output:
        print_json({"disclaimer": DISCLAIMER, **record.to_dict(full=True)})
        return
    table = Table(title=f"head {record.id}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    meta = record.metadata
    rows = [
        ("path", str(record.path)),
        ("in store", "yes" if record.in_store else "no"),
        ("size", f"{record.size:,} bytes"),
        ("task", record.task),
        ("recipe", f"{record.recipe_id}@{record.recipe_hash}"),
        ("labels", ", ".join(map(str, meta.get("labels") or [])) or "-"),
        ("classification", f"{meta.get('classification_type')} ({meta.get('num_classes')} classes)"),
        ("head", str(meta.get("head_option") or "-")),
        ("encoder", _encoder_text(record)),
        ("contains encoder", str(meta.get("contains_encoder"))),
        ("created", record.created or "-"),
        ("tool version", str(meta.get("tool_version") or "-")),
        ("metrics", _metric_text(record)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    err.print(table)
    for warning in record.warnings:
        err.print(f"[yellow]warning: {warning}[/]")


@heads_app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="A head .safetensors file written by `lumamba train` (any machine)."),
    force: bool = typer.Option(False, "--force", help="Replace a different head stored under the same id."),
    json_output: bool = _JSON,
) -> None:
    """Validate a head file's metadata and task, then copy it into the store."""
    show_disclaimer()
    record = W.import_head(file, force=force)
    if json_output:
        print_json({"disclaimer": DISCLAIMER, **record.to_dict()})
        return
    err.print(f"[green]imported[/] head {record.id} for task {record.task}: {record.path}")
    for warning in record.warnings:
        err.print(f"[yellow]warning: {warning}[/]")


@heads_app.command("remove")
def remove_command(
    head: str = typer.Argument(..., help="The id (or unique id prefix) of a stored head."),
    json_output: bool = _JSON,
) -> None:
    """Delete a head from the store."""
    show_disclaimer()
    record = W.remove_head(head)
    if json_output:
        print_json({"disclaimer": DISCLAIMER, "removed": record.id, "path": str(record.path)})
        return
    err.print(f"removed head {record.id} ({record.path})")
