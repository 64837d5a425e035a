"""Evaluate a trained head on labelled data (``lumamba evaluate``): per-window and per-recording metrics with
bootstrap 95 % intervals, the confusion matrices, and the recipe's published numbers beside them.

Upstream reports per-window metrics only and ranks binary AUROC/AUPR by the raw class-1 logit (spec §3.0).
Here the default ranking score is the class probability; ``auroc_score="logit"`` reproduces upstream, and
the result always says which one was used. The per-recording level (mean of window probabilities, a
lumamba addition) is what a screening user usually cares about; its interval resamples recordings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lumamba_cli import DISCLAIMER, __version__
from lumamba_cli.errors import BadInputError, UsageError


@dataclass
class EvaluateOptions:
    task: str
    data: Path
    dataset: str = "manifest"
    head: str | None = None
    split: str = "test"  # test | val | train | all
    auroc_score: str = "probability"  # probability | logit
    bootstrap: int = 1000
    seed: int = 0
    events: Path | None = None
    labels_file: Path | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    batch_size: int = 64


def _field(meta: Any, name: str, default: Any = None) -> Any:
    if isinstance(meta, dict):
        return meta.get(name, default)
    value = getattr(meta, name, default)
    if value is default and hasattr(meta, "extra") and isinstance(meta.extra, dict):
        return meta.extra.get(name, default)
    return value


def predict(model, split, device, batch_size: int) -> np.ndarray:
    """Logits (M, K) float64 for every window of ``split``; deterministic (no mask, no jitter, eval mode)."""
    import torch

    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            idx = np.arange(start, min(start + batch_size, len(split)))
            x_np, pos_np, _ = split.batch(idx)
            x = torch.from_numpy(x_np).to(device)
            pos = torch.from_numpy(np.ascontiguousarray(pos_np, dtype=np.float32)).to(device)
            out = model(x, pos)
            logits = out[0] if isinstance(out, tuple) else out
            parts.append(logits.float().cpu().numpy().astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def evaluate(options: EvaluateOptions, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    from lumamba_cli import datasets, metrics, weights
    from lumamba_cli.model import checkpoint
    from lumamba_cli.recipes import load_recipe
    from lumamba_cli.train import pick_device

    if options.split not in ("test", "val", "train", "all"):
        raise UsageError(f"--split must be test, val, train or all (got {options.split!r})")
    if options.auroc_score not in ("probability", "logit"):
        raise UsageError(f"--auroc-score must be probability or logit (got {options.auroc_score!r})")
    recipe = load_recipe(options.task)
    datasets.check_request(options.dataset, Path(options.data))
    head_path = weights.resolve_head(recipe.id, options.head, recipe=recipe)
    model, meta = checkpoint.load_head(head_path)
    weights.check_head_matches(meta, recipe, path=head_path)
    labels = list(recipe.labels)
    n_classes = len(labels)
    warnings: list[str] = []

    training = _field(meta, "training") or {}
    data_summary = training.get("data") or {}
    split_seed = int(data_summary.get("split_seed", training.get("seed", options.seed)))
    index = datasets.discover(
        options.dataset, Path(options.data), labels, events_csv=options.events, apava_labels=options.labels_file
    )
    assignment = datasets.assign_splits(
        index.sources, seed=split_seed,
        val_fraction=float(training.get("val_fraction", 0.2)), test_fraction=float(training.get("test_fraction", 0.15)),
    )
    if options.split == "all":
        chosen = list(index.sources)
    else:
        chosen = [s for s in index.sources if assignment[s.subject] == options.split]
    if not chosen:
        raise BadInputError(f"no recordings fall in the {options.split!r} split", path=options.data)
    trained_on = set((data_summary.get("split_subjects") or {}).get("train", [])) | set(
        (data_summary.get("split_subjects") or {}).get("val", [])
    )
    leaked = sorted({s.subject for s in chosen} & trained_on)
    if leaked and options.split in ("test", "all"):
        warnings.append(
            f"{len(leaked)} subject(s) evaluated here were in this head's training or validation split "
            f"(e.g. {leaked[0]}): the estimate is optimistic"
        )

    cache_dir = Path(options.cache_dir) if options.cache_dir else datasets.default_cache_dir()
    failures: list[str] = []
    split = datasets.build_split(
        index, chosen, recipe, cache_dir=cache_dir,
        on_error=lambda source, exc: failures.append(f"{source.key}: {exc}"),
    )
    if failures:
        warnings.append(f"{len(failures)} recording(s) skipped: {failures[0]}" + (" …" if len(failures) > 1 else ""))
    if len(split) == 0:
        raise BadInputError("no usable windows to evaluate", path=options.data)
    if log:
        log(f"evaluating {len(split)} windows from {len(split.recordings)} recordings ({options.split} split)")

    device = pick_device(options.device)
    model.to(device)
    logits = predict(model, split, device, options.batch_size)
    prob = metrics.softmax(logits)
    pred = prob.argmax(axis=1)
    y = split.labels
    score = metrics.ranking_score(prob, logits, options.auroc_score)
    per_window = metrics.evaluate_level(
        "window", y, pred, score, n_classes, n_bootstrap=options.bootstrap, seed=options.seed
    )
    levels = {"window": per_window.to_json()}

    if index.window_rule == "recording":
        n_rec = len(split.recordings)
        rec_prob = np.zeros((n_rec, n_classes))
        rec_logit = np.zeros((n_rec, n_classes))
        np.add.at(rec_prob, split.recording_of, prob)
        np.add.at(rec_logit, split.recording_of, logits)
        counts = np.bincount(split.recording_of, minlength=n_rec)[:, None]
        rec_prob /= counts
        rec_logit /= counts
        rec_y = np.asarray([s.label for s in split.recordings], dtype=np.int64)
        rec_score = metrics.ranking_score(rec_prob, rec_logit, options.auroc_score)
        per_recording = metrics.evaluate_level(
            "recording", rec_y, rec_prob.argmax(axis=1), rec_score, n_classes,
            n_bootstrap=options.bootstrap, seed=options.seed,
        )
        levels["recording"] = per_recording.to_json()
        levels["recording"]["aggregation"] = "mean of window probabilities (logits for --auroc-score logit)"
    else:
        warnings.append("window-level labels: no per-recording level (a recording has no single label)")

    published = [
        {"encoder": p.encoder, "metrics": p.metrics, "source": p.source, "note": p.note}
        for p in getattr(recipe, "published", [])
    ]
    encoder = _field(meta, "encoder")
    encoder = encoder.model_dump() if hasattr(encoder, "model_dump") else encoder
    return {
        "task": recipe.id,
        "recipe_hash": recipe.hash,
        "head": str(head_path),
        "head_encoder": encoder,
        "dataset": index.name,
        "data": str(options.data),
        "split": options.split,
        "split_seed": split_seed,
        "labels": labels,
        "auroc_score": options.auroc_score,
        "auroc_score_note": (
            "AUROC/AUPR rank by the softmax probability" if options.auroc_score == "probability"
            else "AUROC/AUPR rank by the raw logit (class-1 logit for binary tasks), as upstream did (spec §3.0)"
        ),
        "n_recordings": len(split.recordings),
        "n_windows": int(len(split)),
        "windows_per_class": dict(zip(labels, split.counts(n_classes))),
        "levels": levels,
        "published": published,
        "published_note": "the model card's numbers are per window, on the authors' test split, with their encoder",
        "warnings": warnings,
        "tool_version": __version__,
        "disclaimer": DISCLAIMER,
    }
