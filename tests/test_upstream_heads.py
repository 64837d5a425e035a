"""Heads fine-tuned with the authors' BioFoundation pipeline: a Lightning .ckpt, or its ckpt_to_safetensor.py
conversion, is imported (configuration read off the keys), screened with upstream's preprocessing, and gives the
logits of the model loaded directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from safetensors import safe_open
from safetensors.torch import save_file

from lumamba_cli.errors import WeightsError
from lumamba_cli.headfile import read_head_metadata
from lumamba_cli.heads import list_heads
from lumamba_cli.model import load_model
from lumamba_cli.model.formula import formula_state_dict
from lumamba_cli.montage import load_registry
from lumamba_cli.preprocess import collect, prepare
from lumamba_cli.recipes import load_recipe
from lumamba_cli.recording import open_recording

EXCERPT = Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"


def upstream_state(fixtures_dir: Path, fixture: str) -> dict[str, torch.Tensor]:
    """A fine-tuned model's state_dict as BioFoundation's Lightning module holds it: upstream's key list (from the
    golden fixture, written by the upstream code) with formula values, every key prefixed ``model.``."""
    with safe_open(str(fixtures_dir / "model" / f"{fixture}.safetensors"), "np") as handle:
        entries = json.loads(handle.metadata()["state_dict"])
    shapes = {key: tuple(shape) for key, shape, *_ in entries}
    return {"model." + k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in formula_state_dict(shapes).items()}


class _NotATensor:
    """Stands for what Lightning pickles beside the weights (hyper-parameter objects)."""


@pytest.fixture(scope="module")
def files(fixtures_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("upstream")
    state = upstream_state(fixtures_dir, "p02")  # the LUNA query head, 2 classes (TUAB-shaped)
    ckpt = folder / "tuab_finetuned.ckpt"
    torch.save({"state_dict": state, "epoch": 11, "global_step": 4200, "hyper_parameters": {"lr": 5e-4}}, ckpt)
    converted = folder / "tuab_finetuned.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(converted))
    pickled = folder / "with_objects.ckpt"
    torch.save({"state_dict": state, "hparams": _NotATensor()}, pickled)
    mamba = folder / "mamba_head.safetensors"
    save_file({k: v.contiguous() for k, v in upstream_state(fixtures_dir, "p05").items()}, str(mamba))
    return {"ckpt": ckpt, "safetensors": converted, "pickled": pickled, "mamba": mamba}


def direct_logits(path: Path, recipe_options: dict) -> np.ndarray:
    """The oracle: the checkpoint loaded directly, on windows prepared by hand with upstream's row order."""
    recipe = load_recipe("tuab").with_options(**recipe_options)
    model = load_model(path).eval()
    with open_recording(EXCERPT) as rec:
        block = collect(prepare(rec, recipe, load_registry()).windows())
    positions = torch.from_numpy(np.broadcast_to(block.positions, (len(block),) + block.positions.shape).copy())
    with torch.no_grad():
        return model(torch.from_numpy(block.zscored()), positions).numpy()


@pytest.mark.parametrize("form", ["ckpt", "safetensors"])
def test_an_upstream_checkpoint_imports_screens_and_gives_the_direct_logits(form, files, tmp_path, capsys):
    code, out, err = run_cli(["heads", "import", files[form], "--task", "tuab", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    meta = read_head_metadata(record["path"])
    assert meta.recipe_options == {"tuh_row_order": "script"} and meta.training.preprocessing["mode"] == "whole"
    assert meta.head_option is None and meta.contains_encoder and meta.training.source["pipeline"] == "BioFoundation"
    expected = direct_logits(files[form], {"tuh_row_order": "script"})
    p_expected = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    for head in (record["id"], files[form]):  # from the store, and given directly as --head
        out_dir = tmp_path / str(abs(hash(str(head))))
        code, _, err = run_cli(["screen", EXCERPT, "--task", "tuab", "--head", head, "--out", out_dir, "--quiet"],
                               capsys)
        assert code == 0, err
        report = json.loads((out_dir / "absence_excerpt.tuab.json").read_text())
        got = np.array([[w["probabilities"]["normal"], w["probabilities"]["abnormal"]] for w in report["windows"]])
        np.testing.assert_allclose(got, p_expected, atol=2e-6)  # reports round to 6 decimals
        assert report["recipe"]["hash"] == load_recipe("tuab").with_options(tuh_row_order="script").hash
    assert [h.id for h in list_heads("tuab")] == [record["id"]]


def test_labels_in_the_heads_own_order_are_reordered(files, tmp_path, capsys):
    code, out, err = run_cli(["heads", "import", files["safetensors"], "--task", "tuab", "--labels", "abnormal",
                              "--labels", "normal", "--row-order", "chn_order", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    code, _, err = run_cli(["screen", EXCERPT, "--task", "tuab", "--head", record["id"], "--out", tmp_path, "--quiet"],
                           capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "absence_excerpt.tuab.json").read_text())
    expected = direct_logits(files["safetensors"], {"tuh_row_order": "chn_order"})[:, ::-1]  # head's class 0 = abnormal
    p_expected = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    got = np.array([[w["probabilities"]["normal"], w["probabilities"]["abnormal"]] for w in report["windows"]])
    np.testing.assert_allclose(got, p_expected, atol=2e-6)


def test_a_checkpoint_that_needs_unpickling_gets_a_conversion_recipe(files, capsys):
    code, _, err = run_cli(["heads", "import", files["pickled"], "--task", "tuab"], capsys)
    assert code == 5 and "weights_only=True" in err and "trusted environment" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    code, _, err = run_cli(["heads", "import", files["ckpt"]], capsys)
    assert code == 5 and "--task" in err  # the file does not say which task it is for


def test_shapes_decide_the_configuration_and_ambiguity_is_refused(files):
    model = load_model(files["safetensors"])
    assert model.config.classifier_option is None and model.config.num_classes == 2
    with pytest.raises(WeightsError, match="per-window classes .* or per channel"):
        load_model(files["mamba"])
    code_path = files["mamba"]
    from lumamba_cli.model import LuMambaConfig

    config = LuMambaConfig.tiny(num_classes=2, classifier_option="mamba", classification_type="mc")
    assert load_model(code_path, config).config.num_outputs == 22
