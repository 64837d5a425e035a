"""Evaluate a trained head on labelled data (``lumamba evaluate``): per-window and per-recording metrics with
bootstrap 95 % intervals, the confusion matrices, and the recipe's published numbers beside them.

Upstream reports per-window metrics only and ranks binary AUROC/AUPR by the raw class-1 logit (spec §3.0).
Here the default ranking score is the class probability; ``auroc_score="logit"`` reproduces upstream, and
the result always says which one was used. The per-recording level (mean of window probabilities, a
lumamba addition) is what a screening user usually cares about. Every interval resamples whole recordings,
the per-window one included (its point estimate is upstream's pooled per-window number).

Per-channel heads (TUAR mc/mmc) are scored over (window, channel) pairs, each channel's output judged as its
own decision (mc binary, mmc 6-class), with intervals that resample whole recordings, plus a per-channel AUROC
table; the result names what was pooled.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lumamba_cli import DISCLAIMER, __version__, datasets, metrics
from lumamba_cli.datasets import Dataset
from lumamba_cli.errors import BadInputError
from lumamba_cli.heads import head_for_task
from lumamba_cli.preprocess import Mode, PreprocessPolicy
from lumamba_cli.recipes import load_recipe
from lumamba_cli.window_cache import CacheDtype, build_split, default_cache_dir


class Split(StrEnum):
    test = "test"
    val = "val"
    train = "train"
    all = "all"


class AurocScore(StrEnum):
    """What binary AUROC/AUPR rank windows by: the class probability, or upstream's raw class-1 logit."""

    probability = "probability"
    logit = "logit"


@dataclass
class EvaluateOptions:
    task: str
    data: Path
    dataset: Dataset = Dataset.manifest
    head: str | None = None
    split: Split = Split.test
    auroc_score: AurocScore = AurocScore.probability
    bootstrap: int = 1000
    seed: int = 0
    events: Path | None = None
    labels_file: Path | None = None
    cache_dir: Path | None = None
    device: str = "auto"
    batch_size: int = 64
    cache_dtype: CacheDtype | None = None  # None = the window cache dtype the head was trained with (else float32)
    mode: Mode | None = None  # None = the preprocessing the head was trained with (else auto)


