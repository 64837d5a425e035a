"""Signal-quality flags: fire on synthetic faults injected into real EEG, stay quiet on clean real recordings."""

from __future__ import annotations

import numpy as np
import pytest
from edf_factory import make_discontinuous

from lumamba_cli.qc import FLAG_NAMES, QCThresholds, clip_limits, detect_mains, iter_qc, qc_array, spectra
from lumamba_cli.recording import open_recording


@pytest.fixture(scope="module")
def motor_eeg(shared_data):
    """60 s of real 64-channel EEG at 160 Hz (PhysioNet motor imagery, subject 1), µV."""
    with open_recording(shared_data / "edf-parser_S001R01.edf") as rec:
        eeg = [c.index for c in rec.channels if c.kind == "eeg"]
        return rec.read(eeg, 0.0, 60.0), rec.channels[eeg[0]].sfreq


def _no_clipping(n):
    return np.full(n, -1e9), np.full(n, 1e9)


def test_clean_real_eeg_is_not_flagged(motor_eeg):
    data, sfreq = motor_eeg
    metrics, flags, qc_pass, texts, mains = qc_array(data, sfreq, *_no_clipping(len(data)))
    assert qc_pass.all() and texts == [[]] * 12
    assert not any(flags[name].any() for name in FLAG_NAMES)
    assert metrics["std_uv"].shape == (12, 64)


def test_each_fault_flags_its_channel_only(motor_eeg):
    data, sfreq = motor_eeg
    data = data.copy()
    t = np.arange(data.shape[1]) / sfreq
    rng = np.random.default_rng(0)
    data[0] = 3.0 + 0.05 * rng.standard_normal(t.size)  # disconnected electrode: offset plus amplifier noise
    low, high = _no_clipping(len(data))
    low[1], high[1] = -40.0, 40.0  # a channel recorded with a too-small physical range
    data[1] = np.clip(data[1] * 3, -40.0, 40.0)
    data[2] += 150.0 * np.sin(2 * np.pi * 50.0 * t)  # strong mains hum (European)
    emg = rng.standard_normal(t.size)
    spectrum = np.fft.rfft(emg)
    freqs = np.fft.rfftfreq(t.size, 1 / sfreq)
    spectrum[(freqs < 35) | (freqs > 75)] = 0
    data[3] += 150.0 * np.fft.irfft(spectrum, t.size) / np.fft.irfft(spectrum, t.size).std()  # muscle
    data[4, 2000:2010] += 4000.0  # electrode pop in window 3
    metrics, flags, qc_pass, texts, mains = qc_array(data, sfreq, low, high)
    assert mains == 50.0
    assert flags["flat"][:, 0].all() and flags["flat"].sum() == 12
    assert flags["clipping"][:, 1].all() and flags["clipping"].sum() == 12
    assert flags["line_noise"][:, 2].all() and flags["line_noise"].sum() == 12
    assert flags["muscle"][:, 3].all() and flags["muscle"].sum() == 12
    assert flags["extreme"][2, 4] and flags["extreme"].sum() == 1
    # 4 or 5 bad channels of 64 is under the 20 % default: windows still pass, and say why they are suspect
    assert qc_pass.all()
    assert texts[2] == ["flat 1/64", "clipping 1/64", "extreme 1/64", "line_noise 1/64", "muscle 1/64"]
    strict = QCThresholds(max_bad_channel_fraction=0.05)
    assert not qc_array(data, sfreq, low, high, thresholds=strict)[2].any()


def test_mains_detection(motor_eeg):
    data, sfreq = motor_eeg
    t = np.arange(data.shape[1]) / sfreq
    hum = data + 30.0 * np.sin(2 * np.pi * 60.0 * t)
    windows = hum[:, : 800 * 10].reshape(len(hum), 10, 800).transpose(1, 0, 2)
    assert detect_mains(*spectra(windows, sfreq)) == 60.0
    low_rate = windows[..., ::2]
    assert detect_mains(*spectra(low_rate, 80.0)) is None  # Nyquist 40 Hz: no mains band fits


def test_clip_limits_from_headers(shared_data):
    with open_recording(shared_data / "pyedflib_test_subsecond.edf") as rec:
        low, high = clip_limits(rec.channels)  # inverted physical range (8711 → −8711)
        ch = rec.channels[0]
    half_step = abs(ch.physical_max - ch.physical_min) / abs(ch.digital_max - ch.digital_min) / 2 * ch.to_uv
    assert low[0] == pytest.approx(min(ch.physical_min, ch.physical_max) * ch.to_uv + half_step)
    assert high[0] == pytest.approx(max(ch.physical_min, ch.physical_max) * ch.to_uv - half_step)


def test_real_clinical_recording(absence_edf):
    with open_recording(absence_edf) as rec:
        blocks = list(iter_qc(rec, chunk_s=600.0))
    assert blocks[0].mains_hz == 60.0  # a US recording
    starts = np.concatenate([b.start_s for b in blocks])
    np.testing.assert_allclose(starts, 5.0 * np.arange(362))
    passed = np.concatenate([b.qc_pass for b in blocks])
    assert passed.mean() > 0.9  # seizures and hyperventilation are EEG, not artefact
    import mne

    annotations = mne.read_annotations(absence_edf)
    marks = {d.strip(): [] for d in annotations.description}
    for onset, text in zip(annotations.onset, annotations.description):
        marks[text.strip()].append(onset)
    intervals = list(zip(marks["SZ START"], marks["SZ END"])) + list(zip(marks["HV START"], marks["HV END"]))
    assert len(intervals) == 4
    for begin, end in intervals:  # high-amplitude ictal and HV rhythms must not be mistaken for artefact
        touching = (starts + 5.0 > begin) & (starts < end)
        assert touching.any() and passed[touching].all(), (begin, end)
    clipping = np.concatenate([b.flags["clipping"] for b in blocks])
    assert not clipping.any()
    windows = [w for b in blocks for w in b.windows()]
    assert [w.passed for w in windows] == passed.tolist() and [w.start_s for w in windows] == starts.tolist()
    failing = next(w for w in windows if not w.passed)
    assert failing.flags and set(failing.bad_channels) <= set(FLAG_NAMES)


def test_segments_are_respected(fixtures_dir, tmp_path):
    source = fixtures_dir / "preprocessing" / "s01_input_absence_first600s_tuh_labels.edf"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    gapped, _ = make_discontinuous(source, tmp_path / "gapped.edf", {102: 4.0})
    with open_recording(gapped) as rec:
        blocks = list(iter_qc(rec))
    starts = np.concatenate([b.start_s for b in blocks])
    segments = np.concatenate([b.segment for b in blocks])
    # 102 s → 20 windows (2 s dropped before the gap); 498 s → 99 windows starting at 106 s
    assert np.bincount(segments).tolist() == [20, 99]
    np.testing.assert_allclose(starts[20:22], [106.0, 111.0])


def test_thresholds_from_file(tmp_path):
    from lumamba_cli.errors import UsageError

    path = tmp_path / "qc.yaml"
    path.write_text("flat_std_uv: 1.5\nmains_hz: 60\n")
    loaded = QCThresholds.from_file(path)
    assert loaded.flat_std_uv == 1.5 and loaded.mains_hz == 60 and loaded.extreme_ptp_uv == QCThresholds().extreme_ptp_uv
    path.write_text("flat_std: 1.5\n")
    with pytest.raises(UsageError, match="qc.yaml"):
        QCThresholds.from_file(path)
