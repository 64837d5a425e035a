"""`lumamba screen` end to end on real recordings: qc, model tasks with formula-weight heads, folders, resuming."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from lumamba_cli import DISCLAIMER
from cli_helpers import run_cli
from lumamba_cli.model.formula import save_formula_head
from lumamba_cli.report import json_schema

REPO = Path(__file__).resolve().parents[1]
EXCERPT = REPO / "examples" / "absence_excerpt.edf"


# ----------------------------------------------------------------------------------------------- helpers


def run(args: list[str]) -> int:
    return run_cli(args)[0]


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("heads")
    return {task: save_formula_head(task, folder / f"{task}_formula.safetensors") for task in ("tuab", "mumtaz")}


def load_outputs(out: Path, stem: str, task: str) -> tuple[dict, pd.DataFrame, str]:
    report = json.loads((out / f"{stem}.{task}.json").read_text())
    jsonschema.validate(report, json_schema("report"))
    text = (out / f"{stem}.{task}.windows.csv").read_text()
    frame = pd.read_csv(io.StringIO(text))
    return report, frame, frame["disclaimer"].iloc[0] if len(frame) else None


def seizure_intervals(path: Path) -> list[tuple[float, float]]:
    """(SZ START, SZ END) onsets read by MNE: an independent reader of the same annotations."""
    import mne

    annotations = mne.read_annotations(path)
    starts = [o for o, d in zip(annotations.onset, annotations.description) if d.strip() == "SZ START"]
    ends = [o for o, d in zip(annotations.onset, annotations.description) if d.strip() == "SZ END"]
    assert len(starts) == len(ends) == 3
    return list(zip(starts, ends))


def crop_records(src: Path, dst: Path, n_records: int) -> Path:
    """The first ``n_records`` data records of a real EDF+, bytes unchanged."""
    from edf_factory import records_of

    header, records = records_of(src)
    header.n_records = n_records
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(header.to_bytes() + b"".join(records[:n_records]))
    return dst


def write_non_eeg(path: Path) -> Path:
    """A valid EDF holding only ECG and respiration: nothing an EEG screen can use."""
    from synthetic_eeg import write_edf

    rate, seconds = 100, 30
    t = np.arange(rate * seconds) / rate
    signals = np.vstack([500 * np.sin(2 * np.pi * 1.2 * t), 200 * np.sin(2 * np.pi * 0.25 * t)])
    return write_edf(path, signals, rate, ["ECG", "Resp chest"], transducer="")


def manifest(out: Path) -> list[dict]:
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    for entry in entries:
        jsonschema.validate(entry, json_schema("manifest"))
    return entries


# ------------------------------------------------------------------------------------------------- tests


def test_qc_screen_of_the_absence_recording(absence_edf, tmp_path, capsys):
    import mne

    out = tmp_path / "reports"
    assert run(["screen", str(absence_edf), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["ok"] == 1 and summary["exit_code"] == 0
    assert captured.err.count("RESEARCH USE ONLY") == 1

    report, frame, first_line = load_outputs(out, absence_edf.stem, "qc")
    assert first_line == DISCLAIMER
    assert report["disclaimer"] == DISCLAIMER and report["task"] == "qc" and report["model"] is None

    raw = mne.io.read_raw_edf(absence_edf, preload=False, verbose="error")
    duration = raw.n_times / raw.info["sfreq"]
    n_windows = int(duration // 5)
    windows = report["windows"]
    assert len(windows) == len(frame) == n_windows == 362
    # Contiguous file: window k covers [5k, 5k + 5) s, and its clock time is the header start + 5k s.
    assert [w["start_s"] for w in windows] == [5.0 * k for k in range(n_windows)]
    assert frame["start_s"].tolist() == pytest.approx([5.0 * k for k in range(n_windows)])
    meas = raw.info["meas_date"].replace(tzinfo=None)
    assert frame["start_time"].iloc[100] == (meas + dt.timedelta(seconds=500)).isoformat()

    # Every window touching an annotated seizure is present, and so are the seizure-free ones.
    ictal = set()
    for start, end in seizure_intervals(absence_edf):
        ictal |= set(range(int(start // 5), int(end // 5) + 1))
        for k in range(int(start // 5), int(end // 5) + 1):
            assert windows[k]["start_s"] <= end and windows[k]["end_s"] >= start
    seizure_free = sorted(set(range(n_windows)) - ictal)
    assert ictal and len(seizure_free) == n_windows - len(ictal)
    assert all(windows[k]["start_s"] == 5.0 * k and windows[k]["end_s"] == 5.0 * k + 5 for k in seizure_free)
    # QC is flagged, not hidden: CSV and JSON agree window by window.
    assert frame["qc_pass"].tolist() == [w["qc_pass"] for w in windows]
    assert report["summary"]["windows_excluded"] == sum(not w["qc_pass"] for w in windows)
    assert report["input"]["header"]["start_time"] == meas.isoformat()

    # Resume: nothing is redone, the reports are untouched and the manifest says "skipped".
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "manifest.jsonl"}
    assert run(["screen", str(absence_edf), "--out", str(out), "--skip-existing", "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "manifest.jsonl"} == stamps
    assert [e["status"] for e in manifest(out)] == ["ok", "skipped"]


def test_tuab_scores_match_the_upstream_windows(fixtures_dir, heads, tmp_path):
    """Screen the TUAB parity input with a stored head; the scores of the windows that upstream's preprocessing
    produced (fixtures) must be those in the report, window for window."""
    from safetensors.numpy import load_file

    from lumamba_cli.inference import Scorer
    from lumamba_cli.model.checkpoint import load_head
    from lumamba_cli.preprocess import zscore
    from lumamba_cli.heads import import_head

    stored = import_head(heads["tuab"])  # into the test's private $LUMAMBA_HOME
    source = fixtures_dir / "preprocessing" / "s01_input_absence_first600s_tuh_labels.edf"
    out = tmp_path / "out"
    assert run(["screen", str(source), "--task", "tuab", "--out", str(out), "--quiet"]) == 0
    report, frame, _ = load_outputs(out, source.stem, "tuab")
    windows = report["windows"]
    assert len(windows) == 120
    assert [w["start_s"] for w in windows] == [5.0 * k for k in range(120)]
    assert report["model"]["head"]["id"] == stored.id
    assert report["model"]["precision"] == "float32" and report["model"]["device"] == "cpu"
    assert report["recipe"]["id"] == "tuab" and report["recipe"]["mode"] == "whole"
    assert report["recipe"]["deviation"] is None
    assert len(report["montage"]["used_channels"]) == 22

    fixture = load_file(str(fixtures_dir / "preprocessing" / "s01_tuab_from_absence.safetensors"))
    model, _ = load_head(heads["tuab"])
    scorer = Scorer(model, classification_type="bc", labels=["normal", "abnormal"], device="cpu")
    expected = scorer.score(zscore(fixture["windows"].astype(np.float32)), fixture["positions"])
    for row, index in enumerate(fixture["window_index"].tolist()):
        got = windows[index]["probabilities"]
        assert got["abnormal"] == pytest.approx(expected.probabilities[row]["abnormal"], abs=2e-4)
        assert got["normal"] + got["abnormal"] == pytest.approx(1.0, abs=2e-6)

    # The summary is what the window table says.
    p = frame["p_abnormal"].to_numpy()
    positive = report["summary"]["positive"]
    used = ~frame["excluded"].to_numpy()
    assert positive["mean_probability"] == pytest.approx(p[used].mean(), abs=1e-5)
    assert positive["fraction_above_threshold"] == pytest.approx((p[used] >= 0.5).mean(), abs=1e-6)


def test_mumtaz_with_an_explicit_head_on_the_seizure_excerpt(heads, tmp_path):
    # The bundled excerpt of the absence recording holds all three annotated seizures in 180 s.
    out = tmp_path / "out"
    assert run(["screen", str(EXCERPT), "--task", "mumtaz", "--head", str(heads["mumtaz"]),
                    "--out", str(out), "--quiet", "--threshold", "0.7", "--batch-size", "10"]) == 0
    report, frame, first_line = load_outputs(out, EXCERPT.stem, "mumtaz")
    assert first_line == DISCLAIMER
    windows = report["windows"]
    assert len(windows) == 36 and [w["start_s"] for w in windows] == [5.0 * k for k in range(36)]
    for start, end in seizure_intervals(EXCERPT):
        for k in range(int(start // 5), int(end // 5) + 1):
            assert windows[k]["probabilities"] is not None and windows[k]["label"] in ("healthy", "mdd")
    probs = frame[["p_healthy", "p_mdd"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=2e-6)
    assert (frame["predicted"] == np.where(probs[:, 1] > probs[:, 0], "mdd", "healthy")).all()
    assert report["summary"]["threshold"] == 0.7
    used = ~frame["excluded"].to_numpy()
    assert report["summary"]["positive"]["fraction_above_threshold"] == pytest.approx(
        (probs[used, 1] >= 0.7).mean(), abs=1e-6)
    assert {row["raw"] for row in report["montage"]["rows"] if row["used"]} >= {"EEG T3", "EEG Fp1", "EEG Pz"}
    assert report["model"]["head"]["file"] == str(heads["mumtaz"])


def test_no_head_is_a_weights_error_naming_the_way_out(tmp_path, capsys):
    code = run(["screen", str(EXCERPT), "--task", "tuab", "--out", str(tmp_path)])
    assert code == 5
    err = capsys.readouterr().err
    assert "encoders only" in err and "lumamba train" in err and "heads import" in err
    assert not (tmp_path / "manifest.jsonl").exists()


def test_a_head_for_another_task_is_refused(heads, tmp_path, capsys):
    code = run(["screen", str(EXCERPT), "--task", "mumtaz", "--head", str(heads["tuab"]),
                    "--out", str(tmp_path)])
    assert code == 5
    assert "tuab" in capsys.readouterr().err


def test_single_bad_file_exits_with_its_own_code(tmp_path, capsys):
    from edf_factory import truncate

    bad = truncate(EXCERPT, tmp_path / "cut.edf", 5000)
    assert run(["screen", str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 3
    assert "cut.edf" in capsys.readouterr().err
    assert [e["status"] for e in manifest(tmp_path / "o")] == ["failed"]


def test_folder_with_bad_files_isolates_failures(tmp_path, capsys):
    from edf_factory import truncate

    folder = tmp_path / "study"
    crop_records(EXCERPT, folder / "good_a.edf", 40)
    crop_records(EXCERPT, folder / "nested" / "good_b.EDF", 25)
    truncate(EXCERPT, folder / "truncated.edf", 7000)
    write_non_eeg(folder / "ecg_only.edf")
    (folder / "garbage.bdf").write_bytes(os.urandom(4096))
    (folder / "notes.txt").write_text("not a recording")

    code = run(["screen", str(folder), "--jobs", "2", "--quiet", "--json"])
    assert code == 6
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] == 2 and summary["failed"] == 3
    out = folder / "lumamba"
    entries = {Path(e["path"]).name: e for e in manifest(out)}
    assert set(entries) == {"good_a.edf", "good_b.EDF", "truncated.edf", "ecg_only.edf", "garbage.bdf"}
    assert entries["good_a.edf"]["status"] == entries["good_b.EDF"]["status"] == "ok"
    assert "truncat" in entries["truncated.edf"]["error"].lower()
    assert "EEG" in entries["ecg_only.edf"]["error"]
    assert entries["garbage.bdf"]["status"] == "failed" and entries["garbage.bdf"]["error"]
    assert all(e["error"] and "garbage" not in e["error"] or n == "garbage.bdf"
               for n, e in entries.items() if e["status"] == "failed")
    report, _, _ = load_outputs(out, "good_a", "qc")
    assert len(report["windows"]) == 8
    report, _, _ = load_outputs(out / "nested", "good_b", "qc")
    assert len(report["windows"]) == 5
    assert not (out / "truncated.qc.json").exists()


_CRASHING_RUN = textwrap.dedent("""
    import os, sys
    real = os.replace
    calls = {"n": 0}
    def crashing(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == int(os.environ["CRASH_AT_WRITE"]):
            # Die the hard way mid-write: the temporary file is written, nothing is renamed.
            os._exit(9)
        return real(src, dst, *args, **kwargs)
    os.replace = crashing
    from lumamba_cli.cli import main
    main(sys.argv[1:])
""")


def test_crash_mid_folder_leaves_no_partial_report_and_resume_finishes(tmp_path):
    folder = tmp_path / "d"
    for name, records in (("a", 20), ("b", 25), ("c", 30)):
        crop_records(EXCERPT, folder / f"{name}.edf", records)
    out = tmp_path / "out"
    env = {**os.environ, "CRASH_AT_WRITE": "4"}  # a.csv, a.json, b.csv, then dies writing b.json
    crashed = subprocess.run([sys.executable, "-c", _CRASHING_RUN, "screen", str(folder), "--out", str(out),
                              "--quiet"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert crashed.returncode == 9, crashed.stderr
    assert [(Path(e["path"]).name, e["status"]) for e in manifest(out)] == [("a.edf", "ok")]
    assert not (out / "b.qc.json").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("a.*")}

    resumed = subprocess.run([sys.executable, "-m", "lumamba_cli", "screen", str(folder), "--out", str(out),
                              "--skip-existing", "--quiet", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["skipped"] == 1
    statuses = [(Path(e["path"]).name, e["status"]) for e in manifest(out)]
    assert statuses == [("a.edf", "ok"), ("a.edf", "skipped"), ("b.edf", "ok"), ("c.edf", "ok")]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("a.*")} == finished
    assert not [p for p in out.iterdir() if "tmp" in p.name]
    for stem, seconds in (("a", 20), ("b", 25), ("c", 30)):
        report, frame, _ = load_outputs(out, stem, "qc")
        assert len(report["windows"]) == len(frame) == seconds // 5


def test_chunked_mode_states_its_deviation_and_stays_close(heads, tmp_path):
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    # --task qc next to a model task also writes the qc report; --head alone takes the head's own task.
    assert run(["screen", str(EXCERPT), "--task", "qc", "--task", "tuab", "--head", str(heads["tuab"]),
                    "--mode", "whole", "--out", str(whole), "--quiet"]) == 0
    assert run(["screen", str(EXCERPT), "--head", str(heads["tuab"]), "--mode", "chunked",
                    "--out", str(chunked), "--quiet"]) == 0
    assert (whole / f"{EXCERPT.stem}.qc.json").exists() and not (chunked / f"{EXCERPT.stem}.qc.json").exists()
    a, _, _ = load_outputs(whole, EXCERPT.stem, "tuab")
    b, _, _ = load_outputs(chunked, EXCERPT.stem, "tuab")
    assert a["recipe"]["mode"] == "whole" and a["recipe"]["deviation"] is None
    assert b["recipe"]["mode"] == "chunked" and "chunked" in b["recipe"]["deviation"]
    assert [w["start_s"] for w in a["windows"]] == [w["start_s"] for w in b["windows"]] == [5.0 * k for k in range(36)]
    diff = max(abs(x["probabilities"]["abnormal"] - y["probabilities"]["abnormal"])
               for x, y in zip(a["windows"], b["windows"]))
    assert diff < 1e-3


def test_discontinuous_recording_keeps_true_times_and_never_spans_a_gap(tmp_path):
    from edf_factory import make_discontinuous

    contiguous = crop_records(EXCERPT, tmp_path / "c.edf", 60)
    # 17.5 s gap before record 22 (stored second 22) and 100 s before record 41.
    gapped, _ = make_discontinuous(contiguous, tmp_path / "gaps.edf", {22: 17.5, 41: 100.0})
    out = tmp_path / "out"
    assert run(["screen", str(gapped), "--out", str(out), "--quiet"]) == 0
    report, frame, _ = load_outputs(out, "gaps", "qc")
    segments = report["input"]["header"]["segments"]
    assert [s["onset_s"] for s in segments] == pytest.approx([0.0, 39.5, 158.5])
    expected = []
    for seg in segments:  # 22 s, 19 s and 19 s of data → 4, 3 and 3 whole windows
        expected += [seg["onset_s"] + 5.0 * k for k in range(int(seg["duration_s"] // 5))]
    assert [w["start_s"] for w in report["windows"]] == pytest.approx(expected)
    assert [w["segment"] for w in report["windows"]] == [0] * 4 + [1] * 3 + [2] * 3


def test_probability_mapping_per_classification_type():
    import torch

    from lumamba_cli.errors import WeightsError
    from lumamba_cli.inference import _predicted, output_names, probabilities_from_logits

    logits = torch.tensor([[2.0, 0.0], [-1.0, 1.0]])
    bc = probabilities_from_logits(logits, "bc").numpy()
    assert np.allclose(bc.sum(axis=1), 1.0) and bc[0, 0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    mc = probabilities_from_logits(torch.zeros(1, 22), "mc").numpy()
    assert mc.shape == (1, 22) and np.allclose(mc, 0.5)  # independent sigmoids, not a softmax
    flat = torch.arange(2 * 132, dtype=torch.float32).reshape(2, 132) / 100
    viewed = probabilities_from_logits(flat, "mmc")
    assert viewed.shape == (2, 22, 6)
    assert torch.equal(viewed, probabilities_from_logits(flat.reshape(2, 22, 6), "mmc"))
    names = output_names("mmc", ["none", "chew", "elec", "eyem", "musc", "shiv"], [f"c{i}" for i in range(22)], 132)
    assert names[:2] == ["c0:none", "c0:chew"] and len(names) == 132
    predicted = _predicted("mmc", viewed.numpy(), names)[0]
    assert len(predicted) == 22 and predicted[0] == "c0:shiv"  # argmax of increasing logits, one per channel
    assert _predicted("mc", np.array([[0.7, 0.2, 0.5]]), ["a", "b", "c"]) == [["a", "c"]]
    assert _predicted("bc", bc, ["normal", "abnormal"]) == [["normal"], ["abnormal"]]
    with pytest.raises(WeightsError):
        probabilities_from_logits(logits, "regression")


def test_skip_existing_notices_a_changed_threshold_or_preprocessing(heads, tmp_path):
    recording = crop_records(EXCERPT, tmp_path / "in" / "short.edf", 20)
    out = tmp_path / "out"
    base = ["screen", str(recording), "--task", "tuab", "--head", str(heads["tuab"]), "--out", str(out), "--quiet",
            "--skip-existing"]

    def statuses() -> list[str]:
        return [e["status"] for e in manifest(out)]

    assert run(base) == 0
    assert run(base) == 0
    assert statuses() == ["ok", "skipped"]
    assert run(base + ["--threshold", "0.999"]) == 0  # same input and head, different summary: redone
    report, _, _ = load_outputs(out, "short", "tuab")
    assert report["summary"]["threshold"] == 0.999
    assert run(base + ["--threshold", "0.999", "--mode", "chunked"]) == 0
    assert run(base + ["--threshold", "0.999", "--mode", "chunked"]) == 0
    assert statuses() == ["ok", "skipped", "ok", "ok", "skipped"]
    assert load_outputs(out, "short", "tuab")[0]["recipe"]["mode"] == "chunked"
    assert manifest(out)[-2]["params"]["tuab"]["head_sha256"] == report["model"]["head"]["sha256"]


def test_a_segment_too_short_for_a_window_is_stated_in_the_reports(heads, tmp_path):
    from edf_factory import make_discontinuous

    contiguous = crop_records(EXCERPT, tmp_path / "c.edf", 40)
    # Segments of 20 s, 3 s (too short for a 5-s window) and 17 s.
    gapped, _ = make_discontinuous(contiguous, tmp_path / "short_gap.edf", {20: 10.0, 23: 10.0})
    out = tmp_path / "out"
    assert run(["screen", str(gapped), "--task", "tuab", "--task", "qc", "--head", str(heads["tuab"]),
                    "--out", str(out), "--quiet"]) == 0
    for task in ("tuab", "qc"):
        report, frame, _ = load_outputs(out, "short_gap", task)
        assert [s["duration_s"] for s in report["input"]["header"]["segments"]] == pytest.approx([20.0, 3.0, 17.0])
        assert sorted(set(frame["start_s"])) == pytest.approx([0, 5, 10, 15, 43, 48, 53])  # none from segment 1
        stated = [w for w in report["warnings"] if "segment 1" in w and "no window" in w]
        assert len(stated) == 1, report["warnings"]


def test_terminal_summary_line_gives_its_denominators():
    from lumamba_cli.report import WindowRow, summarise
    from lumamba_cli.screening import TaskReport, summary_line

    rows = [WindowRow(k, 5.0 * k, 5.0 * k + 5, probabilities={"normal": 1 - p, "abnormal": p}, predicted=["x"],
                      excluded=k == 3, qc_pass=k != 3, excluded_reason="qc failed" if k == 3 else None)
            for k, p in enumerate([0.9, 0.8, 0.1, 0.99])]
    summary = summarise(rows, ["normal", "abnormal"], threshold=0.5, positive_label="abnormal")
    line = summary_line(TaskReport("tuab", rows, ["normal", "abnormal"], None, {"summary": summary}))
    assert line == "tuab: 3 of 4 windows used; p(abnormal) mean 0.60, ≥ 0.5 in 67% of them, longest run 10 s"


def test_clock_times_carry_the_subsecond_start_of_the_first_record(shared_data, tmp_path):
    from edf_factory import read_raw_header, records_of

    path = shared_data / "pyedflib_test_subsecond.edf"
    if not path.exists():
        pytest.skip(f"{path.name} is absent")
    header, records = records_of(path)
    signal = header.annotation_signal()
    offset = header.signal_offsets()[signal]
    tal = records[0][offset:offset + 20].split(b"\x14")[0].decode("ascii")  # "+0.3945312": the start offset
    fixed = read_raw_header(path).fixed
    day, month, year = (int(x) for x in fixed[168:176].decode("ascii").split("."))
    hour, minute, second = (int(x) for x in fixed[176:184].decode("ascii").split("."))
    start = dt.datetime(2000 + year if year < 85 else 1900 + year, month, day, hour, minute, second)
    start += dt.timedelta(seconds=float(tal))
    out = tmp_path / "out"
    assert run(["screen", str(path), "--out", str(out), "--quiet"]) == 0
    report, frame, _ = load_outputs(out, path.stem, "qc")
    assert float(tal) > 0.3
    for k in (0, 7):
        expected = start + dt.timedelta(seconds=5.0 * k)
        assert abs(dt.datetime.fromisoformat(frame["start_time"].iloc[k]) - expected) <= dt.timedelta(microseconds=1)
        assert report["windows"][k]["start_time"] == frame["start_time"].iloc[k]


def test_a_task_that_cannot_run_fails_alone(shared_data, heads, tmp_path, capsys):
    """spkit's 14-channel recording cannot build the TUH montage: tuab fails, its qc report is still written."""
    out = tmp_path / "out"
    code, _, err = run_cli(["screen", shared_data / "spkit_EEG16SecData.edf", "--task", "qc", "--task", "tuab",
                            "--head", heads["tuab"], "--out", out, "--quiet"], capsys)
    assert code == 4 and "not usable for tuh_tcp22" in err
    report, frame, _ = load_outputs(out, "spkit_EEG16SecData", "qc")
    assert len(frame) == 3 and not (out / "spkit_EEG16SecData.tuab.json").exists()
    entry = manifest(out)[-1]
    assert entry["status"] == "failed" and entry["error_code"] == 4
    assert entry["parts"]["qc"]["status"] == "ok" and entry["parts"]["qc"]["windows_total"] == 3
    assert entry["parts"]["tuab"] == {"status": "failed", "error": entry["error"], "error_code": 4}
    assert sorted(entry["outputs"]) == ["spkit_EEG16SecData.qc.json", "spkit_EEG16SecData.qc.windows.csv"]
