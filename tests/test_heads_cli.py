"""The local head store: import / list / show / remove through the CLI, and head resolution for a task."""

from __future__ import annotations

import json
import os
from pathlib import Path
import numpy as np
import pytest
from safetensors.numpy import save_file

from cli_helpers import run_cli as _run
from lumamba_cli import heads as W
from lumamba_cli.errors import ExitCode, WeightsError
from lumamba_cli.headfile import HEAD_METADATA_KEY, read_head_metadata
from lumamba_cli.recipes import load_recipe
from lumamba_cli.resources import heads_dir


@pytest.fixture
def recipe():
    return load_recipe("tuab")


def make_head(path: Path, recipe, *, created: str, seed: int = 0, task: str | None = None, **overrides) -> Path:
    """A small head file with complete ``lumamba_head`` metadata (the tensors only need to be distinct)."""
    labels = list(recipe.labels)
    meta = {
        "task": task or recipe.id,
        "recipe_id": recipe.id,
        "recipe_hash": recipe.hash,
        "labels": labels,
        "classification_type": "bc",
        "num_classes": len(labels),
        "head_option": "linear",
        "config": {"num_blocks": 2, "num_classes": len(labels), "classifier_option": "linear"},
        "encoder": {"name": "lejepa-recon-128", "sha256": "72b97c9b9cb1ff67b8fafbdd183d5f4016285fd4cd97bdb467defd8d404b89fa"},
        "contains_encoder": False,
        "tool_version": "0.1.0",
        "created": created,
        "training": {"epochs": 3, "seed": seed},
        "metrics": {"test": {"auroc": 0.81, "balanced_accuracy": 0.74}},
    }
    meta.update(overrides)
    rng = np.random.default_rng(seed)
    tensors = {
        "classifier.fc1.weight": rng.standard_normal((len(labels), 384)).astype(np.float32),
        "classifier.fc1.bias": np.zeros(len(labels), dtype=np.float32),
    }
    save_file(tensors, str(path), metadata={HEAD_METADATA_KEY: json.dumps(meta)})
    return path


