"""Encoder outputs of cached windows, cached too: a frozen-encoder head runs the encoder once per window, not once
per window and epoch.

Keyed by the window-cache entry (recipe, input, preprocessing, dtype, tool version) and the encoder's sha256, so
another encoder or another preparation never reuses an entry. Outputs are computed as at inference (eval mode,
``mask=None``): upstream's electrode-position jitter, which acts as augmentation while the encoder runs in training,
is given up; ``lumamba train --no-feature-cache`` keeps the exact upstream regime. ``pooled`` entries hold the mean
over patches (all a linear head or probe sees, 32× smaller); others every patch (the LUNA and Mamba heads).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lumamba_cli.fileio import atomic_write
from lumamba_cli.window_cache import CacheDtype, SplitWindows

if TYPE_CHECKING:
    import torch

    from lumamba_cli.model import LuMamba

FEATURE_FORMAT = 1


def feature_key(window_key: str, encoder_sha256: str, pooled: bool, dtype: CacheDtype) -> str:
    material = {"format": FEATURE_FORMAT, "windows": window_key, "encoder_sha256": encoder_sha256,
                "pooled": pooled, "dtype": str(dtype)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class FeatureSplit:
    """Encoder outputs of every window of a split, with the split's labels."""

    split: SplitWindows
    features: list[np.ndarray]  # per recording: (N, D) pooled, or (N, S, D), memory-mapped
    pooled: bool

    def __len__(self) -> int:
        return len(self.split)

    @property
    def labels(self) -> np.ndarray:
        return self.split.labels

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features float32, labels) of the given windows; each recording's rows in one memory-map read."""
        indices = np.asarray(indices)
        first = self.features[self.split.recording_of[indices[0]]]
        out = np.empty((len(indices), *first.shape[1:]), dtype=np.float32)
        recordings = self.split.recording_of[indices]
        for r in np.unique(recordings):
            rows = np.flatnonzero(recordings == r)
            windows = self.split.window_of[indices[rows]]
            order = np.argsort(windows, kind="stable")
            block = np.empty((len(rows), *first.shape[1:]), dtype=np.float32)
            block[order] = self.features[r][windows[order]]
            out[rows] = block
        return out, self.split.labels[indices]

    def pooled_matrix(self) -> np.ndarray:
        """(M, D) float64 mean over patches of every window, in split order (what a probe is fitted on)."""
        if not self.features:
            return np.zeros((0, 0))
        width = self.features[0].shape[-1]
        out = np.empty((len(self.split), width), dtype=np.float64)
        for r, values in enumerate(self.features):
            rows = np.flatnonzero(self.split.recording_of == r)
            chosen = np.asarray(values[self.split.window_of[rows]], dtype=np.float64)
            out[rows] = chosen if self.pooled else chosen.mean(axis=1)
        return out


def build_features(split: SplitWindows, model: LuMamba, encoder_sha256: str, *, cache_dir: Path,
                   device: torch.device, pooled: bool, dtype: CacheDtype = CacheDtype.float32, batch_size: int = 64,
                   log: Callable[[str], None] | None = None) -> FeatureSplit:
    """The encoder outputs of every recording of ``split``, computed once and cached under ``cache_dir``."""
    from lumamba_cli.inference import predict

    features = []
    computed = 0
    for r, cache in enumerate(split.caches):
        key = feature_key(cache.key, encoder_sha256, pooled, dtype)
        path = cache_dir / f"{key}.features.npy"
        if not path.exists():
            def windows():
                for start in range(0, cache.data.shape[0], batch_size):
                    idx = np.arange(start, min(start + batch_size, cache.data.shape[0]))
                    yield split.recording_windows(r, idx)

            values = predict(model, windows(), device, encode=True,
                             reduce=(lambda out: out.mean(dim=1)) if pooled else None).astype(str(dtype))
            cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda handle, values=values: np.save(handle, values))
            computed += len(values)
        features.append(np.load(path, mmap_mode="r"))
    if log is not None and computed:
        log(f"encoder outputs computed for {computed} windows (cached for later epochs and runs)")
    return FeatureSplit(split, features, pooled)