def evaluate(options: EvaluateOptions, *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    from lumamba_cli.inference import predict, resolve_device

    recipe = load_recipe(options.task)
    datasets.check_request(options.dataset, Path(options.data))
    head = head_for_task(recipe, options.head)
    device = resolve_device(options.device)
    kind = recipe.classification_type
    n_classes = recipe.label_classes
    class_names = recipe.class_names
    warnings: list[str] = []

    training = head.metadata.training
    data_summary = training.data
    split_seed = int(data_summary.get("split_seed", training.seed if training.seed is not None else options.seed))
    index = datasets.discover(options.dataset, Path(options.data), list(recipe.labels), events_csv=options.events,
                              apava_labels=options.labels_file, classification_type=kind)
    trained_policy = head.trained_policy
    if options.mode is None:
        policy = trained_policy or PreprocessPolicy()
    else:
        policy = PreprocessPolicy(options.mode)
        if trained_policy is not None and trained_policy.mode != options.mode:
            warnings.append(f"--mode {options.mode} differs from the head's training preprocessing "
                            f"({trained_policy.mode}): outputs may shift")
    assignment = datasets.assign_splits(
        index.sources, seed=split_seed,
        val_fraction=training.val_fraction if training.val_fraction is not None else 0.2,
        test_fraction=training.test_fraction if training.test_fraction is not None else 0.15,
    )
    if options.split == Split.all:
        chosen = list(index.sources)
    else:
        chosen = [s for s in index.sources if assignment[s.subject] == options.split]
    if not chosen:
        raise BadInputError(f"no recordings fall in the {options.split.value!r} split", path=options.data)
    subjects = data_summary.get("split_subjects") or {}
    trained_on = set(subjects.get("train", [])) | set(subjects.get("val", []))
    leaked = sorted({s.subject for s in chosen} & trained_on)
    if leaked and options.split in (Split.test, Split.all):
        warnings.append(
            f"{len(leaked)} subject(s) evaluated here were in this head's training or validation split "
            f"(e.g. {leaked[0]}): the estimate is optimistic"
        )

    cache_dir = Path(options.cache_dir) if options.cache_dir else default_cache_dir()
    # the head saw windows rounded to its training cache dtype: evaluating on other inputs shifts outputs a little
    # and decodes every recording again into a second cache entry
    trained_dtype = CacheDtype(training.cache_dtype or CacheDtype.float32)
    cache_dtype = options.cache_dtype or trained_dtype
    if cache_dtype != trained_dtype:
        warnings.append(f"--cache-dtype {cache_dtype} differs from the head's training windows ({trained_dtype})")
    failures: list[str] = []
    split = build_split(index, chosen, recipe, cache_dir=cache_dir, policy=policy, cache_dtype=cache_dtype,
                        on_error=lambda source, exc: failures.append(f"{source.key}: {exc}"))
    if failures:
        warnings.append(f"{len(failures)} recording(s) skipped: {failures[0]}" + (" …" if len(failures) > 1 else ""))
    if len(split) == 0:
        raise BadInputError("no usable windows to evaluate", path=options.data)
    if log:
        log(f"evaluating {len(split)} windows from {len(split.recordings)} recordings ({options.split} split)")

    model = head.load().to(device)
    logits = predict(model, split.batches(options.batch_size), device)
    pooled = metrics.pool_outputs(kind, logits, split.labels)
    per_channel = None
    if pooled.pairs:
        # (window, channel) pairs of one recording are correlated: the interval resamples whole recordings
        n_channels = split.labels.shape[1]
        groups = np.repeat(split.recording_of, n_channels)
        score = metrics.ranking_score(pooled.prob, pooled.logits, options.auroc_score)
        pair_level = metrics.evaluate_level(
            "window-channel", pooled.y, pooled.pred, score, n_classes, groups=groups,
            n_bootstrap=options.bootstrap, seed=options.seed,
        )
        levels = {"window-channel": pair_level.to_json()}
        levels["window-channel"]["pooled"] = (
            f"{len(pooled.y)} (window, channel) pairs: {len(split)} windows × {n_channels} channels, each channel "
            "output scored as its own " + ("binary artifact decision" if kind == "mc" else "6-class decision")
        )
        per_channel = _per_channel_table(kind, list(split.caches[0].channel_names), pooled, len(split), n_channels)
    else:
        prob, pred, y = pooled.prob, pooled.pred, pooled.y
        score = metrics.ranking_score(prob, logits, options.auroc_score)
        # windows of one recording are correlated: resampling them one by one would give intervals as if every
        # window were an independent subject, so the interval resamples whole recordings (as for mc/mmc pairs)
        per_window = metrics.evaluate_level(
            "window", y, pred, score, n_classes, groups=split.recording_of, n_bootstrap=options.bootstrap,
            seed=options.seed,
        )
        levels = {"window": per_window.to_json()}

    if pooled.pairs:
        warnings.append("per-channel labels: no per-recording level")
    elif index.window_rule == "recording":
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

    published = [{"encoder": p.encoder, "metrics": p.metrics, "source": p.source, "note": p.note}
                 for p in recipe.published]
    return {
        "task": recipe.id,
        "recipe_hash": recipe.hash,
        "head": str(head.path),
        "head_encoder": head.metadata.encoder.model_dump() if head.metadata.encoder else None,
        "dataset": index.name,
        "data": str(options.data),
        "split": options.split.value,
        "split_seed": split_seed,
        "labels": class_names,
        "classification_type": kind,
        "per_channel": per_channel,
        "preprocessing": {**policy.to_json(), "modes_seen": split.modes(), "cache_dtype": cache_dtype.value,
                          "trained_with": trained_policy.to_json() if trained_policy else None},
        "auroc_score": options.auroc_score.value,
        "auroc_score_note": (
            "AUROC/AUPR rank by the softmax probability" if options.auroc_score == AurocScore.probability
            else "AUROC/AUPR rank by the raw logit (class-1 logit for binary tasks), as upstream did (spec §3.0)"
        ),
        "n_recordings": len(split.recordings),
        "n_windows": int(len(split)),
        "windows_per_class": dict(zip(class_names, split.counts(n_classes))),
        "counted": "(window, channel) pairs" if pooled.pairs else "windows",
        "levels": levels,
        "published": published,
        "published_note": "the model card's numbers are per window, on the authors' test split, with their encoder",
        "warnings": warnings,
        "tool_version": __version__,
        "disclaimer": DISCLAIMER,
    }


def _per_channel_table(kind: str, channel_names: list[str], pooled, n_windows: int, n_channels: int) -> list[dict]:
    """Per channel: positives and AUROC (mc: artifact vs none; mmc: any artifact code vs none, ranked by
    1 − P(none)) and, for mmc, accuracy of the predicted code."""
    y = pooled.y.reshape(n_windows, n_channels)
    prob = pooled.prob.reshape(n_windows, n_channels, -1)
    pred = pooled.pred.reshape(n_windows, n_channels)
    table = []
    for c, name in enumerate(channel_names):
        positive = y[:, c] > 0
        score = prob[:, c, 1] if kind == "mc" else 1.0 - prob[:, c, 0]
        value = metrics.auroc_binary(positive, score)
        row = {"channel": name, "positives": int(positive.sum()), "windows": int(n_windows),
               "auroc": None if not np.isfinite(value) else float(value)}
        if kind == "mmc":
            row["accuracy"] = float((pred[:, c] == y[:, c]).mean()) if n_windows else None
        table.append(row)
    return table
