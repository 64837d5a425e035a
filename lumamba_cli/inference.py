"""Windows → model outputs → probabilities: the one device choice, the one batched forward pass, and the
classification-type output mapping.

Follows spec §4: ``model.eval()``, ``mask=None`` (a zero mask would add random jitter to the positions), the
per-window z-score of preprocess.zscore right before the model. Every window carries its own positions, so a
batch may mix montages. ``screen``, ``embed``, ``evaluate`` and training's validation all call :func:`predict`;
training steps call :func:`run_model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from lumamba_cli.errors import UsageError, WeightsError
from lumamba_cli.model import LuMamba

# mmc heads emit 22·6 logits that upstream views as (-1, 6): the class count is hard-coded there (spec §3.0).
MMC_CLASSES = 6


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` takes the GPU when torch sees one; ``cuda`` (or ``cuda:N``) without one is a usage error, not a
    silent CPU run. The only place a device is chosen."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda" or (requested.startswith("cuda:") and requested[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but torch sees no CUDA GPU (use --device cpu or auto)")
        device = torch.device(requested)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {requested}: torch sees {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise UsageError(f"unknown device {requested!r} (auto, cpu, cuda or cuda:N)")


def precision_for(device: torch.device) -> str:
    """bf16 autocast on GPU, as the heads were fine-tuned (bf16-mixed); float32 on CPU, where bf16 is slow
    and would only lose accuracy."""
    return "bfloat16" if device.type == "cuda" else "float32"


def _autocast(device: torch.device):
    if precision_for(device) == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_model(model: LuMamba, x: np.ndarray, positions: np.ndarray, device: torch.device, *,
              jitter: bool = False, encode: bool = False) -> torch.Tensor:
    """One batch through ``model`` on ``device`` (bf16 autocast on CUDA): logits, or with ``encode`` the encoder
    output (B, S, Q·E). ``x`` (B, C, T) z-scored, ``positions`` (B, C, 3). Grad follows the caller's mode; the
    output stays on ``device``, in float32."""
    batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device, non_blocking=True)
    locations = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.float32)).to(device, non_blocking=True)
    with _autocast(device):
        out = model.encode(batch, locations, location_jitter=jitter) if encode else \
            model(batch, locations, location_jitter=jitter)
    return out.float()


def predict(model: LuMamba, batches: Iterable[tuple[np.ndarray, np.ndarray]], device: torch.device, *,
            encode: bool = False, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> np.ndarray:
    """Outputs for every (x, positions) batch in eval mode without grad, deterministic (no mask, no jitter),
    concatenated on the CPU as float64. ``reduce`` maps each batch's output before it leaves the device (e.g. a
    mean over patches for pooled embeddings)."""
    model.eval()
    parts = []
    with torch.inference_mode():
        for x, positions in batches:
            out = run_model(model, x, positions, device, encode=encode)
            if reduce is not None:
                out = reduce(out)
            parts.append(out.cpu().numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def batches_of(windows: np.ndarray, positions: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, positions) batches of ``batch_size`` windows that share one (C, 3) montage."""
    for start in range(0, windows.shape[0], batch_size):
        chunk = windows[start:start + batch_size]
        yield chunk, np.broadcast_to(positions, (chunk.shape[0],) + positions.shape)


def probabilities_from_logits(logits: torch.Tensor, classification_type: str) -> torch.Tensor:
    """Upstream's output mapping (spec §3.0): softmax for bc/mcc/ml, sigmoid for mc, sigmoid over (…, 6) for mmc."""
    logits = logits.float()
    kind = classification_type.lower()
    if kind in ("bc", "mcc", "ml"):
        return torch.softmax(logits, dim=1)
    if kind == "mc":
        return torch.sigmoid(logits)
    if kind == "mmc":
        if logits.ndim == 3:  # the model already viewed them as (B, channels, classes)
            return torch.sigmoid(logits)
        channels = logits.shape[1] // MMC_CLASSES
        if channels * MMC_CLASSES != logits.shape[1]:
            raise WeightsError(f"an mmc head must emit a multiple of {MMC_CLASSES} logits, got {logits.shape[1]}")
        return torch.sigmoid(logits.reshape(logits.shape[0], channels, MMC_CLASSES))
    raise WeightsError(f"unknown classification type {classification_type!r} (bc, mcc, ml, mc or mmc)")


