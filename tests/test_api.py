"""The Python API (``lumamba_cli.screen`` / ``encode``) on a path, an edited ``mne.io.Raw`` and an array: the same
numbers as the CLI, bad channels honoured, embeddings equal to ``model.encode`` on the same windows."""

from __future__ import annotations

import json
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

import lumamba_cli as lm
from lumamba_cli.errors import MontageError
from lumamba_cli.model.formula import save_formula_encoder, save_formula_head


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return save_formula_head("tuab", tmp_path_factory.mktemp("api") / "tuab.safetensors")


@pytest.fixture(scope="module")
def edited(absence_edf, tmp_path_factory):
    """The absence recording edited in memory (cropped, renamed, a bad channel), and the same edit saved as EDF."""
    raw = mne.io.read_raw_edf(absence_edf, preload=True, verbose="error")
    raw.crop(30.0, 90.0, include_tmax=False)
    raw.rename_channels({name: name.replace("EEG ", "") for name in raw.ch_names if name.startswith("EEG ")})
    raw.pick([name for name in raw.ch_names if name not in ("E", "X2", "X3", "X4", "X5", "X6", "X7", "Mark1",
                                                             "Mark2", "Events/Markers", "ECG X1")])
    raw.info["bads"] = ["Pz"]  # not used by the TUH bipolar montage
    path = tmp_path_factory.mktemp("api") / "edited.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    return raw, path


def cli_windows(path, out, head) -> pd.DataFrame:
    code, _, err = run_cli(["screen", path, "--task", "tuab", "--head", head, "--out", out, "--quiet"])
    assert code == 0, err
    return pd.read_csv(out / f"{path.stem}.tuab.windows.csv")


def test_screen_a_raw_edited_in_memory_gives_the_numbers_of_the_saved_file(edited, head, tmp_path):
    raw, path = edited
    expected = cli_windows(path, tmp_path / "cli", head)
    # the saved file read back by MNE: the very samples the CLI read, so the very same numbers
    reread = lm.screen(mne.io.read_raw_edf(path, preload=True, verbose="error"), tasks=["tuab"], head=head)
    frame = reread["tuab"].windows
    np.testing.assert_array_equal(frame["start_s"], expected["start_s"])
    np.testing.assert_allclose(frame["p_abnormal"], expected["p_abnormal"], atol=2e-6)
    assert list(frame["predicted"]) == list(expected["predicted"])
    # the edit itself, before EDF's 16-bit quantisation: the same to the quantisation's effect
    in_memory = lm.screen(raw, tasks=["tuab"], head=head)
    np.testing.assert_allclose(in_memory["tuab"].windows["p_abnormal"], expected["p_abnormal"], atol=2e-3)
    rows = {r["raw"]: r for r in in_memory["tuab"].montage["rows"]}
    assert rows["Pz"]["bad"] and not rows["Pz"]["used"] and "marked bad" in rows["Pz"]["reason"]
    assert in_memory["tuab"].report["input"]["header"]["reader"] == "mne-object"


def test_the_report_is_the_json_the_cli_writes(head, tmp_path):
    from lumamba_cli.report import json_schema

    import jsonschema

    source = Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"
    result = lm.screen(source, tasks=["qc", "tuab"], head=head)
    assert list(result) == ["qc", "tuab"]
    run_cli(["screen", source, "--task", "qc", "--task", "tuab", "--head", head, "--out", tmp_path, "--quiet"])
    for task in ("qc", "tuab"):
        written = json.loads((tmp_path / f"absence_excerpt.{task}.json").read_text())
        assert json.loads(json.dumps(result[task].report, default=str)) == written
        jsonschema.validate(result[task].report, json_schema("report"))
    summary = result["tuab"].summary
    assert summary["windows_total"] == len(result["tuab"].windows) == 36
    qc = result["qc"].windows
    assert qc["qc_pass"].dtype == bool and qc["qc_bad_channels"].max() > 0  # numbers, not strings


def test_a_bad_channel_the_montage_needs_is_reported_missing(edited, head):
    raw, _ = edited
    broken = raw.copy()
    broken.info["bads"] = ["Fp1"]
    with pytest.raises(MontageError, match="Fp1.*marked bad"):
        lm.screen(broken, tasks=["tuab"], head=head)


def test_screen_an_array_with_names(head):
    rng = np.random.default_rng(0)
    names = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T7", "T8", "P7", "P8",
             "Fz", "Cz", "Pz", "A1", "A2"]
    data = rng.standard_normal((len(names), 256 * 20)) * 20.0
    result = lm.screen(data, ch_names=names, sfreq=256.0, tasks=["qc", "tuab"], head=head)
    assert len(result["tuab"].windows) == 4 and len(result["qc"].windows) == 4
    assert result["tuab"].report["input"]["sha256"] == result["qc"].report["input"]["sha256"]
    with pytest.raises(TypeError, match="ch_names and sfreq"):
        lm.screen(data)


def test_encode_equals_model_encode_on_the_same_windows(tmp_path):
    import torch

    from lumamba_cli.model import load_model
    from lumamba_cli.montage import load_registry
    from lumamba_cli.preprocess import collect, prepare
    from lumamba_cli.recipes import load_recipe
    from lumamba_cli.recording import open_recording

    source = Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"
    encoder = save_formula_encoder(tmp_path / "enc.safetensors")
    pooled = lm.encode(source, encoder=encoder, device="cpu")
    patches = lm.encode(source, encoder=encoder, pool=None, device="cpu")
    assert pooled.values.shape == (36, 384) and patches.values.shape == (36, 32, 384)
    # the oracle: the windows prepared by hand and the model's own encode()
    with open_recording(source) as rec:
        block = collect(prepare(rec, load_recipe("embed"), load_registry()).windows())
    assert block.channel_names == pooled.channel_names and len(block.channel_names) >= 19
    model = load_model(encoder).eval()
    x = torch.from_numpy(block.zscored()[:4])
    pos = torch.from_numpy(np.broadcast_to(block.positions, (4,) + block.positions.shape).copy())
    with torch.no_grad():
        reference = model.encode(x, pos).numpy()
    np.testing.assert_allclose(patches.values[:4], reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(pooled.values[:4], reference.mean(axis=1), rtol=0, atol=1e-5)
    # deterministic, and a file round trip keeps everything
    again = lm.encode(source, encoder=encoder, device="cpu")
    np.testing.assert_array_equal(again.values, pooled.values)
    saved = pooled.save(tmp_path / "e.safetensors")
    loaded = lm.Embeddings.load(saved)
    np.testing.assert_array_equal(loaded.values, pooled.values)
    assert loaded.provenance["encoder"]["sha256"] == pooled.provenance["encoder"]["sha256"]
    assert loaded.channel_names == pooled.channel_names and loaded.provenance["recipe"]["id"] == "embed"


def test_the_package_imports_without_torch_until_asked():
    import subprocess
    import sys

    code = "import sys, lumamba_cli, lumamba_cli.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
