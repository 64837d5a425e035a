"""Where lumamba's files are: the bundled data (``montages/``, ``models/``) and the user's own folders.

The bundled files sit at the top of the repository so reviewers can read them; the wheel copies them into
``lumamba_cli/_data/``. An installed package finds the copy, an editable checkout the originals.

The user's folders: ``$LUMAMBA_HOME`` (default: the platform's user data folder) holds imported encoders and the
head store; caches (window and feature caches, checksums) go to ``$LUMAMBA_HOME/cache`` when it is set, else to
the platform's user cache folder. Both are resolved from the environment at each call.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

HOME_ENV = "LUMAMBA_HOME"

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


def lumamba_home() -> Path:
    """``$LUMAMBA_HOME``, else the platform's user data folder for lumamba."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lumamba", appauthor=False))


def cache_dir(name: str | None = None) -> Path:
    """``$LUMAMBA_HOME/cache[/name]``, else the platform's user cache folder for lumamba."""
    env = os.environ.get(HOME_ENV)
    if env:
        root = Path(env).expanduser() / "cache"
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("lumamba", appauthor=False))
    return root / name if name else root


def heads_dir() -> Path:
    return lumamba_home() / "heads"


def imported_encoders_dir() -> Path:
    return lumamba_home() / "encoders"
