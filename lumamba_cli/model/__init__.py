"""The LuMamba network: :class:`LuMamba` (lumamba.py), Mamba scan backends (mamba.py), checkpoint I/O
(checkpoint.py: :func:`load_model` reads official encoders, Lightning checkpoints and lumamba head files) and the
deterministic parity weights (formula.py)."""

from lumamba_cli.model.checkpoint import load_model
from lumamba_cli.model.lumamba import LuMamba, LuMambaConfig
from lumamba_cli.model.mamba import resolve_backend

__all__ = ["LuMamba", "LuMambaConfig", "load_model", "resolve_backend"]
