"""TUAR per-channel protocols end to end: mc (22 binary outputs) and mmc (22 × 6 codes), on synthetic
TUAR-layout recordings whose muscle bursts sit on known electrodes (CPU, tiny model from scratch).

What the learning test can claim: the channels under T3 and T4 are the only ones ever labelled, so a model
that learnt nothing but each channel's base rate already ranks (window, channel) pairs well above 0.5. The
bound is therefore that base-rate ranking (computed from the held-out labels, so it is the best any
channel-prior-only model can do) plus a margin, together with one per-channel AUROC — where the channel
prior is constant and chance is exactly 0.5 — clearly above chance.
"""

from __future__ import annotations

import csv
import json

import jsonschema
import numpy as np
import pytest

from cli_helpers import run_cli


def run(argv, capsys=None):
    code, out, _ = run_cli(argv, capsys)
    return code, out
from synthetic_eeg import TCP_PAIRS, make_tuar_tree

SMALL = ["--config", "num_blocks=1,num_queries=4,embed_dim=32"]
FAST = ["--encoder", "none", "--batch-size", "8", "--lr", "2e-3", "--warmup-epochs", "1", *SMALL]




@pytest.fixture(scope="module")
def tuar(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuar")
    train_files = make_tuar_tree(root / "tree", n_subjects=10, seed=3)
    # held-out subjects in their own tree, evaluated with --split all: no subject overlaps training
    held_files = make_tuar_tree(root / "held", n_subjects=8, seed=4, duration_s=30.0, bursts_per_recording=4,
                                first_subject=100)
    return {"root": root, "tree": root / "tree", "held": root / "held", "cache": root / "cache",
            "train_files": train_files, "held_files": held_files}


@pytest.fixture(scope="module")
def trained_mc(tuar):
    out = tuar["root"] / "mc"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUMAMBA_HOME", str(tuar["root"] / "home"))
        code, _ = run(["train", "--task", "tuar_mc", "--dataset", "tuar", "--data", str(tuar["tree"]),
                       "--epochs", "12", "--class-weights", "balanced", *FAST, "--out", str(out),
                       "--cache", str(tuar["cache"]), "--quiet", "--no-import"])
    assert code == 0
    return out / "tuar_mc.safetensors"


def test_mc_labels_follow_the_annotated_channels(tuar):
    from lumamba_cli import datasets, window_cache
    from lumamba_cli.recipes import load_recipe

    recipe = load_recipe("tuar_mc")
    index = datasets.discover("tuar", tuar["tree"], recipe.labels, classification_type="mc")
    source = index.sources[0]
    split = window_cache.build_split(index, [source], recipe, cache_dir=tuar["cache"])
    assert split.labels.shape == (len(split), 22)
    # truth from the generator: a window is positive on a channel when ≥30 % of its samples are in a burst
    # annotated on that channel (the whole-recording EKG-REF annotation must be ignored)
    events = next(e for p, e in tuar["train_files"] if p == source.path)
    names = [f"{a}-{c}" for a, c in TCP_PAIRS]
    starts = split.caches[0].start_s
    expected = np.zeros((len(starts), 22), dtype=np.int64)
    t = np.arange(1280) / 256.0
    for w, start in enumerate(starts):
        for channel, on, off, label in events:
            if channel in names and label == "musc":
                column = list(recipe.labels).index(channel)
                covered = ((start + t >= on) & (start + t < off)).mean()
                expected[w, column] |= covered >= 0.30
    np.testing.assert_array_equal(split.labels, expected)
    assert expected.sum() > 0 and expected.sum(axis=0)[list(recipe.labels).index("C3-CZ")] == 0

    # mmc: musc is code 4, and a code must be the most frequent one of the window (so ⊆ the mc positives)
    mmc = load_recipe("tuar_mmc")
    index_mmc = datasets.discover("tuar", tuar["tree"], mmc.labels, classification_type="mmc")
    split_mmc = window_cache.build_split(index_mmc, [index_mmc.sources[0]], mmc, cache_dir=tuar["cache"])
    assert set(np.unique(split_mmc.labels)) <= {0, 4}
    assert np.all(split_mmc.labels[split_mmc.labels > 0] == 4)
    assert np.all(expected[split_mmc.labels == 4] == 1) and (split_mmc.labels == 4).sum() > 0


def test_mc_head_learns_per_channel_artifacts_on_held_out_subjects(tuar, trained_mc, capsys):
    from lumamba_cli import metrics

    code, out = run(["evaluate", "--task", "tuar_mc", "--dataset", "tuar", "--data", str(tuar["held"]),
                     "--split", "all", "--head", str(trained_mc), "--bootstrap", "200",
                     "--cache", str(tuar["cache"]), "--json", "--quiet"], capsys)
    assert code == 0, out
    result = json.loads(out)
    level = result["levels"]["window-channel"]
    assert result["classification_type"] == "mc" and result["labels"] == ["no artifact", "artifact"]
    assert "(window, channel) pairs" in level["pooled"] and level["resampled_units"] == "recordings"
    n_windows = result["n_windows"]
    assert level["n"] == 22 * n_windows and level["n_resampling_units"] == 8
    auroc = level["metrics"]["auroc"]["value"]

    # the best a channel-base-rate-only model can do on these labels (ties count half)
    table = result["per_channel"]
    assert [row["channel"] for row in table][:2] == ["FP1-F7", "F7-T3"]
    positives = np.asarray([row["positives"] for row in table], dtype=float)
    y = np.concatenate([np.r_[np.ones(int(p)), np.zeros(n_windows - int(p))] for p in positives])
    prior = np.repeat(positives / n_windows, n_windows)
    baseline = metrics.auroc_binary(y, prior)
    assert 0.5 < baseline < 0.9
    assert auroc >= baseline + 0.03, (auroc, baseline)
    assert level["metrics"]["auroc"]["ci95"][0] is not None
    # within one channel the prior is constant: at least one channel must track its own bursts
    assert max(row["auroc"] for row in table if row["auroc"] is not None) >= 0.8


def test_mc_head_screens_with_a_probability_column_per_channel(tuar, trained_mc, tmp_path, capsys):
    from lumamba_cli.report import json_schema

    recording = tuar["held_files"][0][0]
    out = tmp_path / "screen"
    code, _ = run(["screen", str(recording), "--task", "tuar_mc", "--head", str(trained_mc), "--out", str(out),
                   "--quiet"], capsys)
    assert code == 0
    report = json.loads(next(out.glob("*.tuar_mc.json")).read_text())
    jsonschema.validate(report, json_schema("report"))
    assert report["model"]["classification_type"] == "mc"
    # the head was trained with the default policy, and screen applied it
    assert report["recipe"]["preprocessing"]["source"] == "head"
    first = report["windows"][0]
    assert len(first["probabilities"]) == 22 and "T4-A2" in first["probabilities"]
    lines = [line for line in next(out.glob("*.tuar_mc.windows.csv")).read_text().splitlines()
             if not line.startswith("#")]
    header = next(csv.reader(lines))
    expected_columns = [f"p_{name.replace('-', '_')}" for name in first["probabilities"]]
    assert [c for c in header if c.startswith("p_")] == expected_columns
    rows = list(csv.DictReader(lines))
    assert len(rows) == len(report["windows"])
    assert all(0.0 <= float(rows[0][c]) <= 1.0 for c in header if c.startswith("p_"))


def test_mmc_trains_and_evaluates_multiclass_over_channel_pairs(tuar, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LUMAMBA_HOME", str(tmp_path / "home"))
    code, out = run(["train", "--task", "tuar_mmc", "--dataset", "tuar", "--data", str(tuar["tree"]),
                     "--epochs", "1", *FAST, "--out", str(tmp_path / "mmc"), "--cache", str(tuar["cache"]),
                     "--quiet", "--no-import", "--json"], capsys)
    assert code == 0, out
    summary = json.loads(out)
    counts = summary["data"]["windows_per_class"]["train"]
    assert list(counts) == ["none", "chew", "elec", "eyem", "musc", "shiv"] and counts["musc"] > 0
    assert summary["data"]["counted"] == "(window, channel) pairs"
    assert np.isfinite(summary["validation"]["val_loss"])
    code, out = run(["evaluate", "--task", "tuar_mmc", "--dataset", "tuar", "--data", str(tuar["held"]),
                     "--split", "all", "--head", str(tmp_path / "mmc" / "tuar_mmc.safetensors"),
                     "--bootstrap", "20", "--cache", str(tuar["cache"]), "--json", "--quiet"], capsys)
    assert code == 0, out
    result = json.loads(out)
    level = result["levels"]["window-channel"]
    assert level["n"] == 22 * result["n_windows"]
    assert np.asarray(level["confusion_matrix"]).shape == (6, 6)
    assert np.asarray(level["confusion_matrix"]).sum() == level["n"]
    assert "6-class" in level["pooled"]


def test_per_channel_tasks_need_the_tuar_adapter(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n")
    code, _ = run(["train", "--task", "tuar_mc", "--dataset", "manifest", "--data", str(manifest), "--quiet"], capsys)
    assert code == 2  # a usage error, raised before any encoder lookup or decoding
