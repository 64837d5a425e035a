"""`lumamba montage check | list | show` end to end on real recordings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from lumamba_cli import DISCLAIMER
from cli_helpers import run_cli
from synthetic_eeg import noise_edf as write_edf
from test_montage import SPEC_TUH22


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code, out, err = run_cli(list(argv), capsys)
    return code, out, " ".join(err.split())  # table cells and lines folded into one text


def test_absence_recording_for_tuab(capsys, absence_edf):
    code, out, err = run(capsys, "montage", "check", str(absence_edf), "--task", "tuab", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["usable"] and report["layout"] == "tuh_tcp22" and report["disclaimer"] == DISCLAIMER
    electrodes = {row["canonical"] for row in report["channels"] if row["used"]}
    assert len(electrodes) == 19  # the 21 TUH electrodes less Fz and Pz, which no TCP channel uses
    assert {r["canonical"] for r in report["channels"] if r["source"] in ("direct", "alias")} >= {"Fz", "Pz", "A1"}
    derivation = report["derivation"]
    assert [c["name"] for c in derivation["channels"]] == [row[0] for row in SPEC_TUH22]
    np.testing.assert_allclose([c["position_m"] for c in derivation["channels"]], [r[1:] for r in SPEC_TUH22],
                               atol=1e-6, rtol=0)
    assert all(len(c["terms"]) == 2 for c in derivation["channels"])
    assert [q["status"] for q in report["required"]] == ["derivable"] * 22


def test_text_report_goes_to_stderr_with_the_disclaimer(capsys, absence_edf):
    code, out, err = run(capsys, "montage", "check", str(absence_edf), "--layout", "tuh_tcp22")
    assert code == 0 and out == ""
    assert "RESEARCH USE ONLY" in err and "usable for tuh_tcp22" in err and "EEG A1 − EEG T3" in err


def test_dotted_64_channel_labels(capsys, shared_data):
    code, out, err = run(capsys, "montage", "check", str(shared_data / "edf-parser_S001R01.edf"), "--json")
    assert code == 0, err
    rows = json.loads(out)["channels"]
    assert len(rows) == 64 and all(r["used"] and r["source"] == "direct" for r in rows)
    assert {r["label"]: r["canonical"] for r in rows}["T10."] == "T10"


def test_unnamed_channels_exit_4(capsys, tmp_path):
    path = write_edf(tmp_path / "unnamed.edf", [f"Channel {i}" for i in range(1, 5)])
    code, out, err = run(capsys, "montage", "check", str(path))
    assert code == 4
    squashed = "".join(err.split())  # a long temporary path may be folded anywhere
    assert "unnamed.edf" in squashed and "noEEGchannelmatchesaknownelectrodename" in squashed
    assert "Channel1,Channel2" in squashed
    assert "Traceback" not in err


def test_user_aliases_make_unnamed_channels_usable(capsys, tmp_path):
    path = write_edf(tmp_path / "unnamed.edf", [f"Channel {i}" for i in range(1, 5)])
    aliases = tmp_path / "cap.tsv"
    aliases.write_text("name\tcanonical\nChannel 1\tFp1\nChannel 2\tFp2\nChannel 3\tO1\n")
    code, out, err = run(capsys, "montage", "check", str(path), "--aliases", str(aliases), "--json")
    assert code == 0, err
    rows = json.loads(out)["channels"]
    assert [r["canonical"] for r in rows] == ["Fp1", "Fp2", "O1", None]
    assert [r["source"] for r in rows[:3]] == ["alias"] * 3


def test_chb_bipolar_labels(capsys, shared_data):
    path = shared_data / "epilepsy2bids_chb01_01_sample.edf"
    code, out, err = run(capsys, "montage", "check", str(path), "--json")
    assert code == 0, err
    rows = json.loads(out)["channels"]
    assert all(r["source"] == "bipolar" for r in rows)
    np.testing.assert_allclose(rows[0]["position_m"], SPEC_TUH22[0][1:], atol=1e-6, rtol=0)
    code, out, err = run(capsys, "montage", "check", str(path), "--task", "tuab")
    assert code == 4 and "6 of 22 channels missing" in err and "--aliases" in err


def test_tusz_and_siena_labels(capsys, shared_data):
    code, out, err = run(capsys, "montage", "check", str(shared_data / "epilepsy2bids_aaaaaaac_s001_t000_sample.edf"),
                         "--task", "tuab", "--json")
    assert code == 0, err
    assert json.loads(out)["derivation"]["sfreq"] == 250.0
    code, out, err = run(capsys, "montage", "check", str(shared_data / "epilepsy2bids_PN00-5_sample.edf"),
                         "--task", "mumtaz", "--json")
    assert code == 0, err
    report = json.loads(out)
    by_label = {r["label"]: r for r in report["channels"]}
    assert by_label["EEG Fp1"]["used"] and by_label["EKG EKG"]["source"] == "non-eeg"


def test_bad_inputs(capsys, tmp_path, absence_edf):
    code, _, err = run(capsys, "montage", "check", str(tmp_path / "absent.edf"))
    assert code == 3 and "absent.edf" in "".join(err.split())
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"this is not an EDF file" * 20)
    code, _, err = run(capsys, "montage", "check", str(junk))
    assert code == 3 and "junk.edf" in "".join(err.split())
    code, _, err = run(capsys, "montage", "check", str(absence_edf), "--layout", "nope")
    assert code == 2 and "known layouts" in err
    code, _, err = run(capsys, "montage", "check", str(absence_edf), "--task", "tuab", "--layout", "tuh_tcp22")
    assert code == 2
    bad_aliases = tmp_path / "aliases.tsv"
    bad_aliases.write_text("name\tcanonical\nFoo\tNoSuchElectrode\n")
    code, _, err = run(capsys, "montage", "check", str(absence_edf), "--aliases", str(bad_aliases))
    assert code == 3 and "NoSuchElectrode" in err


def test_task_without_layout_checks_every_eeg_channel(capsys, absence_edf):
    code, out, err = run(capsys, "montage", "check", str(absence_edf), "--task", "qc", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["layout"] is None and report["usable"]
    used = [r["canonical"] for r in report["channels"] if r["used"]]
    assert len(used) == 23 and "A1" in used and "FT10" in used  # 23 named electrodes; Pg1/Pg2 have no position


def test_list_and_show(capsys):
    code, out, _ = run(capsys, "montage", "list", "--json")
    assert code == 0
    listing = json.loads(out)
    sizes = {item["name"]: item["channels"] for item in listing["layouts"]}
    assert sizes["tuh_tcp22"] == 22 and sizes["gsn_hydrocel_129"] == 128 and sizes["seed62"] == 62
    assert listing["registry"]["head_frame_electrodes"] == 343
    code, out, _ = run(capsys, "montage", "show", "tuh_tcp22", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["kind"] == "bipolar"
    assert shown["channels"][20]["name"] == "A1-T3" and shown["channels"][20]["canonical"] == "A1-T7"
    np.testing.assert_allclose([c["position_m"] for c in shown["channels"]], [r[1:] for r in SPEC_TUH22],
                               atol=1e-6, rtol=0)
    code, _, err = run(capsys, "montage", "show", "gsn_hydrocel_129")
    assert code == 0 and "raw frame" in err and "E128" in err


def test_module_entry_point(absence_edf):
    proc = subprocess.run([sys.executable, "-m", "lumamba_cli", "montage", "check", str(absence_edf), "--task", "tuab",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["usable"] and report["disclaimer"] == DISCLAIMER
    assert proc.stderr == ""  # --json: data on stdout, nothing for people to read on stderr


def test_task_check_reports_mixed_references(capsys, tmp_path):
    names = ["Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Fp2", "F4", "C4", "P4", "O2", "F8", "T4", "T6",
             "Cz", "Pz"]
    path = write_edf(tmp_path / "mixed.edf", [f"EEG {n}-LE" for n in names[:-1]] + ["EEG Pz-REF"], sfreq=256)
    code, out, err = run(capsys, "montage", "check", str(path), "--task", "mumtaz", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["usable"] and any("different references" in w and "EEG Pz-REF" in w for w in report["warnings"])
    code, out, err = run(capsys, "montage", "check", str(path), "--task", "mumtaz")
    assert code == 0 and "different references" in err


def test_task_check_refuses_a_rate_the_recipe_cannot_filter(capsys, tmp_path):
    names = ["C3", "C4", "F3", "F4", "F7", "F8", "Fp1", "Fp2", "O1", "O2", "P3", "P4", "T3", "T4", "T5", "T6"]
    path = write_edf(tmp_path / "slow.edf", names, sfreq=128)
    code, out, err = run(capsys, "montage", "check", str(path), "--layout", "apava16")
    assert code == 0, err  # the layout alone is satisfied
    code, out, err = run(capsys, "montage", "check", str(path), "--task", "apava", "--json")
    report = json.loads(out)
    # the channels are all there (the derivation says how), but the recipe cannot filter at this rate
    assert code == 4 and not report["usable"] and len(report["derivation"]["channels"]) == 16
    assert "128 Hz" in report["verdict"] and "75 Hz low-pass" in report["verdict"]
    assert "--aliases" not in err  # no alias can fix a sampling rate
