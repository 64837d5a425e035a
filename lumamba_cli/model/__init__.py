"""The LuMamba network: :class:`LuMamba` (lumamba.py), Mamba scan backends (mamba.py), checkpoint I/O
(checkpoint.py) and the deterministic parity weights (formula.py)."""

from lumamba_cli.model.lumamba import LuMamba, LuMambaConfig
from lumamba_cli.model.mamba import resolve_backend

__all__ = ["LuMamba", "LuMambaConfig", "resolve_backend"]