@dataclass
class WindowScores:
    """Scores of N windows: ``probabilities[i]`` maps each output name to a probability, ``predicted[i]`` lists
    the output names predicted (the argmax class for bc/mcc; the positive channels for mc; each channel's argmax
    ``channel:class`` output for mmc)."""

    probabilities: list[dict[str, float]]
    predicted: list[list[str]]


def output_names(classification_type: str, labels: Sequence[str], channel_names: Sequence[str] | None,
                 num_outputs: int) -> list[str]:
    """Column names of the probabilities: class labels for bc/mcc, ``channel`` for mc, ``channel:class`` for mmc."""
    kind = classification_type.lower()
    if kind in ("bc", "mcc", "ml"):
        return list(labels)
    channels = list(channel_names or [])
    if kind == "mc":
        # mc recipes name their outputs (one per bipolar channel); fall back to the montage's names.
        if len(labels) == num_outputs:
            return list(labels)
        return channels if len(channels) == num_outputs else [f"out{i}" for i in range(num_outputs)]
    classes = list(labels) if len(labels) == MMC_CLASSES else [str(i) for i in range(MMC_CLASSES)]
    per_channel = num_outputs // MMC_CLASSES
    channels = channels if len(channels) == per_channel else [f"ch{i}" for i in range(per_channel)]
    return [f"{channel}:{cls}" for channel in channels for cls in classes]


class Scorer:
    """Runs one head-carrying LuMamba over z-scored windows and maps its outputs to named probabilities."""

    def __init__(self, model: LuMamba, *, classification_type: str, labels: Sequence[str], device: str = "auto",
                 backend: str = "auto", batch_size: int = 64):
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        self.device = resolve_device(device)
        self.precision = precision_for(self.device)
        self.classification_type = classification_type.lower()
        self.labels = list(labels)
        self.batch_size = int(batch_size)
        self.model = model.to(self.device).float().eval()
        if backend == "mamba-ssm" and self.device.type != "cuda":
            raise UsageError("--backend mamba-ssm needs a CUDA device (mamba-ssm has no CPU kernels)")
        try:
            self.model.set_backend(backend)
        except ValueError as exc:
            raise UsageError(f"--backend {backend}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        # On a CPU the thread count is part of how a result was computed: oneDNN convolutions and the SIMD tails of
        # elementwise ops split work by thread, so probabilities can differ in the 6th decimal between counts.
        threads = torch.get_num_threads() if self.device.type == "cpu" else None
        return {"backend": self.model.backend, "device": str(self.device), "precision": self.precision,
                "threads": threads}

    def logits(self, windows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Raw head outputs for (N, C, T) windows **already z-scored**, positions (C, 3) shared by all windows."""
        return predict(self.model, batches_of(windows, positions, self.batch_size), self.device)

    def score(self, windows: np.ndarray, positions: np.ndarray, channel_names: Sequence[str] | None = None
              ) -> WindowScores:
        """Probabilities and predicted labels of (N, C, T) z-scored windows."""
        if windows.shape[0] == 0:
            return WindowScores([], [])
        logits = torch.from_numpy(self.logits(windows, positions))
        probs = probabilities_from_logits(logits, self.classification_type).numpy().astype(np.float64)
        flat = probs.reshape(probs.shape[0], -1)
        names = output_names(self.classification_type, self.labels, channel_names, flat.shape[1])
        if len(names) != flat.shape[1]:
            raise WeightsError(
                f"the head emits {flat.shape[1]} outputs but the task has {len(names)} labels ({', '.join(names)})"
            )
        rows = [{name: float(round(value, 6)) for name, value in zip(names, row)} for row in flat]
        return WindowScores(rows, _predicted(self.classification_type, probs, names))


def _predicted(kind: str, probs: np.ndarray, names: list[str]) -> list[list[str]]:
    if kind in ("bc", "mcc", "ml"):
        return [[names[int(i)]] for i in probs.argmax(axis=1)]
    if kind == "mc":
        # Upstream rounds each sigmoid: the channels predicted positive.
        return [[name for name, p in zip(names, row) if p >= 0.5] for row in probs]
    # mmc: (channels, 6) per window, the argmax class of every channel
    return [[names[c * MMC_CLASSES + int(cls)] for c, cls in enumerate(row.argmax(axis=1))] for row in probs]
