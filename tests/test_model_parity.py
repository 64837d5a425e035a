"""LuMamba against the upstream golden outputs (../shared/fixtures/model), in float64 and float32.

Every fixture file present is used: the model configuration, the key set, the inputs and which outputs to
compare all come from the file's own metadata, so fixtures added later are tested the same way.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from lumamba_cli.model import LuMamba, LuMambaConfig

from model_helpers import formula_weights_for, load_formula_weights

try:
    from conftest import FIXTURES
except ImportError:  # pragma: no cover - conftest moved; the fixtures_dir fixture still decides below
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

FIXTURE_FILES = sorted((FIXTURES / "model").glob("*.safetensors"))
DEFAULT_TOLERANCE = {"float64": 1e-10, "float32": 5e-5}


class Fixture:
    def __init__(self, path: Path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            self.meta = {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
            self.tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        self.name = path.stem
        self.config = self.meta["config"]
        self.outputs = {k[len("io.out."):]: v for k, v in self.tensors.items() if k.startswith("io.out.")}

    def tolerance(self, dtype: str, output: str) -> float:
        return float(self.meta.get("tolerance", {}).get(dtype, {}).get(output, DEFAULT_TOLERANCE[dtype]))


@lru_cache(maxsize=None)
def load_fixture(path: Path) -> Fixture:
    return Fixture(path)


@lru_cache(maxsize=None)
def formula_weights(path: Path) -> dict[str, np.ndarray]:
    fixture = load_fixture(path)
    with torch.device("meta"):
        model = LuMamba(LuMambaConfig.from_upstream(fixture.config["constructor"]))
    return formula_weights_for(model)


def build_model(path: Path, dtype: torch.dtype) -> LuMamba:
    fixture = load_fixture(path)
    model = LuMamba(LuMambaConfig.from_upstream(fixture.config["constructor"])).to(dtype).eval()
    # load after the dtype change: float64 weights must not pass through float32
    return load_formula_weights(model, formula_weights(path))


def normalised_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    assert tuple(got.shape) == tuple(ref.shape), f"shape {tuple(got.shape)} != {tuple(ref.shape)}"
    return float((got.double() - ref.double()).abs().max() / ref.double().abs().max())


def run_all_outputs(model: LuMamba, fixture: Fixture, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    t = fixture.tensors
    x = t["io.x"].to(dtype)
    locations = t["io.channel_locations"].to(dtype)
    names = t.get("io.channel_names")
    with torch.inference_mode():
        got = model.stages(x, locations, names)
        # the production call (attention weights not requested, fast paths allowed) must match as well
        final = model(x, locations, names)
        if model.config.num_classes:
            got["encode"] = model.encode(x, locations)
        got["reconstruction" if model.config.num_classes == 0 else "logits"] = final
        for name in fixture.outputs:
            if name.startswith("aux."):
                got[name] = getattr(model, name[len("aux."):])(t["io.x_aux"].to(dtype))
    return got


needs_fixtures = pytest.mark.skipif(not FIXTURE_FILES, reason=f"no parity fixtures under {FIXTURES / 'model'}")


@needs_fixtures
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_key_set_and_weights_match_fixture(path, fixtures_dir):
    fixture = load_fixture(path)
    listed = {key: tuple(shape) for key, shape, *_ in fixture.meta["state_dict"]}
    with torch.device("meta"):
        model = LuMamba(LuMambaConfig.from_upstream(fixture.config["constructor"]))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == listed, "module names/shapes differ from the upstream state dict"
    weights = formula_weights(path)
    check = fixture.meta["weights_check"]
    assert len(weights) == check["n_tensors"]
    assert sum(v.size for v in weights.values()) == check["numel"]
    # platform sin differs from the correctly rounded one in the last bit for a few elements
    total = math.fsum(v.sum(dtype=np.float64) for v in weights.values())
    assert total == pytest.approx(check["fsum"], rel=1e-12)


@needs_fixtures
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.stem for p in FIXTURE_FILES])
def test_every_output_matches_upstream(path, dtype_name, fixtures_dir):
    fixture = load_fixture(path)
    dtype = getattr(torch, dtype_name)
    model = build_model(path, dtype)
    assert model.backend == "torch"
    got = run_all_outputs(model, fixture, dtype)
    failures = []
    for name, ref in sorted(fixture.outputs.items()):
        assert name in got, f"{fixture.name}: no implementation stage produces '{name}'"
        err = normalised_error(got[name], ref)
        tol = fixture.tolerance(dtype_name, name)
        if not err <= tol:
            failures.append(f"{name}: {err:.3e} > {tol:.0e}")
    assert not failures, f"{fixture.name} {dtype_name}: " + "; ".join(failures)


def _fixture_with(head: str) -> Path | None:
    for path in FIXTURE_FILES:
        if load_fixture(path).config.get("head") == head:
            return path
    return None


def _mixed_batch(fixture: Fixture, dtype):
    """Two windows with different signals and different electrode positions (one montage each)."""
    x = fixture.tensors["io.x"][:1].to(dtype)
    locations = fixture.tensors["io.channel_locations"][:1].to(dtype)
    generator = torch.Generator().manual_seed(7)
    n_channels = x.shape[1]
    order = torch.randperm(n_channels, generator=generator)
    other_x = x.flip(-1) * 0.7 + 0.1
    other_locations = locations[:, order] * 1.1 + 0.01 * torch.randn(locations.shape, generator=generator, dtype=dtype)
    return torch.cat([x, other_x]), torch.cat([locations, other_locations])


@needs_fixtures
@pytest.mark.parametrize("head", ["luna", "mamba", "linear", "reconstruction"])
def test_mixed_montage_batch_equals_items_alone(head, fixtures_dir):
    path = _fixture_with(head)
    if path is None:
        pytest.skip(f"no fixture with a {head} head")
    fixture = load_fixture(path)
    model = build_model(path, torch.float64)
    x, locations = _mixed_batch(fixture, torch.float64)
    names = None
    if head == "reconstruction":
        first = fixture.tensors["io.channel_names"][:1]
        names = torch.cat([first, first.flip(-1)])
    with torch.inference_mode():
        batched = model(x, locations, names)
        for i in range(2):
            alone = model(x[i : i + 1], locations[i : i + 1], None if names is None else names[i : i + 1])
            err = float((batched[i : i + 1] - alone).abs().max())
            assert err <= 1e-12 * max(1.0, float(alone.abs().max())), f"item {i} changed by batching: {err:.2e}"
        # the two items really differ, so the check above could fail
        assert float((batched[0] - batched[1]).abs().max()) > 1e-6


@needs_fixtures
def test_mask_adds_location_jitter_only_when_asked(fixtures_dir):
    path = _fixture_with("luna") or FIXTURE_FILES[0]
    fixture = load_fixture(path)
    model = build_model(path, torch.float64)
    x = fixture.tensors["io.x"].double()
    locations = fixture.tensors["io.channel_locations"].double()
    names = fixture.tensors.get("io.channel_names")
    no_mask = torch.zeros_like(x, dtype=torch.bool)
    with torch.inference_mode():
        plain = model(x, locations, names)
        assert torch.equal(plain, model(x, locations, names)), "mask=None must be deterministic"
        torch.manual_seed(0)
        jittered = model(x, locations, names, mask=no_mask)  # upstream fine-tuning's all-False mask
        assert float((jittered - plain).abs().max()) > 1e-8
        quiet = model(x, locations, names, mask=no_mask, location_jitter=False)
        assert torch.equal(quiet, plain), "an all-False mask without jitter changes nothing"


def test_input_validation():
    model = LuMamba(LuMambaConfig.tiny(num_classes=2)).eval()
    locations = torch.rand(1, 4, 3)
    with pytest.raises(ValueError, match="multiple of 40"):
        model(torch.randn(1, 4, 100), locations)
    with pytest.raises(ValueError, match="channel_locations"):
        model(torch.randn(1, 4, 80), torch.rand(1, 5, 3))
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        model(torch.randn(4, 80), locations)
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 4, 80), float("nan")), locations)
    pretraining = LuMamba(LuMambaConfig.tiny()).eval()
    with pytest.raises(ValueError, match="channel_names"):
        pretraining(torch.randn(1, 4, 80), locations)
    with pytest.raises(ValueError, match="indices"):
        pretraining(torch.randn(1, 4, 80), locations, torch.tensor([[0, 1, 2, 90]]))


@pytest.mark.parametrize(
    "overrides, tensors, elements",
    [
        ({}, 142, 4_194_337),  # the released pre-training model (spec §2.5)
        ({"num_classes": 2}, 126, 5_280_955),
        ({"num_classes": 2, "classifier_option": "mamba"}, 130, 4_631_611),
        ({"num_classes": 2, "classifier_option": "linear"}, 119, 4_095_547),
        ({"num_blocks": 8}, 262, 15_765_025),
        ({"num_blocks": 8, "num_classes": 2}, 246, 16_851_643),
    ],
)
def test_sizes_match_upstream(overrides, tensors, elements):
    with torch.device("meta"):
        model = LuMamba(LuMambaConfig.tiny(**overrides))
    state = model.state_dict()
    assert len(state) == tensors
    assert sum(v.numel() for v in state.values()) == elements


@pytest.mark.parametrize("kind, shape", [("mc", (3, 22)), ("mmc", (3, 22, 6)), ("mcc", (3, 6)), ("bc", (3, 6))])
def test_mamba_head_output_shapes(kind, shape):
    config = LuMambaConfig.tiny(num_classes=6, classifier_option="mamba", classification_type=kind,
                                classification_num_channels=22, embed_dim=16, num_queries=2)
    model = LuMamba(config).eval()
    with torch.inference_mode():
        out = model(torch.randn(3, 5, 80), torch.rand(3, 5, 3))
    assert tuple(out.shape) == shape


def test_config_round_trip_and_refusals():
    config = LuMambaConfig.tiny(num_classes=3, classifier_option="linear", num_blocks=8)
    assert LuMambaConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        LuMambaConfig.from_dict({**config.to_dict(), "surprise": 1})
    with pytest.raises(ValueError, match="needs classifier_option 'mamba'"):
        LuMambaConfig.tiny(num_classes=2, classification_type="mc")
    legacy = LuMambaConfig.from_upstream({"num_classes": 2, "mamba_classifier": True, "classifier_option": None})
    assert legacy.classifier_option == "mamba"
    assert LuMambaConfig.from_upstream({"num_classes": 2, "mamba_classifier": True,
                                        "classifier_option": "linear"}).classifier_option == "linear"
