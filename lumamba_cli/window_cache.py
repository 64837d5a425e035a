"""Preprocessed windows of a dataset's recordings, cached on disk so training decodes every recording once.

Each recording's windows (from the recipe's own preprocessing, :func:`lumamba_cli.preprocess.prepare`) are stored
as one ``.npy`` (opened as a memory map) plus a JSON entry, keyed by the recipe hash, the input file's sha256, the
dataset reader, the preprocessing policy, the storage dtype and the tool version. After the first epoch nothing
is decoded again, and memory stays bounded by one batch whatever the recordings' length. The cache may be stored
as float16 (half the size); windows are z-scored after loading, in float32, either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np

import lumamba_cli
from lumamba_cli.datasets import DatasetIndex, Source, open_source, window_labels
from lumamba_cli.errors import BadInputError, MontageError
from lumamba_cli.fileio import atomic_write, sha256_file, write_json
from lumamba_cli.montage import load_registry
from lumamba_cli.preprocess import DEFAULT_CHUNK_S, DEFAULT_CHUNK_THRESHOLD_S, PreprocessPolicy, prepare, zscore
from lumamba_cli.recipes import Recipe
from lumamba_cli.resources import cache_dir as lumamba_cache_dir

CACHE_FORMAT = 1
FLOAT16_MAX = float(np.finfo(np.float16).max)


class CacheDtype(StrEnum):
    """Storage type of cached windows: float16 halves disk and page cache at ~3 significant digits."""

    float32 = "float32"
    float16 = "float16"


def default_cache_dir() -> Path:
    return lumamba_cache_dir("windows")


@dataclass
class CachedWindows:
    """Preprocessed (not z-scored) windows of one recording, memory-mapped from the cache."""

    key: str
    data: np.ndarray  # (N, C, T) float32/float16 memmap, µV
    start_s: np.ndarray  # (N,)
    sfreq: float
    channel_names: list[str]
    positions: np.ndarray  # (C, 3) float32, metres
    sha256: str
    warnings: list[str]
    eps: float  # z-score eps in the stored units (the recipe's)
    modes: list[str] = field(default_factory=list)  # preprocessing modes the blocks actually used


def cache_key(recipe: Recipe, sha256: str, reader: str, policy: PreprocessPolicy,
              dtype: CacheDtype = CacheDtype.float32) -> str:
    # the tool version stands for the preprocessing code (readers, filters, montage derivation): windows cut by
    # another version may differ although recipe and input are the same, so an upgrade must not reuse them
    material: dict = {"format": CACHE_FORMAT, "recipe": recipe.id, "recipe_hash": recipe.hash, "input_sha256": sha256,
                      "reader": reader, "mode": policy.mode.value, "tool_version": lumamba_cli.__version__}
    # only non-default settings enter the key, so entries written before these options existed stay valid
    if (policy.chunk_s, policy.chunk_threshold_s) != (DEFAULT_CHUNK_S, DEFAULT_CHUNK_THRESHOLD_S):
        material["chunking"] = [policy.chunk_s, policy.chunk_threshold_s]
    if dtype != CacheDtype.float32:
        material["dtype"] = str(dtype)
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def load_windows(source: Source, recipe: Recipe, *, cache_dir: Path, policy: PreprocessPolicy = PreprocessPolicy(),
                 dtype: CacheDtype = CacheDtype.float32) -> CachedWindows:
    """Windows of ``source`` from the cache, preprocessing and caching them on the first call.

    ``dtype`` float16 halves the cache on disk and in the page cache; values keep ~3 significant digits
    (relative error ≤ 4.9e-4, far below EEG noise) and the z-score is computed after loading, in float32."""
    dtype = CacheDtype(dtype)
    sha256 = sha256_file(source.path, cached=True)
    key = cache_key(recipe, sha256, source.reader, policy, dtype)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (array_path.exists() and meta_path.exists()):
        _build_entry(source, recipe, policy, array_path, meta_path, sha256, dtype)
    meta = json.loads(meta_path.read_text())
    return CachedWindows(
        key=key,
        data=np.load(array_path, mmap_mode="r"),
        start_s=np.asarray(meta["start_s"], dtype=np.float64),
        sfreq=float(meta["sfreq"]),
        channel_names=list(meta["channel_names"]),
        positions=np.asarray(meta["positions"], dtype=np.float32),
        sha256=sha256,
        warnings=list(meta["warnings"]),
        eps=float(meta["eps"]),
        modes=list(meta["modes"]),
    )


def _build_entry(source: Source, recipe: Recipe, policy: PreprocessPolicy, array_path: Path, meta_path: Path,
                 sha256: str, dtype: CacheDtype) -> None:
    # Blocks stream to a scratch file (bounded memory); the .npy header needs the window count, so the final
    # file is written (atomically) once the count is known.
    array_path.parent.mkdir(parents=True, exist_ok=True)
    scratch_fd, scratch_name = tempfile.mkstemp(dir=array_path.parent, prefix=".windows-", suffix=".raw")
    n_windows, shape_tail, starts, sfreq, eps = 0, None, [], None, 1e-8
    channel_names: list[str] = []
    positions = None
    modes: set[str] = set()
    try:
        with open_source(source) as recording:
            task_input = prepare(recording, recipe, load_registry(), policy)
            warnings = list(recording.warnings)
            with os.fdopen(scratch_fd, "wb") as scratch:
                for block in task_input.windows(on_skip=warnings.append):
                    if not len(block):
                        continue
                    modes.add(block.mode)
                    if dtype == CacheDtype.float16 and np.abs(block.data).max(initial=0.0) > FLOAT16_MAX:
                        # float16 would store inf here, and z-scoring inf gives NaN: refuse rather than train on it
                        raise BadInputError(f"preprocessed values exceed the float16 range (±{FLOAT16_MAX:.0f} µV); "
                                            "use --cache-dtype float32", path=source.path)
                    data = np.ascontiguousarray(block.data, dtype=str(dtype))
                    # the block's own names/positions: the recipe may reorder rows (TUH script order)
                    shape_tail, channel_names, positions = data.shape[1:], block.channel_names, block.positions
                    scratch.write(data.tobytes())
                    n_windows += data.shape[0]
                    starts.extend(float(s) for s in block.start_s)
                    sfreq, eps = float(block.sfreq), float(block.eps)
        if shape_tail is None:
            raise BadInputError(f"recording is shorter than one {recipe.window_s} s window after preprocessing",
                                path=source.path)

        def write_npy(out: BinaryIO) -> None:
            header = {"descr": np.dtype(str(dtype)).str, "fortran_order": False, "shape": (n_windows, *shape_tail)}
            np.lib.format.write_array_header_1_0(out, header)
            with open(scratch_name, "rb") as scratch_in:
                shutil.copyfileobj(scratch_in, out, 1 << 22)

        atomic_write(array_path, write_npy)
        write_json(meta_path, {
            "format": CACHE_FORMAT, "source": str(source.path), "sha256": sha256, "recipe": recipe.id,
            "recipe_hash": recipe.hash, "reader": source.reader, "policy": policy.to_json(), "n_windows": n_windows,
            "modes": sorted(modes), "dtype": str(dtype), "sfreq": sfreq, "eps": eps, "start_s": starts,
            "channel_names": channel_names, "positions": np.asarray(positions, dtype=np.float64).tolist(),
            "warnings": warnings,
        }, indent=None)
    finally:
        Path(scratch_name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- labelled windows


@dataclass
class SplitWindows:
    """All windows of one split: references into the per-recording caches, plus labels."""

    recordings: list[Source]
    caches: list[CachedWindows]
    recording_of: np.ndarray  # (M,) index into recordings
    window_of: np.ndarray  # (M,) index into that recording's windows
    labels: np.ndarray  # (M,), or (M, 22) for per-channel labels

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, n_classes: int) -> list[int]:
        """Windows per class; for per-channel labels, (window, channel) pairs per class (mc: 0 and 1)."""
        return np.bincount(np.asarray(self.labels).ravel(), minlength=n_classes).tolist()

    def modes(self) -> list[str]:
        return sorted({mode for cache in self.caches for mode in cache.modes})

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x (B,C,T) float32 z-scored per window and channel, positions (B,C,3), labels (B,)) for window indices.
        Windows of one recording are read from its memory map in one fancy-indexed call."""
        indices = np.asarray(indices)
        first = self.caches[self.recording_of[indices[0]]]
        x = np.empty((len(indices), *first.data.shape[1:]), dtype=np.float32)
        positions = np.empty((len(indices), *first.positions.shape), dtype=np.float32)
        recordings = self.recording_of[indices]
        for r in np.unique(recordings):
            rows = np.flatnonzero(recordings == r)
            cache = self.caches[r]
            windows = self.window_of[indices[rows]]
            order = np.argsort(windows, kind="stable")  # memory maps read fastest front to back
            block = np.empty((len(rows), *cache.data.shape[1:]), dtype=np.float32)
            block[order] = cache.data[windows[order]]
            x[rows] = zscore(block, eps=cache.eps)
            positions[rows] = cache.positions
        return x, positions, self.labels[indices]

    def recording_windows(self, recording: int, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x z-scored, positions) of windows of one recording, by their index in that recording."""
        cache = self.caches[recording]
        x = zscore(np.asarray(cache.data[windows], dtype=np.float32), eps=cache.eps)
        return x, np.broadcast_to(cache.positions, (len(windows),) + cache.positions.shape)

    def batches(self, batch_size: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        """(x, positions) of every window in order, ``batch_size`` at a time (for inference.predict)."""
        for start in range(0, len(self), batch_size):
            x, positions, _ = self.batch(np.arange(start, min(start + batch_size, len(self))))
            yield x, positions


def build_split(
    index: DatasetIndex,
    sources: Iterable[Source],
    recipe: Recipe,
    *,
    cache_dir: Path,
    policy: PreprocessPolicy = PreprocessPolicy(),
    cache_dtype: CacheDtype = CacheDtype.float32,
    on_error: Callable[[Source, Exception], None] | None = None,
    progress: Callable[[Source], None] | None = None,
) -> SplitWindows:
    """Cached windows and labels of ``sources``. A recording that cannot be read or whose montage cannot build
    the recipe's layout goes to ``on_error`` (raised when there is none)."""
    recordings, caches, rec_of, win_of, labels = [], [], [], [], []
    for source in sources:
        if progress is not None:
            progress(source)
        try:
            cached = load_windows(source, recipe, cache_dir=cache_dir, policy=policy, dtype=cache_dtype)
            window_s = cached.data.shape[2] / cached.sfreq
            y = window_labels(index, source, cached.start_s, window_s, cached.sfreq, cached.channel_names)
        except (BadInputError, MontageError) as exc:
            if on_error is None:
                raise
            on_error(source, exc)
            continue
        r = len(recordings)
        recordings.append(source)
        caches.append(cached)
        rec_of.append(np.full(len(y), r, dtype=np.int64))
        win_of.append(np.arange(len(y), dtype=np.int64))
        labels.append(y)

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    return SplitWindows(recordings, caches, cat(rec_of), cat(win_of), cat(labels))
