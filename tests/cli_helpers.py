"""The CLI runner shared by the CLI tests (``from cli_helpers import run_cli``)."""

from __future__ import annotations

import pytest

from lumamba_cli.cli import main


def run_cli(argv: list[str], capsys=None) -> tuple[int, str, str]:
    """Run ``lumamba argv`` in-process; return (exit code, stdout, stderr). Without ``capsys`` the output is not
    captured and comes back empty. (conftest widens the console, so rich wraps no line the tests read.)"""
    if capsys is not None:
        capsys.readouterr()  # drop what earlier steps printed
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return int(stop.value.code or 0), out, err
