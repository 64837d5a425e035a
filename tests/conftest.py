"""Shared test fixtures: where ../shared lives, and skips with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# rich wraps stderr at the console width (80 without a terminal): wide enough that no line the tests read wraps.
# Set before lumamba_cli.console builds its console.
os.environ["COLUMNS"] = "400"

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUMAMBA_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FIXTURES = SHARED / "fixtures"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the real recordings and parity fixtures live in ../shared (set LUMAMBA_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _need(DATA)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _need(FIXTURES)


@pytest.fixture(scope="session")
def absence_edf(shared_data) -> Path:
    return _need(shared_data / "eeghdf_absence_epilepsy.edf")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's real head store or HF cache from a test."""
    home = tmp_path_factory.mktemp("lumamba_home")
    monkeypatch.setenv("LUMAMBA_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))


@pytest.fixture(autouse=True)
def _one_torch_thread_under_xdist(monkeypatch):
    """Two xdist workers on two cores: more torch threads than cores only makes them wait for each other (the CLI,
    run in-process, reads LUMAMBA_THREADS)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        monkeypatch.setenv("LUMAMBA_THREADS", "1")
        torch.set_num_threads(1)
