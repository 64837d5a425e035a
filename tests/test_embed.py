"""`lumamba embed` on every real recording in ../shared/data: what the registry can place is embedded, equal to
``model.encode`` on the same windows; what it cannot place fails alone, with exit code 4 in the manifest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from lumamba_cli.embedding import Embeddings
from lumamba_cli.model import load_model
from lumamba_cli.model.formula import save_formula_encoder
from lumamba_cli.montage import load_registry
from lumamba_cli.preprocess import prepare
from lumamba_cli.recipes import load_recipe
from lumamba_cli.recording import open_recording


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return save_formula_encoder(tmp_path_factory.mktemp("enc") / "LuMamba_formula.safetensors")


def test_embed_every_shared_recording(shared_data, encoder, tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(shared_data, folder, ignore=shutil.ignore_patterns("*.md", "SHA256SUMS", "*.txt"))
    out = tmp_path / "out"
    code, stdout, err = run_cli(["embed", folder, "--encoder", encoder, "--out", out, "--quiet", "--json"], capsys)
    summary = json.loads(stdout)
    assert code in (0, 6), err
    manifest = {json.loads(line)["path"]: json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert len(manifest) == len(list(folder.glob("*.*df"))) == summary["files"]
    model = load_model(encoder).eval()
    registry, recipe = load_registry(), load_recipe("embed")
    embedded = 0
    for path, entry in manifest.items():
        if entry["status"] == "failed":
            assert entry["error_code"] == 4, entry  # nothing the registry can place, or too slow for the filters
            continue
        embeddings = Embeddings.load(out / entry["outputs"][0])
        with open_recording(path) as rec:
            blocks = list(prepare(rec, recipe, registry).windows(on_skip=lambda _: None))
        if not blocks:
            assert len(embeddings) == 0 and any("shorter than one" in w for w in embeddings.provenance["warnings"])
            continue
        block = blocks[0]
        k = min(4, len(block))
        x = torch.from_numpy(block.zscored()[:k])
        pos = torch.from_numpy(np.broadcast_to(block.positions, (k,) + block.positions.shape).copy())
        with torch.no_grad():
            expected = model.encode(x, pos).mean(dim=1).numpy()
        np.testing.assert_allclose(embeddings.values[:k], expected, rtol=0, atol=1e-5, err_msg=path)
        assert embeddings.channel_names == block.channel_names
        assert sum(len(b) for b in blocks) == len(embeddings)
        embedded += 1
    # the 64-channel motor-imagery file and the 30-min clinical file give windows; the four 2-s epilepsy2bids
    # samples are placed but shorter than one window (their files say so); the rest name no electrode or are
    # sampled too slowly for the 75 Hz low-pass
    assert embedded == 2 and sum(e["status"] == "ok" for e in manifest.values()) == 6


@pytest.mark.slow
def test_embed_on_a_local_cluster_writes_the_local_bytes(shared_data, encoder, tmp_path, capsys):
    """The other archive-wide job on Dask: two worker processes, each with its own encoder, give the files one
    process gives (one model thread per process on both sides)."""
    pytest.importorskip("distributed")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("edf-parser_S001R01.edf", "epilepsy2bids_aaaaaaac_s001_t000_sample.edf",
                 "epilepsy2bids_PN00-5_sample.edf"):
        shutil.copyfile(shared_data / name, folder / name)
    runs = {}
    for way, extra in (("local", []), ("dask", ["--executor", "dask", "--jobs", "2"])):
        out = tmp_path / way
        code, stdout, err = run_cli(["--threads", "1", "embed", folder, "--encoder", encoder, "--out", out, "--quiet",
                                     "--json", *extra], capsys)
        assert code == 0, err
        assert json.loads(stdout)["ok"] == 3
        runs[way] = {p.name: p.read_bytes() for p in sorted(out.glob("*.safetensors"))}
    assert len(runs["local"]) == 3 and runs["dask"] == runs["local"]
