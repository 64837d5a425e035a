"""The ``lumamba`` command line. Parsing and printing only: every command calls into a pipeline module.

Each command group lives in ``lumamba_cli/commands/<name>.py`` and exposes ``register(app)``.
"""

from __future__ import annotations

import sys

import typer

from lumamba_cli import DISCLAIMER, __version__
from lumamba_cli.console import err
from lumamba_cli.errors import ExitCode, LumambaError

app = typer.Typer(
    name="lumamba",
    help=(
        "Screen EEG recordings (EDF/EDF+/BDF) with LuMamba.\n\n"
        f"{DISCLAIMER}\n\n"
        "Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input file, 4 montage unusable, "
        "5 weights/head problem, 6 some files of a batch failed, 7 network/offline, 8 cannot write the output."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lumamba {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    threads: int = typer.Option(
        0, "--threads", min=0,
        help="CPU threads for the model and filters (0: $LUMAMBA_THREADS, else every core this process may use, from "
             "its affinity and cgroup quota). Idle threads spin on an idle machine and wait passively when it is "
             "loaded or --jobs starts worker processes.",
    ),
) -> None:
    from lumamba_cli import threads as thread_plan

    _state["debug"] = debug
    thread_plan.configure(threads or None)


def _register_commands() -> None:
    from lumamba_cli.commands import (embed, evaluate, heads, info, manifest, montage, report, schema, screen,
                                      train, weights)

    for module in (info, montage, screen, embed, manifest, weights, heads, train, evaluate, schema, report):
        module.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: turns LumambaError into one line and its exit code."""
    from rich.markup import escape

    from lumamba_cli import console
    from lumamba_cli.console import clean

    console.reset_disclaimer()  # once per run, also when tests call main() repeatedly in one process
    try:
        # With standalone_mode=False Click returns (not raises) the code of `raise typer.Exit(n)`.
        result = app(args=argv, standalone_mode=False)
    except LumambaError as exc:
        if _state["debug"]:
            raise
        # A file name is data: its control characters and [markup] must reach the terminal as inert text.
        err.print(f"[bold red]error:[/] {escape(clean(exc.line()))}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(int(exc.code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as exc:  # click usage errors and real bugs
        # Typer may vendor its own click, so recognise click's exceptions by shape rather than by class.
        if hasattr(exc, "exit_code") and hasattr(exc, "show"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(int(ExitCode.INTERRUPTED))
        if _state["debug"]:
            raise
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(clean(str(exc)))} "
            "(this is a bug; rerun with --debug and report the traceback)",
            soft_wrap=True,
        )
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(result if isinstance(result, int) else 0)
