"""`lumamba info`: human output on stderr, JSON on stdout, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import run_cli
from edf_factory import make_discontinuous, truncate

from lumamba_cli import DISCLAIMER



def test_info_human(absence_edf, capsys):
    code, out, err = run_cli(["info", str(absence_edf)], capsys)
    assert code == 0
    assert out == ""  # people's output goes to stderr only
    assert "RESEARCH USE ONLY" in err
    assert "EDF+C" in err and "read with native" in err and "1811 s" in err
    assert "EEG Fp1" in err and "ECG X1" in err and "marker" in err
    assert "114 annotation(s)" in err
    assert "more (use --json for all)" in err
    assert "warning:" in err and "Events/Markers" in err


def test_info_json(absence_edf, capsys):
    code, out, err = run_cli(["info", str(absence_edf), "--json"], capsys)
    assert code == 0
    described = json.loads(out)
    assert described["disclaimer"] == DISCLAIMER
    assert described["file_format"] == "EDF+C" and described["duration_s"] == 1811
    assert len(described["channels"]) == 36
    fp1 = described["channels"][0]
    assert fp1["label"] == "EEG Fp1" and fp1["kind"] == "eeg" and fp1["sfreq"] == 200 and fp1["to_uv"] == 1.0
    assert described["annotation_count"] == len(described["annotations"]) == 114
    assert sum(a["text"] == "SZ START" for a in described["annotations"]) == 3
    assert described["segments"] == [{"onset_s": 0.0, "data_start_s": 0.0, "duration_s": 1811.0}]
    assert "EEG Fp1" not in err  # the table is not printed in --json mode


def test_info_json_segments_of_discontinuous_file(shared_data, tmp_path, capsys):
    path, _ = make_discontinuous(shared_data / "pyedflib_test_generator.edf", tmp_path / "d.edf", {300: 4.0})
    code, out, _ = run_cli(["info", str(path), "--json"], capsys)
    assert code == 0
    described = json.loads(out)
    assert described["file_format"] == "EDF+D"
    assert [s["onset_s"] for s in described["segments"]] == [0.0, 304.0]
    assert any("discontinuous" in w for w in described["warnings"])
    code, _, err = run_cli(["info", str(path)], capsys)
    assert code == 0 and "Contiguous segments" in err and "304" in err


@pytest.mark.parametrize("case", ["missing", "directory", "truncated", "text"])
def test_info_bad_input_exits_3(case, shared_data, tmp_path, capsys):
    target = {
        "missing": tmp_path / "absent.edf",
        "directory": tmp_path,
        "truncated": tmp_path / "cut.edf",
        "text": tmp_path / "text.edf",
    }[case]
    if case == "truncated":
        truncate(shared_data / "pyedflib_test_generator.edf", target, 777)
    if case == "text":
        target.write_text("not a recording\n" * 30)
    code, out, err = run_cli(["info", str(target)], capsys)
    assert code == 3
    assert out == ""
    assert str(target) in err and "Traceback" not in err
    assert len([line for line in err.strip().splitlines() if line.startswith("error:")]) == 1


def test_info_as_a_process(shared_data):
    done = subprocess.run(
        [sys.executable, "-m", "lumamba_cli", "info", "--json", str(shared_data / "pyedflib_test_utf8.edf")],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert "中文测试八个字" in [a["text"] for a in described["annotations"]]
    assert described["start_time"] == "2020-01-24T04:05:56.394531"


def test_info_warns_when_eeg_unit_is_implausible(tmp_path, capsys):
    import numpy as np
    from edf_factory import SignalSpec, write_edf

    # Volts in a header that says µV: ±3.3 mV written as ±0.0033 "uV".
    signals = [SignalSpec("EEG Fz", 64, unit="uV", physical_min=-0.0033, physical_max=0.0033),
               SignalSpec("EEG Cz", 64)]
    ramp = np.arange(-32, 32, dtype=np.int16) * 500
    path = write_edf(tmp_path / "volts.edf", signals, 2, 1.0, lambda k: [ramp, ramp])
    code, out, err = run_cli(["info", str(path)], capsys)
    assert code == 0 and out == ""
    flat_err = " ".join(err.split())
    assert "implausible" in flat_err and "'EEG Fz'" in flat_err and "likely volts or millivolts" in flat_err
    code, out, err = run_cli(["info", str(path), "--json"], capsys)
    warnings = [w for w in json.loads(out)["warnings"] if "implausible" in w]
    assert len(warnings) == 1 and "'EEG Fz'" in warnings[0] and "'EEG Cz'" not in warnings[0]
