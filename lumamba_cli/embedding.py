"""Encoder outputs per window: what a lab needs to fit its own probe on LuMamba's representation.

Windows come from :func:`lumamba_cli.preprocess.prepare` with the ``embed`` recipe (the pre-training preprocessing,
every EEG channel the registry can place) or any task recipe; the encoder runs deterministically (``mask=None``,
no position jitter). An :class:`Embeddings` is saved as one safetensors file: the values, window times, positions,
and a ``lumamba_embeddings`` metadata entry with the provenance and the research-only disclaimer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lumamba_cli import DISCLAIMER, __version__
from lumamba_cli.encoders import encoder_path, file_sha256
from lumamba_cli.errors import WeightsError
from lumamba_cli.fileio import atomic_write_bytes
from lumamba_cli.headfile import read_safetensors_header
from lumamba_cli.preprocess import TaskInput, zscore
from lumamba_cli.recipes import Recipe

if TYPE_CHECKING:
    import torch

    from lumamba_cli.model import LuMamba

METADATA_KEY = "lumamba_embeddings"


class Pool(StrEnum):
    """``mean``: one vector per window (the mean over patches, as the pre-training LeJEPA loss and t-SNE used);
    ``none``: one vector per patch."""

    mean = "mean"
    none = "none"


@dataclass(frozen=True)
class Encoder:
    """An encoder ready to run: an official (or imported) encoder file, or the encoder part of a head file."""

    model: LuMamba
    name: str
    path: Path
    sha256: str
    device: torch.device

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.path), "sha256": self.sha256, "device": str(self.device),
                "backend": self.model.backend}


def load_encoder(encoder: str | Path, *, device: str = "auto", backend: str = "auto") -> Encoder:
    """``encoder``: a registry name (``lejepa-recon-128`` …, verified local copy), an encoder file in the official
    layout, or a lumamba head file (its fine-tuned encoder)."""
    from lumamba_cli.inference import resolve_device
    from lumamba_cli.model import load_model

    candidate = Path(encoder)
    if candidate.suffix in (".safetensors", ".ckpt") or candidate.exists():
        if not candidate.is_file():
            raise WeightsError("encoder file not found", path=candidate)
        path, name = candidate, candidate.stem
    else:
        path, name = encoder_path(str(encoder)), str(encoder)
    target = resolve_device(device)
    model = load_model(path).to(target).float().eval()
    model.set_backend(backend)
    return Encoder(model, name, path, file_sha256(path), target)


@dataclass
class Embeddings:
    """Encoder outputs of one recording's windows."""

    values: np.ndarray  # (N, D) float32 for pool "mean"; (N, S, D) for pool "none"
    start_s: np.ndarray  # (N,) true seconds from the recording start
    segment: np.ndarray  # (N,)
    window_s: float
    channel_names: list[str]
    positions: np.ndarray  # (C, 3) metres, the positions the encoder saw
    pool: Pool
    provenance: dict[str, Any]  # input, montage, recipe, preprocessing, encoder, versions, disclaimer

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save

        tensors = {"embeddings": np.ascontiguousarray(self.values, dtype=np.float32),
                   "start_s": np.ascontiguousarray(self.start_s, dtype=np.float64),
                   "segment": np.ascontiguousarray(self.segment, dtype=np.int64),
                   "positions": np.ascontiguousarray(self.positions, dtype=np.float64)}
        meta = {"disclaimer": DISCLAIMER, "pool": self.pool.value, "window_s": self.window_s,
                "channel_names": self.channel_names, **self.provenance}
        atomic_write_bytes(path, save(tensors, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)}))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Embeddings:
        from safetensors.numpy import load_file

        path = Path(path)
        header = read_safetensors_header(path, what="embeddings file")
        if METADATA_KEY not in header.metadata:
            raise WeightsError(f"has no '{METADATA_KEY}' metadata: not a lumamba embeddings file", path=path)
        meta = json.loads(header.metadata[METADATA_KEY])
        tensors = load_file(str(path))
        provenance = {k: v for k, v in meta.items() if k not in ("disclaimer", "pool", "window_s", "channel_names")}
        return cls(tensors["embeddings"], tensors["start_s"], tensors["segment"], float(meta["window_s"]),
                   list(meta["channel_names"]), tensors["positions"], Pool(meta["pool"]), provenance)


def embed(task_input: TaskInput, encoder: Encoder, *, pool: Pool = Pool.mean, batch_size: int = 64,
          input_info: dict[str, Any], montage: dict[str, Any]) -> Embeddings:
    """Run ``encoder`` over every window of ``task_input`` (deterministic: no mask, no jitter)."""
    import torch

    from lumamba_cli.inference import predict

    recipe: Recipe = task_input.recipe
    reduce = (lambda out: out.mean(dim=1)) if pool == Pool.mean else None
    values, starts, segments = [], [], []
    names: list[str] = []
    positions = np.zeros((0, 3))
    skipped: list[str] = []
    modes: set[str] = set()
    for block in task_input.windows(on_skip=skipped.append):
        if not len(block):
            continue
        x = zscore(block.data, eps=block.eps)
        batches = ((x[i:i + batch_size], np.broadcast_to(block.positions, (len(x[i:i + batch_size]),)
                                                          + block.positions.shape))
                   for i in range(0, len(x), batch_size))
        values.append(predict(encoder.model, batches, encoder.device, encode=True, reduce=reduce).astype(np.float32))
        starts.append(block.start_s)
        segments.append(block.segment)
        names, positions = list(block.channel_names), block.positions
        modes.add(block.mode)
    width = encoder.model.config.d_model
    patches = int(round(recipe.window_s * recipe.target_sfreq)) // encoder.model.config.patch_size
    empty = np.zeros((0, width) if pool == Pool.mean else (0, patches, width), dtype=np.float32)
    provenance = {
        "input": input_info,
        "montage": montage,
        "recipe": {"id": recipe.id, "hash": recipe.hash, "window_s": recipe.window_s, "step_s": recipe.step_s,
                   "target_sfreq": recipe.target_sfreq},
        "preprocessing": {**task_input.policy.to_json(), "modes_used": sorted(modes)},
        "encoder": encoder.describe(),
        "deterministic": "mask=None, no electrode-position jitter",
        "versions": {"lumamba": __version__, "torch": torch.__version__},
        "warnings": list(task_input.recording.warnings) + list(task_input.montage.warnings) + skipped,
    }
    return Embeddings(np.concatenate(values) if values else empty,
                      np.concatenate(starts) if starts else np.zeros(0),
                      np.concatenate(segments) if segments else np.zeros(0, dtype=np.int64),
                      recipe.window_s, names, np.asarray(positions, dtype=np.float64), pool, provenance)
