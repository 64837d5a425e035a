"""Encoder registry, verification, import and (simulated) download, on a checkpoint in the official layout.

No network: the official files cannot be fetched here, so a formula-weight checkpoint with the exact official
key set, dtype and prefix stands in for them (it is byte-for-byte the official size), and a temporary registry
pins its sha256.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from lumamba_cli import encoders as W
from lumamba_cli.fileio import sha256_file
from lumamba_cli.resources import cache_dir, imported_encoders_dir
from lumamba_cli.errors import ExitCode, NetworkError, WeightsError
from lumamba_cli.model.formula import formula_state_dict, save_formula_encoder
from cli_helpers import run_cli as _run

OFFICIAL_SIZE = 16_793_276
PINNED_REVISION = "246912980fc4da535a7a16232cc999b2e80efeb8"


def _save_checkpoint(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    # np.ascontiguousarray would turn the 0-d cross_attn.temparature into shape (1,)
    save_file({"model." + k: np.array(v, dtype=np.float32, order="C") for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture(scope="session")
def key_shapes() -> dict[str, tuple[int, ...]]:
    from lumamba_cli.model.checkpoint import official_key_shapes

    return official_key_shapes()


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory) -> Path:
    """Formula weights in the exact layout of the PulpBio/LuMamba files (read-only: copy before changing)."""
    return save_formula_encoder(tmp_path_factory.mktemp("ckpt") / "LuMamba_formula.safetensors")


@pytest.fixture
def checkpoint(tmp_path, official_checkpoint) -> Path:
    return Path(shutil.copy(official_checkpoint, tmp_path / official_checkpoint.name))


@pytest.fixture
def registry(tmp_path, official_checkpoint, monkeypatch) -> Path:
    """A registry like the bundled one whose default entry pins the formula checkpoint instead."""
    data = yaml.safe_load(W.registry_path().read_text())
    entry = next(e for e in data["encoders"] if e["default"])
    entry["name"] = "formula-test"
    entry["filename"] = "LuMamba_formula_test.safetensors"
    entry["size"] = official_checkpoint.stat().st_size
    entry["sha256"] = sha256_file(official_checkpoint)
    path = tmp_path / "encoders.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv(W.ENCODERS_FILE_ENV, str(path))
    return path


# ---------------------------------------------------------------------------------------------------- registry


def test_bundled_registry_pins_the_four_official_files():
    entries = {e.name: e for e in W.list_encoders()}
    assert set(entries) == {"lejepa-recon-128", "lejepa-recon-300", "lejepa-only-128", "recon-only"}
    assert W.get_encoder().name == "lejepa-recon-128"
    expected_sha = {
        "LuMamba_LeJEPAOnly_128slices.safetensors": "6256aaa8bbaa61f352304e0ae6bfc9e696956006aec9270e5a5e1286f48f3027",
        "LuMamba_LeJEPA_reconstruction_128slices.safetensors": "72b97c9b9cb1ff67b8fafbdd183d5f4016285fd4cd97bdb467defd8d404b89fa",
        "LuMamba_LeJEPA_reconstruction_300slices.safetensors": "352451401ca7dd31dbdef853be2aff993fdb68d4e365fe116a9512ad0fd04c44",
        "LuMamba_ReconstructionOnly.safetensors": "f4db415bb7bfecb9625f25ad156372d3f1ceaf6a1fbbb97d0fe5bdab14cfd4d6",
    }
    for entry in entries.values():
        assert entry.repo == "PulpBio/LuMamba"
        assert entry.revision == PINNED_REVISION
        assert entry.size == OFFICIAL_SIZE
        assert expected_sha[entry.filename] == entry.sha256
        assert entry.licence == "CC-BY-ND-4.0"
    assert entries["recon-only"].card_results == ["TUAR", "TUSL"]
    for name in ("lejepa-recon-128", "lejepa-recon-300"):
        assert set(entries[name].card_results) == {"TUAB", "APAVA", "TDBrain", "Mumtaz2016"}
        assert entries[name].card_variant_known is False
    assert W.get_encoder("LuMamba_ReconstructionOnly.safetensors").name == "recon-only"
    with pytest.raises(WeightsError, match="unknown encoder 'nope'"):
        W.get_encoder("nope")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["encoders"][1].update(name=d["encoders"][0]["name"]), "duplicate encoder name"),
        (lambda d: d["encoders"][0].update(revision="main"), "40-hex"),
        (lambda d: d["encoders"][1].update(default=True), "exactly one encoder"),
        (lambda d: d["encoders"][0].update(sha256="abc"), "sha256"),
    ],
)
def test_invalid_registry_is_refused(tmp_path, change, message):
    data = yaml.safe_load(W.registry_path().read_text())
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(WeightsError, match=message) as caught:
        W.load_registry(path)
    assert str(path) in str(caught.value)


# ------------------------------------------------------------------------------------------------- verification


def test_formula_checkpoint_has_the_official_size(official_checkpoint, key_shapes):
    assert len(key_shapes) == 142
    assert official_checkpoint.stat().st_size == OFFICIAL_SIZE


def test_verify_matches_registry_entry(checkpoint, registry):
    result = W.verify(checkpoint)
    assert result.ok, result.problems
    assert result.entry is not None and result.entry.name == "formula-test"
    assert result.size == OFFICIAL_SIZE
    import hashlib

    assert result.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert result.layout_error is None


def test_verify_refuses_one_flipped_byte(checkpoint, registry):
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0x01
    checkpoint.write_bytes(bytes(data))
    result = W.verify(checkpoint)
    assert not result.ok
    assert result.entry is None
    assert any("matches no official LuMamba file" in p for p in result.problems)
    against = W.verify(checkpoint, expected="formula-test")
    assert any("differs from the pinned" in p for p in against.problems)


def test_verify_command_exit_codes(checkpoint, registry, tmp_path, capsys):
    code, out, _ = _run(["weights", "verify", str(checkpoint), "--json"], capsys)
    assert code == 0 and json.loads(out)["results"][0]["ok"] is True
    data = bytearray(checkpoint.read_bytes())
    data[-5] ^= 0x01
    checkpoint.write_bytes(bytes(data))
    code, out, err = _run(["weights", "verify", str(checkpoint), "--json"], capsys)
    assert code == ExitCode.WEIGHTS and "failed verification" in err
    assert json.loads(out)["results"][0]["matches"] is None
    code, _, err = _run(["weights", "verify", str(tmp_path / "absent.safetensors")], capsys)
    assert code == ExitCode.WEIGHTS and "no such encoder file" in err
    code, _, err = _run(["weights", "verify"], capsys)  # nothing local yet
    assert code == ExitCode.WEIGHTS and "lumamba weights pull" in err


def test_verify_on_demand_ignores_the_sha_cache(checkpoint, registry):
    import subprocess
    import sys

    def cached_in_a_new_process() -> str:
        code = f"from lumamba_cli.fileio import sha256_file; print(sha256_file({str(checkpoint)!r}, cached=True))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()

    true_sha = sha256_file(checkpoint, cached=True)
    cache_file = cache_dir() / "sha256.json"
    cache = json.loads(cache_file.read_text())
    key = str(checkpoint.resolve())
    assert cache[key][2] == true_sha
    cache[key][2] = "0" * 64  # same size and mtime, different hash: only a cache read can return this
    cache_file.write_text(json.dumps(cache))
    assert cached_in_a_new_process() == "0" * 64
    assert W.verify(checkpoint).sha256 == true_sha
    assert cached_in_a_new_process() == true_sha  # verify refreshed the cache


@pytest.mark.parametrize("damage", ["missing", "extra", "misshaped"])
def test_layout_problems_name_the_key(tmp_path, key_shapes, damage):
    tensors = formula_state_dict(key_shapes)
    victim = "decoder_head.norm.weight"
    if damage == "missing":
        del tensors[victim]
        named = victim
    elif damage == "extra":
        tensors["classifier.fc1.weight"] = np.zeros((2, 384))
        named = "classifier.fc1.weight"
    else:
        tensors[victim] = np.zeros((65,))
        named = victim
    path = _save_checkpoint(tmp_path / "damaged.safetensors", tensors)
    result = W.verify(path)
    assert not result.ok
    assert result.layout_error
    assert named in result.layout_error


# ------------------------------------------------------------------------------------------------------ import


def test_import_then_path_finds_it(checkpoint, registry, capsys):
    code, _, err = _run(["weights", "path", "formula-test"], capsys)
    assert code == ExitCode.WEIGHTS
    assert "lumamba weights pull formula-test" in err and "lumamba weights import FILE" in err

    code, out, _ = _run(["weights", "import", str(checkpoint), "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["encoder"] == "formula-test" and report["already_present"] is False
    stored = Path(report["path"])
    assert stored == imported_encoders_dir() / "LuMamba_formula_test.safetensors"
    assert stored.read_bytes() == checkpoint.read_bytes()

    code, out, _ = _run(["weights", "path", "formula-test"], capsys)
    assert code == 0
    assert Path(out.strip()) == stored
    assert W.encoder_path() == stored  # formula-test is this registry's default
    sha = sha256_file(stored)
    assert W.encoder_path("recon-only", sha256=sha) == stored  # the content decides, not the name

    code, out, _ = _run(["weights", "import", str(checkpoint), "--json"], capsys)
    assert code == 0 and json.loads(out)["already_present"] is True

    code, out, _ = _run(["weights", "verify", "formula-test", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["results"][0]["matches"] == "formula-test"


def test_atomic_copy_hashes_what_it_wrote_and_leaves_nothing_on_interrupt(checkpoint, tmp_path, monkeypatch):
    import hashlib
    import os

    from lumamba_cli.fileio import atomic_copy

    dest = tmp_path / "store" / "copy.safetensors"
    assert atomic_copy(checkpoint, dest) == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert dest.read_bytes() == checkpoint.read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt  # Ctrl-C between the copy and the rename

    replacement = tmp_path / "other.bin"
    replacement.write_bytes(b"not the encoder")
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_copy(replacement, dest)
    assert dest.read_bytes() == checkpoint.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]


def test_import_refuses_unregistered_file(checkpoint, capsys):
    # The bundled registry does not know the formula checkpoint's hash.
    code, _, err = _run(["weights", "import", str(checkpoint)], capsys)
    assert code == ExitCode.WEIGHTS
    assert "matches no official LuMamba encoder" in err and checkpoint.name in err
    assert not (imported_encoders_dir() / checkpoint.name).exists()


def test_import_unregistered_still_checks_the_layout(checkpoint, tmp_path, key_shapes, capsys):
    code, out, _ = _run(["weights", "import", str(checkpoint), "--allow-unregistered", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["encoder"] is None
    stored = imported_encoders_dir() / checkpoint.name
    assert stored.is_file()
    sha = sha256_file(checkpoint)
    # How a head trained on this file finds it again: by the sha256 in its metadata.
    assert W.encoder_path(checkpoint.name, sha256=sha) == stored
    with pytest.raises(WeightsError, match="not an official release"):
        W.encoder_path(checkpoint.name, sha256="1" * 64)

    tensors = formula_state_dict(key_shapes)
    del tensors["mask_token"]
    damaged = _save_checkpoint(tmp_path / "damaged.safetensors", tensors)
    code, _, err = _run(["weights", "import", str(damaged), "--allow-unregistered"], capsys)
    assert code == ExitCode.WEIGHTS
    assert "mask_token" in err


def test_corrupt_local_copy_is_named_not_used(checkpoint, registry):
    W.import_encoder(checkpoint)
    stored = imported_encoders_dir() / "LuMamba_formula_test.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match the pinned") as caught:
        W.encoder_path("formula-test")
    assert str(stored) in str(caught.value)


# -------------------------------------------------------------------------------------------------------- pull


def test_pull_offline_with_empty_cache_fails_plainly(capsys):
    code, out, err = _run(["weights", "pull", "recon-only"], capsys)
    assert code == ExitCode.NETWORK
    assert "HF_HUB_OFFLINE" in err and "LuMamba_ReconstructionOnly.safetensors" in err
    assert "Traceback" not in err and out == ""


def _fake_hub(monkeypatch, source: Path, calls: list):
    """Stand-in for hf_hub_download that lays the file out like the real cache (snapshot link → blob)."""
    import huggingface_hub

    def fake_download(repo_id, filename, *, revision=None, cache_dir=None, force_download=False, **_):
        calls.append((repo_id, filename, revision))
        repo_dir = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        link = repo_dir / "snapshots" / revision / filename
        if link.exists() and not force_download:
            return str(link)  # like the real hub: a cached file of a pinned commit is returned unchecked
        blob = repo_dir / "blobs" / f"blob-{len(calls)}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, blob)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(blob)
        return str(link)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_pull_downloads_verifies_and_reuses_the_cache(checkpoint, registry, monkeypatch, capsys):
    calls: list = []
    _fake_hub(monkeypatch, checkpoint, calls)
    path = W.pull("formula-test")
    assert calls == [("PulpBio/LuMamba", "LuMamba_formula_test.safetensors", PINNED_REVISION)]
    assert W.hub_cache_dir() in path.parents
    assert path.read_bytes() == checkpoint.read_bytes()
    assert W.encoder_path("formula-test") == path

    assert W.pull("formula-test") == path and len(calls) == 1  # pinned commit: no second download
    code, out, _ = _run(["weights", "pull", "formula-test", "--force", "--json"], capsys)
    assert code == 0 and len(calls) == 2
    assert json.loads(out)["encoders"][0]["verified"] is True


def test_pull_refuses_and_deletes_a_corrupted_download(checkpoint, registry, monkeypatch, tmp_path, capsys):
    corrupted = tmp_path / "corrupted.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[1000] ^= 0x10
    corrupted.write_bytes(bytes(data))
    calls: list = []
    _fake_hub(monkeypatch, corrupted, calls)
    code, _, err = _run(["weights", "pull", "formula-test"], capsys)
    assert code == ExitCode.WEIGHTS
    assert "refusing to use it" in err and "deleted" in err
    snapshot = W.hub_cache_dir() / "models--PulpBio--LuMamba" / "snapshots" / PINNED_REVISION
    assert not (snapshot / "LuMamba_formula_test.safetensors").exists()
    assert not list((W.hub_cache_dir() / "models--PulpBio--LuMamba" / "blobs").iterdir())
    with pytest.raises(WeightsError):
        W.encoder_path("formula-test")

    # A copy damaged after a good download is replaced by the next pull, not served again.
    _fake_hub(monkeypatch, checkpoint, calls)
    good = W.pull("formula-test")
    good.resolve().write_bytes(corrupted.read_bytes())
    assert W.pull("formula-test").read_bytes() == checkpoint.read_bytes()


def test_hub_errors_become_one_network_line(registry, monkeypatch):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known\nsecond line of noise")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(NetworkError) as caught:
        W.pull("formula-test")
    line = caught.value.line()
    assert "\n" not in line and "ConnectionError: Name or service not known" in line


def test_weights_list_json_reports_local_state(checkpoint, registry, capsys):
    W.import_encoder(checkpoint)
    code, out, _ = _run(["weights", "list", "--json"], capsys)
    assert code == 0
    listing = {e["name"]: e for e in json.loads(out)["encoders"]}
    assert listing["formula-test"]["local"] == "verified"
    assert listing["recon-only"]["local"] == "absent"
    assert "not a medical device" in json.loads(out)["disclaimer"]
