"""Where the bundled data files (``montages/``, ``models/``) are.

They sit at the top of the repository so reviewers can read them; the wheel copies them into
``lumamba_cli/_data/``. An installed package finds the copy, an editable checkout the originals.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """Return the directory of bundled data ``name`` ("montages" or "models")."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"bundled data folder '{name}' not found next to {_PACKAGE}; the installation is incomplete "
        "(reinstall lumamba)"
    )


def data_file(name: str, *parts: str) -> Path:
    return data_dir(name).joinpath(*parts)
