"""Checkpoint I/O: the official file layout, Lightning .ckpt through weights_only, lumamba head files."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from lumamba_cli.errors import WeightsError
from lumamba_cli.model import LuMamba, LuMambaConfig, load_model
from lumamba_cli.model.checkpoint import (
    HeadMetadata,
    check_official_layout,
    load_head,
    load_official_encoder,
    official_key_shapes,
    read_head_metadata,
    save_head,
    sha256_file,
)
from lumamba_cli.model.formula import formula_state_dict, save_formula_encoder



OFFICIAL_FILE_BYTES = 16_793_276  # each PulpBio/LuMamba file (spec §2.6)


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    """The 142 pre-training tensors with formula values, as an official file stores them (prefix, float32)."""
    weights = formula_state_dict(official_key_shapes())
    return {"model." + k: torch.from_numpy(v).float() for k, v in weights.items()}


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    return save_formula_encoder(tmp_path_factory.mktemp("enc") / "LuMamba_formula.safetensors")


def small_inputs(batch=2, channels=22, samples=320):
    g = torch.Generator().manual_seed(11)
    return torch.randn(batch, channels, samples, generator=g), torch.rand(batch, channels, 3, generator=g)


def test_official_layout_is_byte_exact_and_loads(official_file, official_state):
    assert os.path.getsize(official_file) == OFFICIAL_FILE_BYTES
    assert len(official_state) == 142
    check_official_layout(official_file)
    model = load_model(official_file)
    assert model.config.num_classes == 0 and not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, official_state["model." + key]), key
    x, locations = small_inputs()
    names = torch.arange(22).repeat(2, 1)
    with torch.inference_mode():
        assert model(x, locations, names).shape == x.shape


def test_official_key_shapes_follow_the_spec():
    shapes = official_key_shapes()
    assert len(shapes) == 142
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 4_194_337
    assert shapes["mamba_blocks.1.mamba_rev.x_proj.weight"] == (56, 768)
    assert shapes["cross_attn.temparature"] == ()
    assert shapes["channel_emb.embeddings.weight"] == (90, 64)


def test_unprefixed_form_and_classification_drop(official_state, tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k[len("model."):]: v for k, v in official_state.items()}, str(path))
    full = load_official_encoder(path)
    assert len(full) == 142
    encoder = load_official_encoder(path, reconstruction=False)
    assert len(encoder) == 117
    assert not any(k.startswith(("decoder_head.", "channel_emb.")) for k in encoder)
    with pytest.raises(WeightsError, match="prefix"):
        check_official_layout(path)  # loadable, but not the official layout


def _broken(official_state, how):
    state = dict(official_state)
    if how == "missing":
        del state["model.mamba_blocks.1.mamba_fwd.D"]
        return state, "mamba_blocks.1.mamba_fwd.D"
    if how == "extra":
        state["model.mamba_blocks.2.mamba_fwd.D"] = torch.ones(768)
        return state, "mamba_blocks.2.mamba_fwd.D"
    if how == "misshaped":
        state["model.norm_layers.0.weight"] = torch.ones(383)
        return state, "norm_layers.0.weight"
    if how == "mixed-prefix":
        state["cross_attn.temparature"] = state.pop("model.cross_attn.temparature")
        return state, "prefix"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing", "extra", "misshaped", "mixed-prefix"])
def test_incomplete_or_foreign_files_are_refused(official_state, tmp_path, how):
    state, named = _broken(official_state, how)
    path = tmp_path / f"{how}.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError, match=named.replace(".", r"\.")) as refused:
        load_model(path)
    assert str(path) in str(refused.value)
    with pytest.raises(WeightsError):
        check_official_layout(path)


def test_non_finite_and_non_float32_refused(official_state, tmp_path):
    state = dict(official_state)
    state["model.mask_token"] = torch.full((1, 1, 64), float("nan"))
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError, match="NaN"):
        load_official_encoder(path)
    half = {k: v.half() for k, v in official_state.items()}
    path16 = tmp_path / "half.safetensors"
    save_file(half, str(path16))
    with pytest.raises(WeightsError, match="float32"):
        check_official_layout(path16)


def test_lightning_ckpt_through_weights_only(official_state, tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": official_state, "epoch": 9, "global_step": 1234}, path)
    state = load_official_encoder(path)
    assert len(state) == 142
    assert torch.equal(state["mask_token"], official_state["model.mask_token"])
    model = load_model(path)
    assert model.config.head == "reconstruction"


def test_ckpt_that_needs_pickle_is_refused(official_state, tmp_path):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": official_state, "hyper_parameters": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        load_official_encoder(path)


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not weights at all")
    with pytest.raises(WeightsError):
        load_model(path)
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "absent.safetensors")


def test_classification_config_needs_a_head(official_file):
    config = LuMambaConfig.tiny(num_classes=2)
    with pytest.raises(WeightsError, match="classifier"):
        load_model(official_file, config)
    model = load_model(official_file, config, allow_new_head=True)
    encoder = load_official_encoder(official_file, reconstruction=False)
    for key, value in encoder.items():
        assert torch.equal(model.state_dict()[key], value)


def _metadata(model: LuMamba, **extra) -> HeadMetadata:
    cfg = model.config
    fields = dict(task="demo", recipe_id="demo", recipe_hash="0123456789abcdef", labels=["normal", "abnormal"],
                  classification_type=cfg.classification_type, num_classes=cfg.num_classes,
                  head_option=cfg.classifier_option, training={"epochs": 1}, metrics={"balanced_accuracy": 0.5})
    return HeadMetadata(**{**fields, **extra})


def test_full_head_file_round_trip(tmp_path):
    torch.manual_seed(5)
    model = LuMamba(LuMambaConfig.tiny(num_classes=2, classifier_option="mamba")).eval()
    path = save_head(tmp_path / "heads" / "demo.safetensors", model, _metadata(model))
    assert [p.name for p in path.parent.iterdir()] == ["demo.safetensors"], "temporary file left behind"
    loaded, metadata = load_head(path)
    assert metadata.contains_encoder and metadata.config == model.config.to_dict()
    assert metadata.labels == ["normal", "abnormal"]
    x, locations = small_inputs()
    with torch.inference_mode():
        assert torch.equal(loaded(x, locations), model(x, locations))
    assert isinstance(load_model(path), LuMamba)


def test_head_only_file_needs_its_encoder(official_file, tmp_path):
    config = LuMambaConfig.tiny(num_classes=2, classifier_option="linear")
    model = load_model(official_file, config, allow_new_head=True)
    digest = sha256_file(official_file)
    meta = _metadata(model, encoder={"name": "formula", "sha256": digest}, contains_encoder=False)
    path = save_head(tmp_path / "linear.safetensors", model, meta)
    assert set(load_file(str(path))) == {"classifier.fc1.weight", "classifier.fc1.bias"}
    with pytest.raises(WeightsError, match="needs the encoder"):
        load_head(path)
    loaded, _ = load_head(path, encoder_path=official_file)
    x, locations = small_inputs()
    with torch.inference_mode():
        assert torch.equal(loaded(x, locations), model(x, locations))

    other = tmp_path / "other.safetensors"
    state = load_file(str(official_file))
    state["model.mask_token"] = state["model.mask_token"] + 1.0
    save_file(state, str(other))
    with pytest.raises(WeightsError, match="sha256"):
        load_head(path, encoder_path=other)


def test_head_file_coverage_and_metadata_checks(tmp_path):
    torch.manual_seed(1)
    model = LuMamba(LuMambaConfig.tiny(num_classes=3, classifier_option="linear")).eval()
    path = save_head(tmp_path / "h.safetensors", model, _metadata(model, labels=["a", "b", "c"]))
    state = load_file(str(path))
    raw_meta = json.loads(read_head_metadata(path).model_dump_json())

    del state["classifier.fc1.bias"]
    cut = tmp_path / "cut.safetensors"
    save_file(state, str(cut), metadata={"lumamba_head": json.dumps(raw_meta)})
    with pytest.raises(WeightsError, match=r"classifier\.fc1\.bias"):
        load_head(cut)

    raw_meta["format_version"] = 99
    future = tmp_path / "future.safetensors"
    save_file(load_file(str(path)), str(future), metadata={"lumamba_head": json.dumps(raw_meta)})
    with pytest.raises(WeightsError, match="newer"):
        load_head(future)

    with pytest.raises(ValueError, match="num_classes"):
        save_head(tmp_path / "bad.safetensors", model, _metadata(model).model_copy(update={"num_classes": 2}))
