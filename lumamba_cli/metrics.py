"""Classification metrics in plain numpy, with bootstrap confidence intervals.

Implemented here (not taken from scikit-learn, which the package does not depend on) and cross-checked
against scikit-learn in ``tests/test_metrics.py``. Conventions follow scikit-learn's defaults:

* balanced accuracy = mean recall over the classes present in ``y_true``;
* macro F1 over the classes present in ``y_true`` or ``y_pred`` (an undefined F1 counts as 0);
* AUROC with tied scores counted as half (Mann-Whitney), average precision as the step-wise sum
  ``Σ (R_n − R_{n−1}) P_n`` over distinct thresholds (no interpolation);
* multiclass AUROC / AUPR: one-vs-rest, macro average over classes present in ``y_true`` with at
  least one negative.

A metric that is undefined for the data (AUROC with one class only) is ``nan``, never a made-up 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METRIC_NAMES = ("balanced_accuracy", "auroc", "aupr", "cohen_kappa", "macro_f1")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = y_true * n_classes + y_pred
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    recall = np.diag(cm)[present] / support[present]
    return float(recall.mean())


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    total = cm.sum()
    if total == 0:
        return float("nan")
    observed = np.trace(cm) / total
    expected = float((cm.sum(axis=0) * cm.sum(axis=1)).sum()) / (total * total)
    if expected == 1.0:
        # Both raters used one single class: agreement by chance is total, kappa is undefined.
        return float("nan")
    return float((observed - expected) / (1.0 - expected))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    cm = confusion_matrix(y_true, y_pred, n_classes).astype(np.float64)
    true_pos = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    present = (predicted + actual) > 0
    if not present.any():
        return float("nan")
    denominator = predicted + actual
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    return float(f1[present].mean())


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + ends + 1) / 2.0  # mean of 1-based positions start+1 .. end
    ranks_sorted = np.repeat(run_rank, ends - starts)
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def auroc_binary(is_positive: np.ndarray, score: np.ndarray) -> float:
    is_positive = np.asarray(is_positive).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _midranks(score)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision_binary(is_positive: np.ndarray, score: np.ndarray) -> float:
    is_positive = np.asarray(is_positive).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(is_positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    sorted_score = score[order]
    hits = is_positive[order].astype(np.float64)
    # one operating point per distinct score: the last index of each run of equal scores
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_score)), len(score) - 1]
    true_pos = np.cumsum(hits)[last_of_run]
    predicted_pos = last_of_run + 1.0
    precision = true_pos / predicted_pos
    recall = true_pos / n_pos
    recall_steps = np.diff(np.r_[0.0, recall])
    return float((recall_steps * precision).sum())


def _one_vs_rest(y_true: np.ndarray, scores: np.ndarray, fn) -> float:
    values = []
    for k in range(scores.shape[1]):
        positive = y_true == k
        if positive.any() and (~positive).any():
            values.append(fn(positive, scores[:, k]))
    return float(np.mean(values)) if values else float("nan")


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """``scores``: (N,) class-1 score for binary tasks, or (N, K) per-class scores (one-vs-rest, macro)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return auroc_binary(y_true == 1, scores)
    return _one_vs_rest(y_true, scores, auroc_binary)


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    y_true = np.asarray(y_true, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return average_precision_binary(y_true == 1, scores)
    return _one_vs_rest(y_true, scores, average_precision_binary)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def ranking_score(probabilities: np.ndarray, logits: np.ndarray, auroc_score: str) -> np.ndarray:
    """The score AUROC/AUPR rank by.

    ``probability``: softmax probabilities (class-1 column for binary tasks). ``logit``: what upstream's
    torchmetrics saw (spec §3.0): the raw class-1 logit for binary tasks; for multiclass tasks it was
    handed raw logits too, but multiclass AUROC/AveragePrecision softmax scores outside [0, 1] first, so
    upstream's multiclass ranking is the softmax one (ranking each class by its raw logit one-vs-rest
    would give numbers upstream never computed).
    """
    if auroc_score not in ("probability", "logit"):
        raise ValueError(f"auroc_score must be 'probability' or 'logit', not {auroc_score!r}")
    source = probabilities if auroc_score == "probability" else logits
    if source.shape[1] == 2:
        return source[:, 1]
    if auroc_score == "logit" and not ((logits >= 0).all() and (logits <= 1).all()):
        return softmax(np.asarray(logits, dtype=np.float64))
    return source


def compute(y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray, n_classes: int) -> dict[str, float]:
    return {
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, n_classes),
        "auroc": auroc(y_true, score),
        "aupr": average_precision(y_true, score),
        "cohen_kappa": cohen_kappa(y_true, y_pred, n_classes),
        "macro_f1": macro_f1(y_true, y_pred, n_classes),
    }


