"""Job arrays: --files-from, --shard K/N, per-shard manifests, `lumamba manifest merge`, summary.csv.

The oracle for coverage is the folder listing made here, not lumamba's walk: every recording copied in must appear
in exactly one shard, and each shard's reports must be byte-identical to those of one unsharded run.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pandas as pd
import pytest

from cli_helpers import run_cli
from lumamba_cli import DISCLAIMER

SMALL = ["epilepsy2bids_PN00-5_sample.edf", "epilepsy2bids_P_ID10_r5_sample.edf",
         "epilepsy2bids_aaaaaaac_s001_t000_sample.edf", "epilepsy2bids_chb01_01_sample.edf",
         "spkit_EEG16SecData.edf", "pyedflib_test_subsecond.edf"]


@pytest.fixture()
def folder(shared_data, tmp_path):
    data = tmp_path / "data"
    for index, name in enumerate(SMALL):
        target = data / f"site{index % 2}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / name, target)
    return data


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def reports(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.windows.csv"))}


def test_shards_cover_every_recording_once_and_merge_into_one_manifest(folder, tmp_path, capsys):
    listed = {str(p) for p in folder.rglob("*.edf")}
    whole = tmp_path / "whole"
    assert run_cli(["screen", folder, "--out", whole, "--quiet"], capsys)[0] == 0

    out = tmp_path / "sharded"
    seen: list[str] = []
    for k in (0, 1, 2):
        code, _, err = run_cli(["screen", folder, "--out", out, "--shard", f"{k}/3", "--quiet"], capsys)
        assert code == 0, err
        part = lines(out / f"manifest.{k}-of-3.jsonl")
        assert all(e["status"] == "ok" for e in part)
        seen += [e["path"] for e in part]
    assert sorted(seen) == sorted(listed)  # each exactly once
    assert not (out / "manifest.jsonl").exists()
    assert reports(out) == reports(whole)  # scheduling never changes a report

    code, stdout, _ = run_cli(["manifest", "merge", out, "--json"], capsys)
    merged = json.loads(stdout)
    assert code == 0 and merged["lines"] == len(listed) and merged["recordings"] == len(listed)
    assert sorted(merged["merged"]) == [f"manifest.{k}-of-3.jsonl" for k in (0, 1, 2)]
    assert sorted(p.name for p in out.glob("manifest*")) == ["manifest.jsonl"]
    assert sorted(e["path"] for e in lines(out / "manifest.jsonl")) == sorted(listed)

    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["path"]) == sorted(listed) and set(summary["task"]) == {"qc"}
    assert set(summary["status"]) == {"ok"} and summary["disclaimer"].iloc[0] == DISCLAIMER

    # Merging again changes nothing; a resumed run sees every shard's work as done.
    assert run_cli(["manifest", "merge", out, "--json"], capsys)[0] == 0
    assert len(lines(out / "manifest.jsonl")) == len(listed)
    code, stdout, _ = run_cli(["screen", folder, "--out", out, "--skip-existing", "--quiet", "--json"], capsys)
    assert code == 0 and json.loads(stdout)["skipped"] == len(listed)


def test_a_shard_with_nothing_to_do_succeeds(shared_data, tmp_path, capsys):
    recording = tmp_path / "one.edf"
    shutil.copyfile(shared_data / SMALL[0], recording)
    codes = [run_cli(["screen", recording, "--out", tmp_path / "out", "--shard", f"{k}/4"], capsys)
             for k in (0, 1, 2, 3)]
    assert [c for c, _, _ in codes] == [0, 0, 0, 0]
    assert sum("holds none of the recordings" in err for _, _, err in codes) == 3
    assert sum(len(lines(p)) for p in (tmp_path / "out").glob("manifest.*-of-4.jsonl")) == 1


@pytest.mark.parametrize("value", ["3/3", "-1/3", "3", "a/b", "0/0"])
def test_a_malformed_shard_is_a_usage_error(folder, value, capsys):
    code, _, err = run_cli(["screen", folder, "--shard", value], capsys)
    assert code == 2 and "--shard" in err


def test_files_from_lists_recordings_and_a_stale_line_fails_alone(folder, tmp_path, capsys):
    names = sorted(folder.rglob("*.edf"))[:3]
    listing = tmp_path / "list.txt"
    listing.write_text("# three recordings and one that was deleted\n\n"
                       + "".join(f"{p}\n" for p in names) + f"{folder / 'gone.edf'}\n")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["screen", "--files-from", listing, "--out", out, "--quiet", "--json"], capsys)
    assert code == 6 and json.loads(stdout)["ok"] == 3 and json.loads(stdout)["failed"] == 1
    entries = {e["path"]: e for e in lines(out / "manifest.jsonl")}
    assert entries[str(folder / "gone.edf")]["error_code"] == 3
    assert all(entries[str(p)]["status"] == "ok" for p in names)


def test_screen_needs_paths_or_a_list(capsys):
    code, _, err = run_cli(["screen"], capsys)
    assert code == 2 and "--files-from" in err


def test_merge_refuses_a_folder_without_manifests(tmp_path, capsys):
    code, _, err = run_cli(["manifest", "merge", tmp_path], capsys)
    assert code == 3 and "no manifest" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "pipe.edf"
    os.mkfifo(fifo)
    started = time.monotonic()
    code, _, err = run_cli(["screen", fifo, "--out", tmp_path / "out"], capsys)
    assert code == 3 and "not a regular file" in err
    assert time.monotonic() - started < 60  # a blocking open would hang here for ever, not for a minute
