"""Windows → probabilities: device and precision choice, batching, the classification-type output mapping.

Follows spec §4: ``model.eval()``, ``mask=None`` (a zero mask would add random jitter to the positions), the
per-window z-score of preprocess.zscore right before the model, one montage (one set of positions) per batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from lumamba_cli.errors import UsageError, WeightsError

# mmc heads emit 22·6 logits that upstream views as (-1, 6): the class count is hard-coded there (spec §3.0).
MMC_CLASSES = 6


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` takes the GPU when torch sees one; ``cuda`` without one is a usage error, not a silent CPU run."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but torch sees no CUDA GPU (use --device cpu or auto)")
        return torch.device(requested)
    raise UsageError(f"unknown device {requested!r} (auto, cpu or cuda)")


def precision_for(device: torch.device) -> str:
    """bf16 autocast on GPU, as the heads were fine-tuned (bf16-mixed); float32 on CPU, where bf16 is slow
    and would only lose accuracy."""
    return "bfloat16" if device.type == "cuda" else "float32"


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
    """Scores of N windows: ``probabilities[i]`` maps each output name to a probability, ``labels[i]`` the
    predicted label (argmax for bc/mcc; for mc/mmc the channels/classes that are predicted, joined by ';')."""

    probabilities: list[dict[str, float]]
    labels: list[str]


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
    """Runs one head-carrying LuMamba over windows of one montage at a time."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        classification_type: str,
        labels: Sequence[str],
        device: str = "auto",
        backend: str = "auto",
        batch_size: int = 64,
    ):
        if batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        self.device = resolve_device(device)
        self.precision = precision_for(self.device)
        self.classification_type = classification_type.lower()
        self.labels = list(labels)
        self.batch_size = int(batch_size)
        self.model = model.to(self.device).float().eval()
        self.backend = _select_backend(self.model, backend, self.device)
        self._mask_positional = _wants_mask_argument(self.model)

    def describe(self) -> dict[str, str]:
        return {"backend": self.backend, "device": str(self.device), "precision": self.precision}

    @torch.inference_mode()
    def logits(self, windows: np.ndarray, positions: np.ndarray) -> torch.Tensor:
        """Raw head outputs for (N, C, T) windows **already z-scored**, positions (C, 3) shared by all windows."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        locations = torch.as_tensor(np.asarray(positions, dtype=np.float32), device=self.device)
        outputs = []
        for start in range(0, windows.shape[0], self.batch_size):
            batch = torch.from_numpy(windows[start:start + self.batch_size]).to(self.device, non_blocking=True)
            batch_locations = locations.unsqueeze(0).expand(batch.shape[0], -1, -1).contiguous()
            with self._autocast():
                out = _call_model(self.model, batch, batch_locations, self._mask_positional)
            outputs.append(out.float().cpu())
        if not outputs:
            return torch.empty((0, 0))
        return torch.cat(outputs, dim=0)

    def score(self, windows: np.ndarray, positions: np.ndarray, channel_names: Sequence[str] | None = None
              ) -> WindowScores:
        """Probabilities and predicted labels of (N, C, T) z-scored windows."""
        logits = self.logits(windows, positions)
        if logits.shape[0] == 0:
            return WindowScores([], [])
        probs = probabilities_from_logits(logits, self.classification_type).numpy().astype(np.float64)
        flat = probs.reshape(probs.shape[0], -1)
        names = output_names(self.classification_type, self.labels, channel_names, flat.shape[1])
        if len(names) != flat.shape[1]:
            raise WeightsError(
                f"the head emits {flat.shape[1]} outputs but the task has {len(names)} labels ({', '.join(names)})"
            )
        rows = [{name: float(round(value, 6)) for name, value in zip(names, row)} for row in flat]
        return WindowScores(rows, _predicted(self.classification_type, probs, names))

    def _autocast(self):
        if self.precision == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _predicted(kind: str, probs: np.ndarray, names: list[str]) -> list[str]:
    if kind in ("bc", "mcc", "ml"):
        return [names[int(i)] for i in probs.argmax(axis=1)]
    if kind == "mc":
        # Upstream rounds each sigmoid: the label lists the channels predicted positive.
        return [";".join(name for name, p in zip(names, row) if p >= 0.5) for row in probs]
    labels = []
    for row in probs:  # (channels, 6): argmax class per channel
        per_channel = []
        for c, cls in enumerate(row.argmax(axis=1)):
            channel, class_name = names[c * MMC_CLASSES + int(cls)].rsplit(":", 1)
            per_channel.append(f"{channel}={class_name}")
        labels.append(";".join(per_channel))
    return labels


def _call_model(model: torch.nn.Module, x: torch.Tensor, locations: torch.Tensor,
                mask_positional: bool) -> torch.Tensor:
    out = model(x, None, locations) if mask_positional else model(x, locations)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out


def _wants_mask_argument(model: torch.nn.Module) -> bool:
    """The contract is ``model(x, channel_locations)``; an upstream-style signature ``(x, mask, locations)``
    is accepted too, with ``mask=None`` so that no random position jitter is added."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return False
    return len(params) > 1 and params[1] == "mask"


def _select_backend(model: Any, requested: str, device: torch.device) -> str:
    """Ask the model for the scan backend; report what actually runs."""
    requested = (requested or "auto").lower()
    if requested not in ("auto", "torch", "mamba-ssm"):
        raise UsageError(f"unknown backend {requested!r} (auto, torch or mamba-ssm)")
    if requested == "mamba-ssm" and device.type != "cuda":
        raise UsageError("--backend mamba-ssm needs a CUDA device (mamba-ssm has no CPU kernels)")
    for setter in ("set_backend", "use_backend"):
        if hasattr(model, setter):
            chosen = getattr(model, setter)(requested)
            if isinstance(chosen, str):
                return chosen
            break
    current = getattr(model, "backend", None)
    if isinstance(current, str) and current != "auto":
        return current
    if requested == "mamba-ssm":
        return "mamba-ssm"
    return "torch"
