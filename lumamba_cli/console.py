"""Console conventions: people read rich output on stderr, programs read JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from lumamba_cli import DISCLAIMER
from lumamba_cli.fileio import json_default

err = Console(stderr=True, highlight=False, soft_wrap=False)

_disclaimer_shown = False


def show_disclaimer(quiet: bool = False) -> None:
    """Print the research-only disclaimer once per process (on stderr)."""
    global _disclaimer_shown
    if not _disclaimer_shown and not quiet:
        err.print(f"[bold yellow]{DISCLAIMER}[/]")
    _disclaimer_shown = True


def reset_disclaimer() -> None:
    global _disclaimer_shown
    _disclaimer_shown = False


def print_json(data: Any) -> None:
    """Write one JSON document to stdout (data for programs; never mixed with rich output)."""
    sys.stdout.write(json.dumps(data, indent=2, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()

