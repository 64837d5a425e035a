"""Console conventions: people read rich output on stderr, programs read JSON on stdout.

The research-only disclaimer is printed by the stderr console itself, once per run, before the first thing it
shows a person (a table, a progress bar, an error line): no command has to remember it, and a run that shows a
person nothing (``--quiet``, ``--json``) prints nothing but its data, which carries the disclaimer inside.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rich.console import Console

from lumamba_cli import DISCLAIMER
from lumamba_cli.fileio import json_default

# C0/C1 control characters (ANSI escapes start with ESC) except tab and newline: text from a file (labels, head
# metadata) must never move the cursor or recolour the user's terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: object) -> str:
    """``text`` safe to show in a terminal: control characters replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", str(text))


class _PeopleConsole(Console):
    """stderr for people: the disclaimer comes first, once per run."""

    disclaimer_shown = False

    def print(self, *objects: Any, **kwargs: Any) -> None:  # noqa: A003 - rich's name
        if not self.disclaimer_shown:
            self.disclaimer_shown = True
            super().print(f"[bold yellow]{DISCLAIMER}[/]")
        super().print(*objects, **kwargs)


err = _PeopleConsole(stderr=True, highlight=False, soft_wrap=False)


def reset_disclaimer() -> None:
    """A new run (``main`` is called once per run; tests call it many times in one process)."""
    err.disclaimer_shown = False


def print_json(data: Any) -> None:
    """Write one JSON document to stdout (data for programs; never mixed with rich output)."""
    sys.stdout.write(json.dumps(data, indent=2, default=json_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()
