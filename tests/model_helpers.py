"""Helpers shared by the model tests (``from model_helpers import ...``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np
import torch

from lumamba_cli.model.formula import formula_state_dict


def formula_weights_for(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Formula values (float64) for every key of ``model``; works on a model built on the meta device."""
    return formula_state_dict({key: tuple(value.shape) for key, value in model.state_dict().items()})


def load_formula_weights(model: torch.nn.Module, weights: dict[str, np.ndarray] | None = None) -> torch.nn.Module:
    """Load formula weights into ``model`` strictly, converted once to the model's own dtype.

    The float64 values are cast by the copy into each parameter, so a float64 model gets them exactly and a
    float32 model gets them rounded once (never through an intermediate float32 step).
    """
    if weights is None:
        weights = formula_weights_for(model)
    model.load_state_dict({key: torch.from_numpy(value) for key, value in weights.items()}, strict=True)
    return model
