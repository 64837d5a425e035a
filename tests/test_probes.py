"""Heads within reach of a CPU: linear probes on pooled embeddings and frozen-encoder heads trained from cached
encoder outputs learn the synthetic slowing of held-out subjects, and learn nothing from shuffled labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from synthetic_eeg import make_tuab_tree, write_manifest

from lumamba_cli.model.formula import save_formula_encoder
from lumamba_cli.probes import ProbeKind, fit_probe


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    files = make_tuab_tree(root / "tuab", n_train_per_class=8, n_eval_per_class=10, duration_s=20.0, seed=21)
    return {"root": root, "files": files, "encoder": save_formula_encoder(root / "LuMamba_formula.safetensors"),
            "cache": root / "cache"}


def train_and_evaluate(data, tmp_path, capsys, *extra: str, manifest=None) -> dict:
    source = ["--dataset", "manifest", "--data", manifest] if manifest else ["--dataset", "tuab", "--data",
                                                                             data["root"] / "tuab"]
    code, out, err = run_cli(["train", "--task", "tuab", *source, "--encoder", data["encoder"], "--out",
                              tmp_path / "run", "--cache", data["cache"], "--quiet", "--json", *extra], capsys)
    assert code == 0, err
    head = json.loads(out)["head"]
    code, out, err = run_cli(["evaluate", "--task", "tuab", *source, "--head", head, "--cache", data["cache"],
                              "--bootstrap", "0", "--quiet", "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_probe_learns_held_out_slowing(kind, data, tmp_path, capsys):
    result = train_and_evaluate(data, tmp_path, capsys, "--head-option", kind)
    assert result["split"] == "test" and result["n_recordings"] == 20
    assert result["levels"]["window"]["metrics"]["auroc"]["value"] >= 0.9
    assert result["levels"]["recording"]["metrics"]["auroc"]["value"] >= 0.9


def test_probe_learns_nothing_from_shuffled_labels(data, tmp_path, capsys):
    rng = np.random.default_rng(5)
    train = [(p, y) for p, y in data["files"] if "/train/" in str(p)]
    shuffled = rng.permutation([y for _, y in train])
    rows = [{"path": p, "label": ["normal", "abnormal"][y], "subject": p.name.split("_")[0]}
            for (p, _), y in zip(train, shuffled)]
    rows += [{"path": p, "label": ["normal", "abnormal"][y], "subject": p.name.split("_")[0], "split": "test"}
             for p, y in data["files"] if "/eval/" in str(p)]
    manifest = write_manifest(tmp_path / "shuffled.csv", rows)
    result = train_and_evaluate(data, tmp_path, capsys, "--head-option", "logistic", manifest=manifest)
    auroc = result["levels"]["window"]["metrics"]["auroc"]["value"]
    assert 0.2 <= auroc <= 0.8, auroc  # chance, within what 20 held-out recordings can show


def test_frozen_encoder_head_trains_from_cached_encoder_outputs(data, tmp_path, capsys):
    before = set((data["cache"] / "features").glob("*.features.npy"))  # pooled entries of the probe tests
    result = train_and_evaluate(data, tmp_path, capsys, "--freeze-encoder", "--epochs", "6", "--warmup-epochs", "1",
                                "--lr", "2e-3")
    assert result["levels"]["window"]["metrics"]["auroc"]["value"] >= 0.9
    features = sorted(set((data["cache"] / "features").glob("*.features.npy")) - before)
    assert len(features) == 16  # the 16 train/val recordings, one entry each, computed once
    stamps = [f.stat().st_mtime_ns for f in features]
    train_and_evaluate(data, tmp_path / "again", capsys, "--freeze-encoder", "--epochs", "1")
    assert [f.stat().st_mtime_ns for f in features] == stamps  # reused, not recomputed


def test_probe_fit_folds_the_standardisation_and_calibrates():
    rng = np.random.default_rng(0)
    n, d = 2000, 20
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, d)) * rng.uniform(0.1, 50, d) + rng.uniform(-100, 100, d)
    x[:, 0] += 4.0 * x[:, 0].std() * (y - 0.5)  # one informative feature, on a scale of its own
    train, val = slice(0, 1500), slice(1500, None)
    for kind in ProbeKind:
        fitted = fit_probe(kind, x[train], y[train], x[val], y[val], 2)
        logits = fitted.logits(x[val])
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        accuracy = (p.argmax(1) == y[val]).mean()
        assert accuracy > 0.9, (kind, accuracy)
        # calibrated: the mean predicted probability of the true class matches the accuracy roughly
        assert abs(p[np.arange(len(p)), y[val]].mean() - accuracy) < 0.1, kind
        assert str(fitted.penalty) in {str(float(k)) for k in fitted.validation}
