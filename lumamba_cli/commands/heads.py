"""`lumamba heads`: the local store of task heads (list, show, import, remove)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lumamba_cli import DISCLAIMER
from lumamba_cli import heads as H
from lumamba_cli.commands.options import JsonOption
from lumamba_cli.console import clean, err, print_json
from lumamba_cli.resources import heads_dir

class RowOrder(StrEnum):
    script = "script"
    chn_order = "chn_order"


heads_app = typer.Typer(
    help=(
        "Task heads stored in $LUMAMBA_HOME/heads/<task>/ (default: the platform's user data folder). The public "
        "LuMamba release has pre-trained encoders only, no task heads: train one with `lumamba train` or import "
        "one you were given.\n\n" + DISCLAIMER
    ),
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(heads_app, name="heads")


def _text(value: object) -> str:
    """Head metadata is the file author's text: never let it carry terminal control or rich markup."""
    return escape(clean(value))


def _encoder_text(record: H.HeadRecord) -> str:
    encoder = record.metadata.encoder
    return f"{_text(encoder.name)} ({encoder.sha256[:12]})" if encoder else "-"


def _metric_text(record: H.HeadRecord) -> str:
    metrics = record.metadata.metrics
    # Metrics may be flat {"auroc": 0.9} or per split {"validation": {"val_auroc": 0.9}}; show a few flat numbers.
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return _text(", ".join(f"{k} {v:.3g}" for k, v in list(flat.items())[:3]) or "-")


@heads_app.command("list")
def list_command(
    task: Annotated[Optional[str], typer.Option("--task", help="Only heads for this task (recipe id).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List stored heads, newest first (read from each file's own metadata)."""
    problems: list[str] = []
    heads = H.list_heads(task, errors=problems)
    if as_json:
        print_json({"disclaimer": DISCLAIMER, "store": str(heads_dir()), "heads": [h.to_dict() for h in heads],
                    "unreadable": problems})
        return
    for line in problems:
        err.print(f"[yellow]skipped unreadable head file: {_text(line)}[/]")
    if not heads:
        what = f"for task '{_text(task)}' " if task else ""
        err.print(f"no heads {what}in {heads_dir()}")
        err.print("The public LuMamba release has pre-trained encoders only, no task heads: train one with "
                  "`lumamba train --task T ...` or import one with `lumamba heads import FILE`.")
        return
    table = Table(title=f"task heads in {heads_dir()}")
    for column in ("id", "recipe", "head", "encoder", "created", "metrics"):
        table.add_column(column, no_wrap=column in ("id", "recipe", "created"))
    for h in heads:
        meta = h.metadata
        table.add_row(_text(h.id), f"{_text(meta.recipe_id)}@{_text(meta.recipe_hash[:8])}",
                      _text(meta.head_option or "-"), _text(meta.encoder.name) if meta.encoder else "-",
                      _text(meta.created[:10]), _metric_text(h))
    err.print(table)
    err.print("`lumamba heads show ID` for details; ids may be shortened to any unique prefix.")


@heads_app.command("show")
def show_command(
    head: Annotated[str, typer.Argument(help="A head id (or unique id prefix) from `lumamba heads list`, or a head "
                                             "file.")],
    as_json: JsonOption = False,
) -> None:
    """Show everything a head file records about itself: task, recipe, labels, encoder, training, metrics."""
    record = H.show_head(head)
    if as_json:
        print_json({"disclaimer": DISCLAIMER, **record.to_dict(full=True)})
        return
    meta = record.metadata
    table = Table(title=f"head {_text(record.id)}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    rows = [
        ("path", _text(record.path)),
        ("in store", "yes" if record.in_store else "no"),
        ("size", f"{record.size:,} bytes"),
        ("task", _text(meta.task)),
        ("recipe", f"{_text(meta.recipe_id)}@{_text(meta.recipe_hash)}"),
        ("labels", _text(", ".join(meta.labels)) or "-"),
        ("classification", f"{_text(meta.classification_type)} ({meta.num_classes} classes)"),
        ("head", _text(meta.head_option or "-")),
        ("encoder", _encoder_text(record)),
        ("contains encoder", str(meta.contains_encoder)),
        ("created", _text(meta.created)),
        ("tool version", _text(meta.tool_version)),
        ("metrics", _metric_text(record)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    err.print(table)
    for warning in record.warnings:
        err.print(f"[yellow]warning: {_text(warning)}[/]")


@heads_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(
        help="A head file written by `lumamba train` (any machine), or a model fine-tuned with the authors' "
             "BioFoundation pipeline: its Lightning .ckpt or the safetensors ckpt_to_safetensor.py makes of it.")],
    task: Annotated[Optional[str], typer.Option(
        "--task", help="The task an authors'-pipeline checkpoint was fine-tuned for (its file does not say).")] = None,
    labels: Annotated[Optional[List[str]], typer.Option(
        "--labels", help="Its class order, when not the recipe's (repeat: --labels abnormal --labels normal); its "
                         "outputs are reordered to the recipe's.")] = None,
    row_order: Annotated[Optional[RowOrder], typer.Option(
        "--row-order", help="TUH tasks: the bipolar row order it was fine-tuned with; default script (upstream's "
                            "process_raw_eeg.py order, spec Q-TUH).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different head stored under the same id.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Validate a head file (or convert a checkpoint of the authors' pipeline), then copy it into the store."""
    record = H.import_head(file, force=force, task=task, labels=labels,
                           row_order=row_order.value if row_order else None)
    if as_json:
        print_json({"disclaimer": DISCLAIMER, **record.to_dict()})
        return
    err.print(f"[green]imported[/] head {_text(record.id)} for task {_text(record.task)}: {_text(record.path)}")
    for warning in record.warnings:
        err.print(f"[yellow]warning: {_text(warning)}[/]")


@heads_app.command("remove")
def remove_command(
    head: Annotated[str, typer.Argument(help="The id (or unique id prefix) of a stored head.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a head from the store."""
    record = H.remove_head(head)
    if as_json:
        print_json({"disclaimer": DISCLAIMER, "removed": record.id, "path": str(record.path)})
        return
    err.print(f"removed head {_text(record.id)} ({_text(record.path)})")
