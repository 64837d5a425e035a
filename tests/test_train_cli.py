"""`lumamba train` / `lumamba evaluate` end to end on synthetic EDF recordings with a known marker (CPU).

The learning test is honest in both directions: a tiny model trained from scratch must find the diffuse
1–3 Hz slowing on held-out subjects (AUROC ≥ 0.95), and the same pipeline trained on labels that carry no
information must stay near chance on held-out subjects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cli_helpers import run_cli


def run(argv, capsys=None):
    code, out, _ = run_cli(argv, capsys)
    return code, out
from synthetic_eeg import make_tuab_tree, write_manifest

# A small model (d_model = 2·32 = 64, one bi-Mamba block) keeps each training to seconds on CPU.
SMALL = ["--config", "num_blocks=1,num_queries=2,embed_dim=32"]
FAST = ["--encoder", "none", "--batch-size", "16", "--lr", "1e-3", "--warmup-epochs", "1", *SMALL]
N_TEST_PER_CLASS = 20




@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """TUAB-layout tree: 8 training subjects per class (30 s) and 20 held-out eval subjects per class (20 s).

    The module-wide cache means every training and evaluation below decodes each EDF once.
    """
    root = tmp_path_factory.mktemp("synthetic")
    tree = root / "tuab"
    make_tuab_tree(tree, n_train_per_class=8, n_eval_per_class=0, duration_s=30.0, seed=11)
    # held-out subjects are shorter: many recordings (independent units) matter more than many windows
    eval_files = make_tuab_tree(root / "eval_part", n_train_per_class=0, n_eval_per_class=N_TEST_PER_CLASS,
                                duration_s=20.0, seed=12)
    for path, _ in eval_files:
        target = tree / path.relative_to(root / "eval_part")
        target.parent.mkdir(parents=True, exist_ok=True)
        # subject ids restart at 0 in the second tree: prefix them so train and eval subjects stay distinct
        path.rename(target.with_name("e" + target.name[1:]))
    return {"root": root, "tree": tree, "cache": root / "cache"}


@pytest.fixture(scope="module")
def trained(synthetic):
    out = synthetic["root"] / "trained"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUMAMBA_HOME", str(synthetic["root"] / "home_train"))
        code, _ = run(["train", "--task", "tuab", "--dataset", "tuab", "--data", str(synthetic["tree"]),
                       "--epochs", "5", *FAST, "--out", str(out), "--cache", str(synthetic["cache"]), "--quiet",
                       "--no-import"])
    assert code == 0
    return out / "tuab.safetensors"


def _evaluate(synthetic, head: Path, capsys, *extra: str, data=None, dataset="tuab") -> dict:
    code, out = run(["evaluate", "--task", "tuab", "--dataset", dataset, "--data", str(data or synthetic["tree"]),
                     "--head", str(head), "--bootstrap", "200", "--cache", str(synthetic["cache"]), "--json",
                     "--quiet", *extra], capsys)
    assert code == 0, out
    return json.loads(out)


def test_learns_the_slowing_marker_on_held_out_subjects(synthetic, trained, capsys):
    result = _evaluate(synthetic, trained, capsys)
    assert result["split"] == "test" and result["n_recordings"] == 2 * N_TEST_PER_CLASS
    window = result["levels"]["window"]["metrics"]
    recording = result["levels"]["recording"]["metrics"]
    print("learning:", {k: v["value"] for k, v in window.items()})
    assert window["auroc"]["value"] >= 0.95
    assert recording["auroc"]["value"] >= 0.95
    assert window["balanced_accuracy"]["value"] >= 0.85
    low, high = window["auroc"]["ci95"]
    assert low <= window["auroc"]["value"] <= high
    assert result["auroc_score"] == "probability" and "probability" in result["auroc_score_note"]
    assert result["published"] and result["published"][0]["metrics"]["auroc"] == pytest.approx(0.883)
    assert "not a medical device" in result["disclaimer"]
    # the head says what it was trained on, and splits.json says which recordings went where
    splits = json.loads((trained.parent / "splits.json").read_text())
    test_keys = {r["key"] for r in splits["splits"]["test"]}
    assert len(test_keys) == 2 * N_TEST_PER_CLASS and all(k.startswith("eval/") for k in test_keys)
    train_subjects = {r["subject"] for r in splits["splits"]["train"]}
    val_subjects = {r["subject"] for r in splits["splits"]["val"]}
    assert train_subjects and val_subjects and not train_subjects & val_subjects


def test_upstream_logit_ranking_is_offered_and_named(synthetic, trained, capsys):
    result = _evaluate(synthetic, trained, capsys, "--auroc-score", "logit", "--split", "val", "--bootstrap", "0")
    assert result["auroc_score"] == "logit" and "upstream" in result["auroc_score_note"]
    assert result["split"] == "val"


def test_logit_ranking_really_uses_the_raw_class_1_logit(synthetic, trained, capsys, monkeypatch):
    """Outputs where the raw class-1 logit ranks perfectly and softmax p1 = σ(l1 − l0) ranks perfectly wrong:
    the two --auroc-score choices must give AUROC 1 and 0 at both levels."""
    import lumamba_cli.evaluate as evaluate_module
    import lumamba_cli.inference as inference

    built = {}
    real_build_split = evaluate_module.build_split

    def remember_split(*args, **kwargs):
        built["split"] = real_build_split(*args, **kwargs)
        return built["split"]

    def crafted(model, batches, device, **_):
        n = sum(len(x) for x, _ in batches)
        positive = np.asarray(built["split"].labels) == 1
        assert len(positive) == n
        return np.where(positive[:, None], [[6.0, 1.0]], [[-3.0, 0.0]])

    monkeypatch.setattr(evaluate_module, "build_split", remember_split)
    monkeypatch.setattr(inference, "predict", crafted)
    by_logit = _evaluate(synthetic, trained, capsys, "--auroc-score", "logit", "--bootstrap", "50")
    by_prob = _evaluate(synthetic, trained, capsys, "--bootstrap", "0")
    for level in ("window", "recording"):
        assert by_logit["levels"][level]["metrics"]["auroc"]["value"] == pytest.approx(1.0)
        assert by_prob["levels"][level]["metrics"]["auroc"]["value"] == pytest.approx(0.0)
    # window intervals resample whole recordings: windows of one recording are not independent evidence
    window = by_logit["levels"]["window"]
    assert window["resampled_units"] == "recordings" and window["n_resampling_units"] == by_logit["n_recordings"]


def test_evaluate_uses_the_heads_cache_dtype_by_default(synthetic, trained, tmp_path, capsys):
    """A head trained on float16-cached windows is evaluated on the same float16 windows unless told otherwise."""
    from lumamba_cli.model import checkpoint

    model, meta = checkpoint.load_head(trained)
    meta = meta.model_copy(update={"training": meta.training.model_copy(update={"cache_dtype": "float16"})})
    half = checkpoint.save_head(tmp_path / "half.safetensors", model, meta)
    result = _evaluate(synthetic, half, capsys, "--split", "val", "--bootstrap", "0")
    assert result["preprocessing"]["cache_dtype"] == "float16" and not result["warnings"]
    forced = _evaluate(synthetic, half, capsys, "--split", "val", "--bootstrap", "0", "--cache-dtype", "float32")
    assert forced["preprocessing"]["cache_dtype"] == "float32"
    assert any("float16" in w for w in forced["warnings"])


def test_shuffled_labels_stay_near_chance(synthetic, capsys):
    """Labels assigned so that, within each true class, exactly half the subjects get each label: the label
    carries no information about the marker. On 40 held-out recordings (20 per shuffled label) a head with no
    signal has a per-recording-driven AUROC with standard deviation ≈ sqrt((n1+n2+1)/(12·n1·n2)) ≈ 0.09, so
    [0.2, 0.8] is a ±3.3 σ band (false-failure probability ≈ 1e-3), while the real marker gives ≥ 0.95."""
    tree = synthetic["tree"]
    rng = np.random.default_rng(2024)
    rows = []
    for split_dir, split_name in (("train", None), ("eval", "test")):
        for class_dir in ("normal", "abnormal"):
            files = sorted((tree / split_dir / class_dir / "01_tcp_ar").glob("*.edf"))
            flipped = set(rng.permutation(len(files))[: len(files) // 2].tolist())
            for i, path in enumerate(files):
                shuffled = ["normal", "abnormal"][int(i in flipped)]
                row = {"path": str(path.relative_to(tree)), "label": shuffled, "subject": path.name.split("_")[0]}
                if split_name:
                    row["split"] = split_name
                rows.append(row)
    # train/val subjects are left to the seeded split; the held-out test set is fixed
    manifest = write_manifest(tree / "shuffled.csv", rows)
    out = synthetic["root"] / "shuffled"
    code, _ = run(["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "5",
                   *FAST, "--out", str(out), "--cache", str(synthetic["cache"]), "--quiet", "--no-import"])
    assert code == 0
    result = _evaluate(synthetic, out / "tuab.safetensors", capsys, data=manifest, dataset="manifest")
    assert result["n_recordings"] == 2 * N_TEST_PER_CLASS
    print("shuffled:", result["levels"]["window"]["metrics"]["auroc"], result["levels"]["recording"]["metrics"]["auroc"])
    assert 0.2 <= result["levels"]["window"]["metrics"]["auroc"]["value"] <= 0.8
    assert 0.2 <= result["levels"]["recording"]["metrics"]["auroc"]["value"] <= 0.8


def test_resume_after_interruption_gives_identical_weights(synthetic, tmp_path, monkeypatch):
    rows = []
    for class_dir, label in (("normal", "normal"), ("abnormal", "abnormal")):
        for path in sorted((synthetic["tree"] / "train" / class_dir / "01_tcp_ar").glob("*.edf"))[:3]:
            rows.append({"path": str(path), "label": label, "subject": path.name.split("_")[0]})
    manifest = write_manifest(tmp_path / "small.csv", rows)
    common = ["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "3",
              "--head-option", "mamba", *FAST, "--cache", str(synthetic["cache"]), "--quiet", "--no-import"]
    code, _ = run([*common, "--out", str(tmp_path / "straight")])
    assert code == 0
    monkeypatch.setenv("LUMAMBA_TRAIN_STOP_AFTER_EPOCH", "1")
    code, _ = run([*common, "--out", str(tmp_path / "resumed")])
    assert code == 130  # stopped like Ctrl-C right after the epoch-1 checkpoint
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert json.loads(saved["state_json"])["epoch"] == 1
    monkeypatch.delenv("LUMAMBA_TRAIN_STOP_AFTER_EPOCH")
    code, _ = run([*common, "--out", str(tmp_path / "resumed"), "--resume"])
    assert code == 0
    straight = load_file(str(tmp_path / "straight" / "tuab.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "tuab.safetensors"))
    assert straight.keys() == resumed.keys() and any(k.startswith("classifier.mamba_1") for k in straight)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    history = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # resuming with different options is refused instead of silently mixing two runs
    code, _ = run([*common[:-4], "--lr", "2e-3", *common[-4:], "--out", str(tmp_path / "resumed"), "--resume"])
    assert code == 2


def test_resume_refuses_relabelled_data(synthetic, tmp_path, monkeypatch):
    """Relabelling recordings leaves every input file (and its sha256) and the split unchanged: --resume must
    still notice, or the rest of the run would train on other labels than its first epochs."""
    rows = []
    for class_dir, label in (("normal", "normal"), ("abnormal", "abnormal")):
        paths = sorted((synthetic["tree"] / "train" / class_dir / "01_tcp_ar").glob("*.edf"))[:3]
        for path, split in zip(paths, ("train", "train", "val")):
            rows.append({"path": str(path), "label": label, "subject": path.name.split("_")[0], "split": split})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    common = ["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "2",
              *FAST, "--cache", str(synthetic["cache"]), "--quiet", "--no-import", "--out", str(tmp_path / "o")]
    monkeypatch.setenv("LUMAMBA_TRAIN_STOP_AFTER_EPOCH", "1")
    assert run(common)[0] == 130
    monkeypatch.delenv("LUMAMBA_TRAIN_STOP_AFTER_EPOCH")
    flipped = [{**row, "label": "abnormal" if row["label"] == "normal" else "normal"} for row in rows]
    write_manifest(manifest, flipped)
    assert run([*common, "--resume"])[0] == 2
    write_manifest(manifest, rows)  # the original labels resume normally
    assert run([*common, "--resume"])[0] == 0


def test_trained_head_is_stored_and_usable_by_screen_and_refused_elsewhere(synthetic, tmp_path, capsys):
    rows = [{"path": str(p), "label": c, "subject": p.name.split("_")[0]}
            for c in ("normal", "abnormal")
            for p in sorted((synthetic["tree"] / "train" / c / "01_tcp_ar").glob("*.edf"))[:2]]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    code, out = run(["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "1",
                     *FAST, "--out", str(tmp_path / "o"), "--cache", str(synthetic["cache"]), "--quiet", "--json"],
                    capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["head_id"].startswith("tuab-")
    from lumamba_cli.heads import list_heads
    from lumamba_cli.headfile import read_head_metadata

    stored = list_heads("tuab")
    assert [h.id for h in stored] == [summary["head_id"]]
    meta = read_head_metadata(stored[0].path)
    assert meta.encoder is None and meta.training.data["windows_per_class"]["train"]
    assert meta.training.lr == 1e-3 and meta.metrics["validation"]["val_loss"] > 0
    recording = rows[0]["path"]
    code, _ = run(["screen", recording, "--task", "tuab", "--out", str(tmp_path / "screen"), "--quiet"])
    assert code == 0
    reports = list((tmp_path / "screen").rglob("*.json"))
    assert reports, "screen wrote no report"
    # the same head is refused for another task's recipe, by evaluate and by screen (exit 5: weights problem)
    code, _ = run(["evaluate", "--task", "mumtaz", "--dataset", "manifest", "--data", str(manifest),
                   "--head", str(tmp_path / "o" / "tuab.safetensors"), "--quiet"])
    assert code == 5
    code, _ = run(["screen", recording, "--task", "mumtaz", "--head", str(tmp_path / "o" / "tuab.safetensors"),
                   "--out", str(tmp_path / "screen2"), "--quiet"])
    assert code == 5


def test_usage_errors_are_one_line(tmp_path, capsys):
    code, _ = run(["train", "--task", "tuab", "--dataset", "nonsense", "--data", str(tmp_path)])
    assert code == 2
    code, _ = run(["train", "--task", "tuab", "--dataset", "tuab", "--data", str(tmp_path / "absent")])
    assert code == 3
    err = capsys.readouterr().err
    assert "absent" in err and "Traceback" not in err


def test_fine_tunes_from_an_official_layout_encoder_with_frozen_encoder(synthetic, tmp_path, capsys):
    """An encoder file in the official layout (formula weights, 142 keys, `model.` prefix) is loaded, frozen,
    and named by sha256 in the head; the head-only training leaves every encoder tensor untouched."""
    from lumamba_cli.headfile import read_head_metadata
    from lumamba_cli.model.formula import save_formula_encoder

    encoder = save_formula_encoder(tmp_path / "LuMamba_formula.safetensors")
    official = load_file(str(encoder))
    rows = [{"path": str(p), "label": c, "subject": p.name.split("_")[0]}
            for c in ("normal", "abnormal")
            for p in sorted((synthetic["tree"] / "train" / c / "01_tcp_ar").glob("*.edf"))[:2]]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    code, _ = run(["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "1",
                   "--encoder", str(encoder), "--freeze-encoder", "--head-option", "linear", "--out",
                   str(tmp_path / "o"), "--cache", str(synthetic["cache"]), "--quiet", "--no-import"])
    assert code == 0
    head = tmp_path / "o" / "tuab.safetensors"
    tensors = load_file(str(head))
    for key, value in tensors.items():
        if not key.startswith("classifier."):
            assert torch.equal(value, official[f"model.{key}"]), key
    meta = read_head_metadata(head)
    assert meta.encoder.name == encoder.name and len(meta.encoder.sha256) == 64
    assert meta.contains_encoder  # the encoder file is not imported: nothing could find it again by sha256
    # once the encoder is imported the frozen-encoder head is stored alone, and evaluate finds its encoder
    from lumamba_cli.encoders import import_encoder
    from lumamba_cli.model.checkpoint import load_head

    import_encoder(encoder, allow_unregistered=True)
    code, _ = run(["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "1",
                   "--encoder", str(encoder), "--freeze-encoder", "--head-option", "linear", "--out",
                   str(tmp_path / "ho"), "--cache", str(synthetic["cache"]), "--quiet", "--no-import"])
    assert code == 0
    head_only = tmp_path / "ho" / "tuab.safetensors"
    assert not read_head_metadata(head_only).contains_encoder
    assert all(k.startswith("classifier.") for k in load_file(str(head_only)))
    model, _ = load_head(head_only, encoder)
    for key, value in model.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(value, official[f"model.{key}"]), key
    code, out = run(["evaluate", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--split", "all",
                     "--head", str(head_only), "--bootstrap", "0", "--cache", str(synthetic["cache"]), "--json",
                     "--quiet"], capsys)
    assert code == 0, out
    assert json.loads(out)["head_encoder"]["sha256"] == meta.encoder.sha256
    # a registry name that is not downloaded fails before any decoding, with the weights exit code
    code, _ = run(["train", "--task", "tuab", "--dataset", "manifest", "--data", str(manifest), "--epochs", "1",
                   "--out", str(tmp_path / "p"), "--quiet"])
    assert code == 5


def test_layer_decay_and_schedule_follow_upstream():
    from lumamba_cli.train import MIN_LR, WARMUP_START_LR, layer_scale, lr_factor

    # tiny model (2 blocks): block 0 gets 0.75², block 1 0.75¹, everything else the full rate (spec §3.0)
    assert layer_scale("mamba_blocks.0.mamba_fwd.in_proj.weight", 2, 0.75) == pytest.approx(0.5625)
    assert layer_scale("norm_layers.1.weight", 2, 0.75) == pytest.approx(0.75)
    assert layer_scale("classifier.decoder_ffn.fc1.weight", 2, 0.75) == 1.0
    assert layer_scale("cross_attn.query_self_attn.layers.2.linear1.weight", 2, 0.75) == 1.0
    base = 5e-4
    assert lr_factor(0, 10, 100, base) == pytest.approx(WARMUP_START_LR)
    assert lr_factor(5, 10, 100, base) == pytest.approx((WARMUP_START_LR + base) / 2)
    # after the warm-up the cosine runs on the absolute step over all steps (timm, warmup_prefix=False):
    # at step 10 of 100 it is already at cos-progress 0.1, and it crosses the midpoint at step 50, not 55
    cosine = lambda t: MIN_LR + 0.5 * (base - MIN_LR) * (1 + np.cos(np.pi * t / 100))  # noqa: E731
    assert lr_factor(10, 10, 100, base) == pytest.approx(cosine(10))
    assert lr_factor(10, 10, 100, base) < 0.98 * base
    assert lr_factor(50, 10, 100, base) == pytest.approx((base + MIN_LR) / 2)
    assert lr_factor(77, 10, 100, base) == pytest.approx(cosine(77))
    assert lr_factor(100, 10, 100, base) == pytest.approx(MIN_LR)
    assert lr_factor(130, 10, 100, base) == pytest.approx(MIN_LR)


def test_refusals_come_before_any_folder_or_decoding(synthetic, tmp_path, monkeypatch):
    """A refused request writes nothing: no output folder, no cache entry, and an unusable encoder is found
    before a single recording is decoded."""
    monkeypatch.chdir(tmp_path)
    base = ["train", "--task", "tuab", "--dataset", "tuab", "--data", str(synthetic["tree"]), "--epochs", "1",
            "--cache", str(tmp_path / "cache")]
    assert run([*base, "--name", "../../outside"])[0] == 2
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x08" + b"\x00" * 7 + b"{}" + b"\x00" * 100)
    assert run([*base, "--encoder", str(garbage)])[0] == 5
    assert run([*base, "--encoder", "none", "--config", "num_heads=0"])[0] == 2
    assert not (tmp_path / "lumamba-train-tuab").exists() and not (tmp_path / "cache").exists()
    assert not list(tmp_path.parent.glob("outside*"))
