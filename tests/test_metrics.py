"""Our numpy metrics against scikit-learn (test-only dependency) on random data, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from lumamba_cli import metrics

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.integers(0, 2, n)
    # rounded scores create many ties, the case where AUROC / AP implementations usually differ
    score = np.round(rng.normal(size=n) + 0.8 * y, 1)
    pred = (score > 0.4).astype(int)
    assert metrics.auroc(y, score) == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)
    assert metrics.average_precision(y, score) == pytest.approx(sk.average_precision_score(y, score), abs=1e-12)
    assert metrics.balanced_accuracy(y, pred, 2) == pytest.approx(sk.balanced_accuracy_score(y, pred), abs=1e-12)
    assert metrics.cohen_kappa(y, pred, 2) == pytest.approx(sk.cohen_kappa_score(y, pred), abs=1e-12)
    assert metrics.macro_f1(y, pred, 2) == pytest.approx(sk.f1_score(y, pred, average="macro"), abs=1e-12)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, pred, 2), sk.confusion_matrix(y, pred, labels=[0, 1]))


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_metrics_match_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = 400, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    prob = metrics.softmax(logits)
    pred = prob.argmax(axis=1)
    assert metrics.auroc(y, prob) == pytest.approx(
        sk.roc_auc_score(y, prob, multi_class="ovr", average="macro"), abs=1e-12
    )
    onehot = np.eye(k)[y]
    assert metrics.average_precision(y, prob) == pytest.approx(
        sk.average_precision_score(onehot, prob, average="macro"), abs=1e-12
    )
    assert metrics.balanced_accuracy(y, pred, k) == pytest.approx(sk.balanced_accuracy_score(y, pred), abs=1e-12)
    assert metrics.cohen_kappa(y, pred, k) == pytest.approx(sk.cohen_kappa_score(y, pred), abs=1e-12)
    assert metrics.macro_f1(y, pred, k) == pytest.approx(sk.f1_score(y, pred, average="macro"), abs=1e-12)


def test_undefined_auroc_is_nan_not_half():
    assert np.isnan(metrics.auroc(np.zeros(10, int), np.linspace(0, 1, 10)))


def test_logit_and_probability_rankings_can_differ():
    # upstream ranks by the raw class-1 logit; softmax ranks by l1 - l0 (spec §3.0)
    logits = np.array([[5.0, 1.0], [0.0, 0.5], [-3.0, 0.2]])
    y = np.array([1, 0, 0])
    prob = metrics.softmax(logits)
    by_logit = metrics.auroc(y, metrics.ranking_score(prob, logits, "logit"))
    by_prob = metrics.auroc(y, metrics.ranking_score(prob, logits, "probability"))
    assert by_logit == 1.0 and by_prob == 0.0


def test_bootstrap_interval_brackets_estimate_and_is_seeded():
    rng = np.random.default_rng(7)
    groups = np.repeat(np.arange(40), 10)
    y = np.repeat(rng.integers(0, 2, 40), 10)
    # a per-recording effect makes windows of one recording correlated, as in real EEG
    score = np.repeat(rng.normal(size=40), 10) + 0.3 * rng.normal(size=400) + y
    pred = (score > 0.5).astype(int)
    a = metrics.evaluate_level("window", y, pred, score, 2, groups=groups, n_bootstrap=200, seed=3)
    b = metrics.evaluate_level("window", y, pred, score, 2, groups=groups, n_bootstrap=200, seed=3)
    assert a.to_json() == b.to_json()
    for name in metrics.METRIC_NAMES:
        assert a.ci_low[name] <= a.values[name] <= a.ci_high[name]
    # resampling 40 recordings gives a wider interval than pretending the 400 windows are independent
    c = metrics.evaluate_level("window", y, pred, score, 2, n_bootstrap=200, seed=3)
    width_groups = a.ci_high["auroc"] - a.ci_low["auroc"]
    width_items = c.ci_high["auroc"] - c.ci_low["auroc"]
    assert width_groups > width_items


def test_multiclass_logit_ranking_is_the_softmax_one_as_upstream():
    """torchmetrics' multiclass AUROC/AP softmax raw logits before ranking (spec §3.0), so ``--auroc-score logit``
    on a 4-class task (TUSL) must give the softmax-ranked numbers, not one-vs-rest on raw logits."""
    rng = np.random.default_rng(5)
    n, k = 300, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * rng.uniform(0.2, 3.0, size=(n, 1))  # per-window scale: rankings differ
    logits[np.arange(n), y] += 0.7
    logits += rng.normal(size=(n, 1)) * 2.0  # a per-window offset changes raw logits, not the softmax
    prob = metrics.softmax(logits)
    raw = metrics.auroc(y, logits)
    upstream = sk.roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert abs(raw - upstream) > 0.01  # the two rankings really differ on these data
    score = metrics.ranking_score(prob, logits, "logit")
    assert metrics.auroc(y, score) == pytest.approx(upstream, abs=1e-12)
    assert metrics.average_precision(y, score) == pytest.approx(
        sk.average_precision_score(np.eye(k)[y], prob, average="macro"), abs=1e-12)
