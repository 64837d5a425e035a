"""Deterministic parity weights (``lumamba-parity-weights-v2``, fixtures' FORMULA.md part A).

Used by the parity tests, by tests that need a checkpoint in the official layout, and by benchmarks.
These are *not* trained weights: they only exist so that an implementation can be compared with the
upstream code's golden outputs without shipping any real weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

FORMULA_VERSION = "lumamba-parity-weights-v2"

# ln(e^0.01 - 1), correctly rounded (FORMULA.md R4; log(expm1) in binary64 is off in the last digits).
_C_DT = -4.600166019324897
_GROUPNORM_WEIGHTS = {
    "patch_embed.proj_in.1.weight",
    "patch_embed.proj_in.4.weight",
    "patch_embed.proj_in.7.weight",
}


def _base(rank: int, numel: int) -> np.ndarray:
    n = np.arange(numel, dtype=np.int64)
    m = (n * n) % 65521
    a = m.astype(np.float64) * 0.37 + 1.3 * float(rank)
    return np.sin(a)


def formula_tensor(key: str, shape: tuple[int, ...], rank: int) -> np.ndarray:
    """Value of one upstream tensor (upstream name and shape, no ``model.`` prefix)."""
    numel = int(np.prod(shape)) if len(shape) else 1
    if key.endswith("A_log"):
        d_state = shape[-1]
        row = np.log(np.arange(1, d_state + 1, dtype=np.float64))
        return np.broadcast_to(row, shape).copy()
    if key.endswith(".D") or key.endswith("temparature"):
        return np.ones(shape, dtype=np.float64)
    s = _base(rank, numel)
    if key.endswith("dt_proj.bias"):
        values = _C_DT + 0.1 * s
    elif ("norm" in key and key.endswith(".weight")) or key in _GROUPNORM_WEIGHTS:
        values = 1.0 + 0.1 * s
    elif len(shape) >= 2:
        fan_in = numel // shape[0]
        values = math.sqrt(2.0 / fan_in) * s
    else:
        values = 0.1 * s
    return values.reshape(shape)


def formula_state_dict(shapes: Mapping[str, Iterable[int]]) -> dict[str, np.ndarray]:
    """Fill every key of ``shapes`` (upstream names) with the formula; ranks follow byte-wise sorting."""
    keys = sorted(shapes)
    return {key: formula_tensor(key, tuple(int(d) for d in shapes[key]), rank) for rank, key in enumerate(keys)}


def save_formula_head(task: str, path: str | Path) -> Path:
    """Write a head file for ``task`` whose weights come from the formula: deterministic and **untrained**.

    It exercises the whole screening pipeline (and its benchmarks) without any real weights; its scores mean
    nothing. The head option, classes and labels come from the task's recipe.
    """
    import torch

    from lumamba_cli.model import LuMamba, LuMambaConfig
    from lumamba_cli.model.checkpoint import HeadMetadata, model_key_shapes, save_head
    from lumamba_cli.recipes import load_recipe

    recipe = load_recipe(task)
    option = None if recipe.head_option == "luna" else recipe.head_option
    config = LuMambaConfig.tiny(num_classes=recipe.num_classes, classifier_option=option,
                                classification_type=recipe.classification_type)
    model = LuMamba(config)
    weights = formula_state_dict(model_key_shapes(config))
    model.load_state_dict({key: torch.from_numpy(value).float() for key, value in weights.items()}, strict=True)
    return save_head(path, model, HeadMetadata(
        task=recipe.id, recipe_id=recipe.id, recipe_hash=recipe.hash, labels=recipe.labels,
        classification_type=recipe.classification_type, num_classes=recipe.num_classes, head_option=option))


def save_formula_encoder(path: str | Path) -> Path:
    """Write an encoder file laid out exactly as an official PulpBio/LuMamba file (the 142 pre-training tensors,
    prefix ``model.``, float32; 16,793,276 bytes) with formula values: **not** the released weights."""
    from safetensors.numpy import save

    from lumamba_cli.fileio import atomic_write_bytes
    from lumamba_cli.model.checkpoint import PREFIX, official_key_shapes

    tensors = {PREFIX + key: np.array(value, dtype=np.float32, order="C")  # np.array keeps 0-d tensors 0-d
               for key, value in formula_state_dict(official_key_shapes()).items()}
    atomic_write_bytes(path, save(tensors))
    return Path(path)
