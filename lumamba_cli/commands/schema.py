"""`lumamba schema`: print the JSON Schema of the reports or of the manifest lines."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from lumamba_cli.console import print_json


class SchemaKind(StrEnum):
    report = "report"
    manifest = "manifest"


def schema(
    kind: Annotated[SchemaKind, typer.Option(
        "--kind", help="report: <stem>.<task>.json files; manifest: each line of manifest.jsonl.")] = SchemaKind.report,
) -> None:
    """Print the JSON Schema (draft 2020-12) that lumamba's reports are validated against, on stdout."""
    from lumamba_cli.report import json_schema

    print_json(json_schema(kind.value))


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
