"""`lumamba report OUT_DIR`: (re)build the HTML pages and index.html from the JSON reports already there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumamba_cli import DISCLAIMER
from lumamba_cli.console import err
from lumamba_cli.errors import BadInputError


def report(
    out_dir: Annotated[Path, typer.Argument(help="A folder `lumamba screen` wrote (its <stem>.<task>.json files).",
                                            show_default=False)],
) -> None:
    """Build <stem>.report.html for every recording whose JSON reports are in OUT_DIR, and OUT_DIR/index.html.

    The model is not run: the pages are drawn from the JSON reports as they are. Exit code 3 when OUT_DIR is not a
    folder, holds no report, or a report cannot be read.
    """
    from lumamba_cli.html_report import build_folder

    if not out_dir.is_dir():
        raise BadInputError("not a folder", path=out_dir)
    written = build_folder(out_dir)
    for path in written:
        err.print(str(path), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    import inspect

    app.command("report", help=f"{inspect.getdoc(report)}\n\n{DISCLAIMER}")(report)