@dataclass
class MetricReport:
    """Point estimates, bootstrap 95 % intervals and the confusion matrix for one level (window/recording)."""

    level: str
    n: int
    n_resampling_units: int
    values: dict[str, float]
    ci_low: dict[str, float] = field(default_factory=dict)
    ci_high: dict[str, float] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    bootstrap: int = 0
    resampled: str = ""

    def to_json(self) -> dict:
        def clean(value: float) -> float | None:
            return None if value is None or not np.isfinite(value) else float(value)

        return {
            "level": self.level,
            "n": self.n,
            "resampled_units": self.resampled,
            "n_resampling_units": self.n_resampling_units,
            "bootstrap": self.bootstrap,
            "metrics": {
                name: {
                    "value": clean(self.values.get(name)),
                    "ci95": [clean(self.ci_low.get(name, float("nan"))), clean(self.ci_high.get(name, float("nan")))],
                }
                for name in METRIC_NAMES
            },
            "confusion_matrix": self.confusion,
        }


def evaluate_level(
    level: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    score: np.ndarray,
    n_classes: int,
    *,
    groups: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> MetricReport:
    """Metrics with a percentile bootstrap: resample whole ``groups`` (e.g. recordings) when given, else items.

    Resampling groups keeps windows of one recording together, so the interval reflects how many
    independent recordings the estimate rests on rather than the (correlated) window count.
    Resamples where a metric is undefined (one class only) are left out of that metric's interval.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    values = compute(y_true, y_pred, score, n_classes)
    if groups is None:
        groups = np.arange(len(y_true))
    unique_groups, group_index = np.unique(np.asarray(groups), return_inverse=True)
    report = MetricReport(
        level=level,
        n=int(len(y_true)),
        n_resampling_units=int(len(unique_groups)),
        values=values,
        confusion=confusion_matrix(y_true, y_pred, n_classes).tolist(),
        bootstrap=int(n_bootstrap),
        resampled="recordings" if len(unique_groups) < len(y_true) else level + "s",
    )
    if n_bootstrap <= 0 or len(y_true) == 0:
        return report
    # members of each group, laid out contiguously so a resample is a concatenation of slices
    order = np.argsort(group_index, kind="mergesort")
    counts = np.bincount(group_index, minlength=len(unique_groups))
    offsets = np.r_[0, np.cumsum(counts)]
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in METRIC_NAMES}
    n_groups = len(unique_groups)
    for _ in range(n_bootstrap):
        picked = rng.integers(0, n_groups, size=n_groups)
        if n_groups == len(y_true):
            idx = order[picked]
        else:
            idx = np.concatenate([order[offsets[g] : offsets[g + 1]] for g in picked])
        resample = compute(y_true[idx], y_pred[idx], score[idx], n_classes)
        for name, value in resample.items():
            samples[name].append(value)
    for name, draws in samples.items():
        finite = np.asarray([d for d in draws if np.isfinite(d)])
        if len(finite) >= max(10, n_bootstrap // 10):
            report.ci_low[name] = float(np.percentile(finite, 2.5))
            report.ci_high[name] = float(np.percentile(finite, 97.5))
        else:
            report.ci_low[name] = report.ci_high[name] = float("nan")
    return report


@dataclass
class PooledOutputs:
    """Per-item labels, predictions and scores: one item per window, or per (window, channel) pair for the
    per-channel heads (mc, mmc), where every channel's output is judged as its own decision."""

    y: np.ndarray  # (P,)
    pred: np.ndarray  # (P,)
    prob: np.ndarray  # (P, K)
    logits: np.ndarray  # (P, K); for mc column 1 is the channel's raw logit (upstream's ranking score)
    pairs: bool  # True when items are (window, channel) pairs


def pool_outputs(kind: str, logits: np.ndarray, labels: np.ndarray) -> PooledOutputs:
    """Map model outputs to per-item probabilities as upstream does (spec §3.0): softmax for bc/mcc; sigmoid and
    round per channel for mc; for mmc argmax per channel (ranked here by the softmax over the 6 codes, whose
    argmax equals upstream's sigmoid argmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if kind == "mc":
        flat = logits.reshape(-1)
        positive = 1.0 / (1.0 + np.exp(-flat))
        prob = np.stack([1.0 - positive, positive], axis=1)
        two_column = np.stack([np.zeros_like(flat), flat], axis=1)
        return PooledOutputs(labels.reshape(-1), (flat > 0).astype(np.int64), prob, two_column, True)
    if kind == "mmc":
        flat = logits.reshape(-1, logits.shape[-1])
        prob = softmax(flat)
        return PooledOutputs(labels.reshape(-1), prob.argmax(axis=1), prob, flat, True)
    prob = softmax(logits)
    return PooledOutputs(labels, prob.argmax(axis=1), prob, logits, False)
