"""The preprocessing a head was trained with travels with it: train records the policy (mode, chunking,
modes actually used), screen and evaluate apply it unless told otherwise and say so when told otherwise;
and the float16 window cache gives the same training inputs as float32 up to float16 rounding."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from cli_helpers import run_cli


def run(argv, capsys=None):
    code, out, _ = run_cli(argv, capsys)
    return code, out
from synthetic_eeg import make_tuab_tree

SMALL = ["--config", "num_blocks=1,num_queries=2,embed_dim=32"]
FAST = ["--encoder", "none", "--batch-size", "16", "--warmup-epochs", "0", *SMALL]




@pytest.fixture(scope="module")
def chunked_head(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    files = make_tuab_tree(root / "tree", n_train_per_class=3, n_eval_per_class=1, duration_s=40.0, seed=5)
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUMAMBA_HOME", str(root / "home"))
        code, _ = run(["train", "--task", "tuab", "--dataset", "tuab", "--data", str(root / "tree"), "--epochs", "1",
                       *FAST, "--mode", "chunked", "--chunk-s", "15", "--cache-dtype", "float16",
                       "--out", str(out), "--cache", str(root / "cache"), "--quiet", "--no-import"])
    assert code == 0
    return {"root": root, "head": out / "tuab.safetensors", "files": files}


def test_training_policy_is_recorded_in_the_head(chunked_head):
    from lumamba_cli.model.checkpoint import read_head_metadata

    meta = read_head_metadata(chunked_head["head"])
    assert meta.training.preprocessing == {
        "mode": "chunked", "chunk_s": 15.0, "chunk_threshold_s": 3600.0, "modes_seen": ["chunked"]
    }
    assert meta.training.cache_dtype == "float16"


def _screen(chunked_head, tmp_path, capsys, *extra):
    from lumamba_cli.report import json_schema

    recording = chunked_head["files"][-1][0]
    out = tmp_path / ("screen" + "".join(extra))
    code, _ = run(["screen", str(recording), "--task", "tuab", "--head", str(chunked_head["head"]),
                   "--out", str(out), "--quiet", *extra], capsys)
    assert code == 0
    report = json.loads(next(out.glob("*.tuab.json")).read_text())
    jsonschema.validate(report, json_schema("report"))
    return report


def test_screen_uses_the_heads_policy_by_default(chunked_head, tmp_path, capsys):
    report = _screen(chunked_head, tmp_path, capsys)
    assert report["recipe"]["mode"] == "chunked" and report["recipe"]["deviation"]
    assert report["recipe"]["preprocessing"]["source"] == "head"
    assert report["recipe"]["preprocessing"]["chunk_s"] == 15.0
    assert not report["recipe"]["notes"]
    assert not any("differs" in w for w in report["warnings"])


def test_forcing_another_mode_is_obeyed_and_flagged(chunked_head, tmp_path, capsys):
    report = _screen(chunked_head, tmp_path, capsys, "--mode", "whole")
    assert report["recipe"]["mode"] == "whole" and report["recipe"]["deviation"] is None
    assert report["recipe"]["preprocessing"]["source"] == "--mode"
    assert len(report["recipe"]["notes"]) == 1 and "trained with (chunked)" in report["recipe"]["notes"][0]
    assert report["recipe"]["notes"][0] in report["warnings"]


def test_evaluate_follows_the_heads_policy(chunked_head, capsys, monkeypatch):
    monkeypatch.setenv("LUMAMBA_HOME", str(chunked_head["root"] / "home"))
    argv = ["evaluate", "--task", "tuab", "--dataset", "tuab", "--data", str(chunked_head["root"] / "tree"),
            "--head", str(chunked_head["head"]), "--bootstrap", "0", "--cache", str(chunked_head["root"] / "cache"),
            "--json", "--quiet"]
    code, out = run(argv, capsys)
    assert code == 0, out
    result = json.loads(out)
    assert result["preprocessing"]["mode"] == "chunked" and result["preprocessing"]["modes_seen"] == ["chunked"]
    assert not any("differs" in w for w in result["warnings"])
    code, out = run([*argv, "--mode", "whole"], capsys)
    assert code == 0
    assert any("differs from the head's training preprocessing" in w for w in json.loads(out)["warnings"])


def test_float16_cache_round_trip(chunked_head, tmp_path):
    from lumamba_cli import datasets, window_cache
    from lumamba_cli.recipes import load_recipe

    recipe = load_recipe("tuab")
    index = datasets.discover("tuab", chunked_head["root"] / "tree", recipe.labels)
    sources = index.sources[:2]
    full = window_cache.build_split(index, sources, recipe, cache_dir=tmp_path / "c32")
    half = window_cache.build_split(index, sources, recipe, cache_dir=tmp_path / "c16", cache_dtype="float16")
    assert half.caches[0].data.dtype == np.float16 and full.caches[0].data.dtype == np.float32
    size = lambda folder: sum(p.stat().st_size for p in folder.glob("*.npy"))  # noqa: E731
    assert size(tmp_path / "c16") == pytest.approx(size(tmp_path / "c32") / 2, rel=0.01)
    raw32 = np.asarray(full.caches[0].data)
    raw16 = np.asarray(half.caches[0].data, dtype=np.float32)
    # float16 keeps 11 significant bits: relative error ≤ 2^-11 of each value
    np.testing.assert_allclose(raw16, raw32, rtol=2.0**-11, atol=1e-6)
    np.testing.assert_array_equal(half.labels, full.labels)
    x32, pos32, y32 = full.batch(np.arange(len(full)))
    x16, pos16, y16 = half.batch(np.arange(len(half)))
    assert x16.dtype == np.float32  # z-scored after loading, in float32
    assert np.abs(x16 - x32).max() < 5e-3  # z-scored units (std 1)
    np.testing.assert_array_equal(pos16, pos32)
    with pytest.raises(ValueError, match="CacheDtype"):
        window_cache.load_windows(sources[0], recipe, cache_dir=tmp_path / "c8", dtype="int8")
