"""Parity with upstream's preprocessing: every fixture in ../shared/fixtures/preprocessing that names a recipe.

Each fixture stores windows produced by upstream's MNE calls on a real recording, and says in its metadata which
task recipe produced them and how to rebuild the input (file, crop). Tolerances are the fixtures' own (README):
float64 pipeline within 1e-9 of each window's std, float32 blocks within 1e-4, z-scores within 1e-5 absolute,
positions within 1e-6 m.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from lumamba_cli.errors import UsageError
from lumamba_cli.montage import load_registry
from lumamba_cli.preprocess import PreprocessPolicy, collect, iter_windows, preprocess_array, zscore
from lumamba_cli.recipes import load_recipe
from lumamba_cli.recording import open_recording

from conftest import FIXTURES  # noqa: E402  (honours LUMAMBA_SHARED)

CASES = sorted((FIXTURES / "preprocessing").glob("*.safetensors")) if (FIXTURES / "preprocessing").is_dir() else []


class _Cropped:
    """A recording seen as if it ended at ``stop_s`` (upstream cropped right after reading)."""

    def __init__(self, rec, start_s: float, stop_s: float):
        from lumamba_cli.edf import Segment

        assert start_s == 0.0, "only crops from the start are reproduced"
        self._rec, self.channels, self.path = rec, rec.channels, rec.path
        self.segments = [Segment(onset_s=0.0, data_start_s=0.0, duration_s=stop_s)]

    def read(self, channels, start_s=0.0, stop_s=None):
        return self._rec.read(channels, start_s, stop_s if stop_s is not None else self.segments[0].duration_s)


def _recipe_id(meta: dict) -> str:
    """The recipe a fixture was made with, from its metadata ('task' first word, else a token of 'case')."""
    candidates = [meta.get("task", "").split(" ")[0]] + meta.get("case", "").split("_")
    for token in candidates:
        try:
            return load_recipe(token).id
        except UsageError:
            continue
    pytest.skip(f"fixture {meta.get('case')} names no known recipe")


def _load(case: Path):
    with safe_open(str(case), "np") as handle:
        meta = json.loads(handle.metadata()["recipe"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    return meta, tensors


def _input(meta: dict, fixtures_dir: Path, shared_data: Path) -> tuple[Path, tuple[int, int] | None]:
    source = meta["source"]
    for folder in (fixtures_dir / "preprocessing", shared_data):
        if (folder / source["file"]).is_file():
            crop = source.get("crop", {}).get("samples")
            return folder / source["file"], (tuple(crop) if crop else None)
    pytest.skip(f"input {source['file']} of fixture {meta['case']} is absent")


@pytest.fixture(params=CASES, ids=[c.stem for c in CASES], scope="module")
def case(request):
    return request.param


def _run(case: Path, fixtures_dir: Path, shared_data: Path):
    meta, tensors = _load(case)
    recipe = load_recipe(_recipe_id(meta))
    path, crop = _input(meta, fixtures_dir, shared_data)
    rec = open_recording(path)
    derivation = load_registry().resolve(rec, recipe.layout, on_missing="raise").derivation
    sfreq = rec.channels[derivation.file_channels[0]].sfreq
    start_s, stop_s = (crop[0] / sfreq, crop[1] / sfreq) if crop else (0.0, None)
    # upstream's units at the z-score ("V (MNE internal units...)" or "uV ...")
    to_fixture_units = 1e-6 if meta["units"].startswith("V") else 1.0
    return meta, tensors, recipe, rec, derivation, sfreq, start_s, stop_s, to_fixture_units


def _assert_windows(mine: np.ndarray, ref: np.ndarray, k: float):
    std = ref.std(axis=-1, ddof=1, keepdims=True)
    worst = (np.abs(mine - ref) / std).max(axis=-1)
    assert worst.max() <= k, f"window/channel off by {worst.max():.2e} std (allowed {k:g}) at {np.argwhere(worst > k)[:5]}"


def test_float64_pipeline_matches_upstream(case, fixtures_dir, shared_data):
    meta, t, recipe, rec, derivation, sfreq, start_s, stop_s, scale = _run(case, fixtures_dir, shared_data)
    with rec:
        data = rec.read(derivation.file_channels, start_s, stop_s)
    windows = preprocess_array(data, sfreq, recipe, derivation)
    assert windows.shape[0] == meta["n_windows_total"]
    mine = windows[t["window_index"]] * scale
    _assert_windows(mine, t["windows"], 1e-9)
    # z-score on the float32 cast, as upstream's Lightning step does; Mumtaz's eps is in volts upstream
    z_ref = zscore(t["windows"].astype(np.float32), eps=recipe.normalisation.eps)
    z_mine = zscore(windows[t["window_index"]].astype(np.float32), eps=recipe.normalisation.eps_uv)
    assert np.abs(z_mine - z_ref).max() <= 1e-5
    np.testing.assert_allclose(derivation.positions, t["positions_f64"], rtol=0, atol=1e-6)


def test_window_blocks_match_upstream(case, fixtures_dir, shared_data):
    """The float32 blocks that inference reads: whole mode, true start times, positions, µV → fixture units."""
    meta, t, recipe, rec, derivation, sfreq, start_s, stop_s, scale = _run(case, fixtures_dir, shared_data)
    source = _Cropped(rec, start_s, stop_s) if stop_s is not None else rec
    with rec:
        block = collect(iter_windows(source, recipe, derivation, policy=PreprocessPolicy("whole")))
    assert block.mode == "whole" and block.data.dtype == np.float32
    assert len(block) == meta["n_windows_total"]
    np.testing.assert_allclose(block.start_s, np.arange(len(block)) * recipe.window_s)
    _assert_windows(block.data[t["window_index"]].astype(np.float64) * scale, t["windows"], 1e-4)
    z_ref = zscore(t["windows"].astype(np.float32), eps=recipe.normalisation.eps)
    assert np.abs(block.zscored()[t["window_index"]] - z_ref).max() <= 2e-4
    np.testing.assert_allclose(block.positions, t["positions"], rtol=0, atol=1e-6)
    assert block.channel_names == meta["channels_positions"]


def test_upstream_row_order_is_reproducible(case, fixtures_dir, shared_data):
    """``tuh_row_order: script`` gives upstream's HDF5 row order with positions left in CHN_ORDER (the mismatch)."""
    meta, t, recipe, rec, derivation, sfreq, start_s, stop_s, scale = _run(case, fixtures_dir, shared_data)
    if "perm_chn_order_from_script_order" not in t:
        pytest.skip("fixture has no script row order")
    script = recipe.with_options(tuh_row_order="script")
    with rec:
        block = collect(iter_windows(rec, script, derivation, policy=PreprocessPolicy("whole")))
    assert block.channel_names == meta["channels_windows_raw"]
    back_to_chn_order = block.data[:, t["perm_chn_order_from_script_order"]][t["window_index"]]
    _assert_windows(back_to_chn_order.astype(np.float64) * scale, t["windows"], 1e-4)
    np.testing.assert_allclose(block.positions, t["positions"], atol=1e-6)  # not re-paired: upstream's mismatch
    assert not np.allclose(block.positions, t["positions_script_order"], atol=1e-3)
