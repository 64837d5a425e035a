"""Task recipes: every bundled recipe validates, agrees with the spec's numbers, and hashes stably."""

from __future__ import annotations

import json

import pytest
import yaml

from lumamba_cli.errors import UsageError
from lumamba_cli.recipes import PATCH_SAMPLES, Recipe, list_recipes, load_recipe, tasks_dir
from lumamba_cli.resources import data_file

REQUIRED = ["tuab", "tuar_bc", "tuar_mc", "tusl", "apava", "tdbrain", "mumtaz"]


def test_required_recipes_exist_and_validate():
    ids = [r.id for r in list_recipes()]
    assert ids == sorted(ids)
    for task in REQUIRED + ["qc"]:
        assert task in ids


@pytest.mark.parametrize("recipe", [r for r in list_recipes() if r.purpose == "model"], ids=lambda r: r.id)
def test_model_recipe_is_consistent(recipe):
    fs = recipe.target_sfreq
    assert recipe.window_samples(fs) % PATCH_SAMPLES == 0
    assert recipe.normalisation is not None and recipe.normalisation.ddof == 1 and recipe.normalisation.eps == 1e-8
    if recipe.classification_type in ("bc", "mcc"):
        assert recipe.num_outputs == len(recipe.labels) == recipe.num_classes
    if recipe.classification_type in ("mc", "mmc"):
        assert recipe.head_option == "mamba"
    # the layout and the encoder it names exist
    assert data_file("montages", "layouts", f"{recipe.layout}.yaml").is_file()
    encoders = {e["name"] for e in yaml.safe_load(data_file("models", "encoders.yaml").read_text())["encoders"]}
    assert recipe.encoder in encoders
    for result in recipe.published:
        assert result.encoder in encoders and result.metrics and result.source


def test_spec_numbers():
    tuab = load_recipe("tuab")
    assert (tuab.bandpass.l_freq, tuab.bandpass.h_freq, tuab.notch.freq, tuab.target_sfreq) == (0.1, 75.0, 60.0, 256.0)
    assert tuab.window_samples(256) == 1280 and tuab.step_s == tuab.window_s
    assert tuab.layout == "tuh_tcp22" and tuab.derivation == "tcp_bipolar_from_referential"
    assert tuab.tuh_row_order == "chn_order" and tuab.row_order_script[8] == "A1-T3" and tuab.row_order_script[13] == "T4-A2"
    assert {d.id for d in tuab.upstream_differences} >= {"tuh_row_order"}
    assert load_recipe("tdbrain").window_samples(256) == 320
    assert load_recipe("tusl").num_classes == 4
    assert load_recipe("tuar_mc").num_outputs == 22
    mumtaz = load_recipe("mumtaz")
    assert mumtaz.notch.freq == 50.0 and mumtaz.normalisation.units == "V"
    assert mumtaz.normalisation.eps_uv == pytest.approx(0.01)
    assert load_recipe("tuab").normalisation.eps_uv == 1e-8
    apava = load_recipe("apava")
    assert apava.filter_scope == "continuous"
    assert any(d.reproduce_upstream and "per_window" in d.reproduce_upstream for d in apava.upstream_differences)
    mobi = load_recipe("mobi")
    assert mobi.bandpass is None and mobi.notch is None and mobi.window_samples(100) == 200 and mobi.step_samples(100) == 5
    assert load_recipe("modma").window_samples(250) == 1280


def test_aliases_and_unknown_task():
    assert load_recipe("tuar").id == "tuar_bc"
    assert load_recipe("Mumtaz2016").id == "mumtaz"
    with pytest.raises(UsageError, match="unknown task 'nope'"):
        load_recipe("nope")


def test_hash_is_stable_and_sensitive():
    for recipe in list_recipes():
        assert len(recipe.hash) == 16 and int(recipe.hash, 16) >= 0
        # re-validating the canonical JSON gives the same recipe and hash (no hidden state, key order irrelevant)
        again = Recipe.model_validate(json.loads(recipe.canonical_json()))
        assert again.hash == recipe.hash
        # the YAML file read afresh hashes the same
        fresh = Recipe.model_validate(yaml.safe_load((tasks_dir() / f"{recipe.id}.yaml").read_text()))
        assert fresh.hash == recipe.hash
    tuab = load_recipe("tuab")
    assert tuab.with_options(tuh_row_order="script").hash != tuab.hash
    assert tuab.with_options(window_s=10.0, step_s=10.0).hash != tuab.hash
    assert len({r.hash for r in list_recipes()}) == len(list_recipes())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"head_option": "luna", "classification_type": "mc"}, "Mamba head"),
        ({"window_s": 5.01, "step_s": 5.01}, "whole number|multiple of 40"),
        ({"step_s": 6.0}, "skip data"),
        ({"tuh_row_order": "script", "row_order_script": None}, "row_order_script"),
        ({"notch": {"freq": 60.0, "unknown": 1}}, "Extra inputs"),
    ],
)
def test_invalid_recipes_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        load_recipe("tuab").with_options(**change)


def test_native_rate_must_carry_the_low_pass():
    tuab, mobi = load_recipe("tuab"), load_recipe("mobi")
    assert tuab.native_rate_problem(250.0) is None and tuab.native_rate_problem(160.0) is None
    assert "needs more than 150 Hz" in tuab.native_rate_problem(128.0)
    assert tuab.native_rate_problem(150.0) is not None  # 75 Hz is the Nyquist frequency itself
    assert mobi.native_rate_problem(100.0) is None and mobi.native_rate_problem(64.0) is None  # no filter at all
