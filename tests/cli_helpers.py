"""The CLI runner shared by the CLI tests (``from cli_helpers import run_cli``)."""

from __future__ import annotations

import pytest

from lumamba_cli.cli import main


def run_cli(argv: list[str], capsys, *, join_stderr_lines: bool = True) -> tuple[int, str, str]:
    """Run ``lumamba argv`` in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capsys.readouterr()
    if join_stderr_lines:
        # rich wraps stderr at the terminal width (even inside words); join the lines back for matching.
        err = err.replace("\n", "")
    return int(stop.value.code or 0), out, err


def run_main(argv: list[str], capsys=None) -> tuple[int, str]:
    """Run ``lumamba argv`` in-process; return (exit code, stdout) (stdout only when ``capsys`` is given)."""
    if capsys is not None:
        capsys.readouterr()  # drop what earlier steps printed
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:  # pragma: no cover - main always exits
        code = 0
    return code, (capsys.readouterr().out if capsys is not None else "")