def test_import_list_show_remove_round_trip(tmp_path, recipe, capsys):
    older = make_head(tmp_path / "older.safetensors", recipe, created="2026-01-01T00:00:00+00:00", seed=1)
    newer = make_head(tmp_path / "newer.safetensors", recipe, created="2026-02-01T00:00:00+00:00", seed=2)

    ids = []
    for head in (older, newer):
        code, out, _ = _run(["heads", "import", str(head), "--json"], capsys)
        assert code == 0
        record = json.loads(out)
        assert record["task"] == recipe.id and record["in_store"] is True
        stored = Path(record["path"])
        assert stored.parent == heads_dir() / recipe.id
        assert stored.read_bytes() == head.read_bytes()
        ids.append(record["id"])
    assert len(set(ids)) == 2

    code, out, _ = _run(["heads", "list", "--json"], capsys)
    assert code == 0
    listing = json.loads(out)
    assert [h["id"] for h in listing["heads"]] == [ids[1], ids[0]]  # newest first
    assert "not a medical device" in listing["disclaimer"]

    code, out, _ = _run(["heads", "show", ids[0], "--json"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert shown["metadata"]["training"]["seed"] == 1
    assert shown["metadata"]["metrics"]["test"]["auroc"] == pytest.approx(0.81)

    code, _, err = _run(["heads", "show", ids[1]], capsys)
    assert code == 0 and ids[1] in err and "lejepa-recon-128" in err

    code, out, _ = _run(["heads", "remove", ids[1], "--json"], capsys)
    assert code == 0 and json.loads(out)["removed"] == ids[1]
    code, out, _ = _run(["heads", "list", "--json"], capsys)
    assert [h["id"] for h in json.loads(out)["heads"]] == [ids[0]]

    code, _, err = _run(["heads", "remove", ids[1]], capsys)
    assert code == ExitCode.WEIGHTS and "no head" in err


def test_the_index_is_the_files(tmp_path, recipe):
    head = make_head(tmp_path / "h.safetensors", recipe, created="2026-01-01T00:00:00+00:00")
    record = W.import_head(head)
    assert [h.id for h in W.list_heads(recipe.id)] == [record.id]
    os.remove(record.path)  # deleted by hand: nothing else remembers it
    assert W.list_heads() == []


def test_reimport_is_idempotent_and_a_different_head_is_not_overwritten(tmp_path, recipe):
    head = make_head(tmp_path / "h.safetensors", recipe, created="2026-01-01T00:00:00+00:00")
    first = W.import_head(head)
    again = W.import_head(head)
    assert again.path == first.path and any("already in the store" in w for w in again.warnings)
    assert len(W.list_heads()) == 1


def test_resolve_without_heads_says_the_release_has_none(recipe):
    with pytest.raises(WeightsError) as caught:
        W.find_head(recipe)
    line = caught.value.line()
    assert "the public LuMamba release has pre-trained encoders only, no task heads" in line
    assert f"lumamba train --task {recipe.id}" in line and "lumamba heads import FILE" in line


def test_resolve_prefers_explicit_head_else_newest(tmp_path, recipe):
    old = W.import_head(make_head(tmp_path / "a.safetensors", recipe, created="2026-01-01T00:00:00+00:00", seed=1))
    new = W.import_head(make_head(tmp_path / "b.safetensors", recipe, created="2026-03-01T00:00:00+00:00", seed=2))
    assert W.find_head(recipe).path == new.path
    assert W.find_head(recipe, old.id).path == old.path
    for alias in recipe.aliases:  # `--task abnormal` means tuab
        assert W.find_head(load_recipe(alias)).path == new.path
    outside = make_head(tmp_path / "c.safetensors", recipe, created="2025-01-01T00:00:00+00:00", seed=3)
    assert W.find_head(recipe, outside).path == outside


def test_mismatched_recipe_is_refused(tmp_path, recipe):
    stale = make_head(tmp_path / "stale.safetensors", recipe, created="2026-01-01T00:00:00+00:00",
                      recipe_hash="ffffffffffffffff")
    meta = read_head_metadata(stale)
    with pytest.raises(WeightsError, match="installed recipe"):
        W.check_head_matches(meta, recipe, path=stale)
    with pytest.raises(WeightsError, match="installed recipe"):
        W.find_head(recipe, stale)

    other_task = load_recipe("mumtaz")
    with pytest.raises(WeightsError, match="not for 'mumtaz'"):
        W.check_head_matches(meta, other_task)
    with pytest.raises(WeightsError, match="not for 'mumtaz'"):
        W.find_head(other_task, stale)

    record = W.import_head(stale)  # importing is allowed (with a warning); using it is not
    assert any("refused for screening" in w for w in record.warnings)
    with pytest.raises(WeightsError, match="none matches the installed recipe"):
        W.find_head(recipe)


def test_labels_in_another_order_are_refused(tmp_path, recipe):
    """A head whose class 1 is called "normal" would name every abnormal probability wrongly."""
    reversed_labels = make_head(tmp_path / "rev.safetensors", recipe, created="2026-01-01T00:00:00+00:00",
                                labels=list(reversed(recipe.labels)))
    with pytest.raises(WeightsError, match="order matters"):
        W.find_head(recipe, reversed_labels)
    with pytest.raises(WeightsError, match="order matters"):
        W.import_head(reversed_labels)


def test_import_refuses_non_heads_and_unknown_tasks(tmp_path, recipe, capsys):
    plain = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(3, dtype=np.float32)}, str(plain))
    code, _, err = _run(["heads", "import", str(plain)], capsys)
    assert code == ExitCode.WEIGHTS and "no 'lumamba_head' metadata" in err and "plain.safetensors" in err

    code, _, err = _run(["heads", "import", str(tmp_path / "missing.safetensors")], capsys)
    assert code == ExitCode.WEIGHTS and "head file not found" in err

    notes = tmp_path / "notes.safetensors"
    notes.write_bytes(b"this is not a safetensors file")
    code, _, err = _run(["heads", "import", str(notes)], capsys)
    assert code == ExitCode.WEIGHTS and "not a safetensors head file" in err

    unknown = make_head(tmp_path / "unknown.safetensors", recipe, created="2026-01-01T00:00:00+00:00",
                        task="no-such-task", recipe_id="no-such-task")
    code, _, err = _run(["heads", "import", str(unknown)], capsys)
    assert code == ExitCode.WEIGHTS and "'no-such-task'" in err
    assert W.list_heads() == []


def test_heads_list_on_empty_store_explains(capsys):
    code, out, err = _run(["heads", "list"], capsys)
    assert code == 0 and out == ""
    assert "pre-trained encoders only, no task heads" in err
