"""recording.py against MNE on every real recording, and against truths the tests compute for edge cases."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest
from edf_factory import (
    SignalSpec,
    edf_to_bdf,
    make_discontinuous,
    patch_header_bytes,
    read_raw_header,
    records_of,
    set_record_count,
    set_unit,
    truncate,
    write_edf,
)

from lumamba_cli.errors import BadInputError, ExitCode
from lumamba_cli.channels import classify_channel, unit_to_uv
from lumamba_cli.recording import open_recording

REAL_FILES = [
    "edf-parser_S001R01.edf",
    "eeghdf_absence_epilepsy.edf",
    "epilepsy2bids_PN00-5_sample.edf",
    "epilepsy2bids_P_ID10_r5_sample.edf",
    "epilepsy2bids_aaaaaaac_s001_t000_sample.edf",
    "epilepsy2bids_chb01_01_sample.edf",
    "pyedflib_test_generator.bdf",
    "pyedflib_test_generator.edf",
    "pyedflib_test_generator_datarec_generator_0_5.bdf",
    "pyedflib_test_generator_datarec_generator_2.bdf",
    "pyedflib_test_legacy.edf",
    "pyedflib_test_subsecond.edf",
    "pyedflib_test_utf8.edf",
    "spkit_EEG16SecData.edf",
]


def mne_raw(path: Path):
    reader = mne.io.read_raw_bdf if path.suffix.lower() == ".bdf" else mne.io.read_raw_edf
    return reader(path, preload=False, verbose="error")


def decode_physical(path: Path, signal_number: int) -> np.ndarray:
    """The truth for one signal, decoded here from the bytes: digital samples through the EDF linear map."""
    header, records = records_of(path)
    offset = header.signal_offsets()[signal_number]
    spr = header.samples_per_record[signal_number]
    width = header.bytes_per_sample
    chunk = b"".join(r[offset : offset + spr * width] for r in records)
    if width == 2:
        digital = np.frombuffer(chunk, dtype="<i2").astype(np.float64)
    else:
        triplets = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        digital = (triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)).astype(np.int32)
        digital = np.where(digital >= 1 << 23, digital - (1 << 24), digital).astype(np.float64)
    pmin, pmax = float(header.field(3, signal_number)), float(header.field(4, signal_number))
    dmin, dmax = int(header.field(5, signal_number)), int(header.field(6, signal_number))
    return (digital - dmin) * (pmax - pmin) / (dmax - dmin) + pmin


def test_every_shared_file_is_covered(shared_data):
    present = sorted(p.name for p in shared_data.iterdir() if p.suffix.lower() in (".edf", ".bdf"))
    assert present == sorted(REAL_FILES)


@pytest.mark.parametrize("reader", ["auto", "native"])
@pytest.mark.parametrize("name", REAL_FILES)
def test_agrees_with_mne(shared_data, name, reader):
    path = shared_data / name
    raw = mne_raw(path)
    extras = raw._raw_extras[0]
    with open_recording(path, reader=reader) as rec:
        assert rec.reader == ("native" if reader == "auto" else reader)
        # Names (MNE renames duplicates "T8-P8-0", "T8-P8-1"; we keep the file's label and tell them apart by index).
        assert len(rec.channels) == len(raw.ch_names)
        for channel, mne_name in zip(rec.channels, raw.ch_names):
            assert mne_name == channel.label or mne_name.startswith(channel.label + "-")
        # Per-channel rates from MNE's own header parse; duration from its time axis.
        record_length = float(np.atleast_1d(extras["record_length"])[0])
        for channel, n in zip(rec.channels, extras["n_samps"]):
            assert channel.sfreq == pytest.approx(n / record_length)
        assert rec.duration_s == pytest.approx(raw.n_times / raw.info["sfreq"])
        # Annotations: MNE writes duration 0 where the TAL gives none.
        assert len(rec.annotations) == len(raw.annotations)
        for mine, theirs in zip(rec.annotations, sorted(raw.annotations, key=lambda a: (a["onset"], a["description"]))):
            assert mine.onset_s == pytest.approx(theirs["onset"], abs=1e-6)
            assert (mine.duration_s or 0.0) == pytest.approx(theirs["duration"], abs=1e-6)
            assert mine.text == theirs["description"]
        # Samples in µV: MNE for channels at its (highest) rate, the byte-level decoder for every channel.
        header = read_raw_header(path)
        data_numbers = [n for n, label in enumerate(header.labels) if label not in ("EDF Annotations", "BDF Annotations")]
        for channel, signal_number in zip(rec.channels, data_numbers):
            units = "physical" if channel.to_uv is None else "uV"
            scale = channel.to_uv or 1.0
            mine = rec.read([channel.index], units=units)[0]
            assert mine.shape == (channel.n_samples,)
            tolerance = 1e-9 * max(abs(channel.physical_min), abs(channel.physical_max), 1.0) * scale
            np.testing.assert_allclose(mine, decode_physical(path, signal_number) * scale, rtol=0, atol=tolerance)
            if channel.sfreq == raw.info["sfreq"]:
                theirs = raw.get_data(picks=[channel.index])[0] / extras["units"][channel.index] * scale
                np.testing.assert_allclose(mine, theirs, rtol=0, atol=tolerance)


def test_the_three_readers_agree(absence_edf):
    with open_recording(absence_edf, reader="pyedflib") as fast, open_recording(absence_edf, reader="mne") as slow, \
            open_recording(absence_edf) as native:
        assert (fast.reader, slow.reader, native.reader) == ("pyedflib", "mne", "native")
        picks = [c.index for c in fast.channels if c.kind == "eeg"]
        reference = fast.read(picks, 100.0, 130.0)
        np.testing.assert_allclose(slow.read(picks, 100.0, 130.0), reference, atol=1e-9)
        np.testing.assert_array_equal(native.read(picks, 100.0, 130.0), reference)


def test_native_reader_batches_and_partial_records(absence_edf, monkeypatch):
    from lumamba_cli.edf import RecordReader

    # Tiny batches force many record batches and starts/stops inside a record.
    monkeypatch.setattr(RecordReader, "batch_bytes", 3 * 14456)
    with open_recording(absence_edf, reader="native") as native, \
            open_recording(absence_edf, reader="pyedflib") as reference:
        for start, stop in [(0.0, 0.005), (12.345, 20.0), (99.995, 100.005), (1800.0, 1811.0)]:
            np.testing.assert_array_equal(native.read([0, 33], start, stop), reference.read([0, 33], start, stop))


def test_time_ranges_and_chunks(absence_edf):
    with open_recording(absence_edf) as rec:
        whole = rec.read([0, 5], 10.0, 20.0)
        assert whole.shape == (2, 2000)
        pieces = [block for _, block in rec.iter_chunks([0, 5], 7.0) if True]
        glued = np.concatenate(pieces, axis=1)
        assert glued.shape == (2, rec.channels[0].n_samples)
        np.testing.assert_array_equal(glued[:, 2000:4000], whole)
        with pytest.raises(ValueError, match="outside the stored data"):
            rec.read([0], 0.0, rec.duration_s + 1)


def test_absence_recording_facts(absence_edf):
    with open_recording(absence_edf) as rec:
        assert rec.file_format == "EDF+C"
        assert rec.duration_s == 1811
        kinds = {c.label: c.kind for c in rec.channels}
        assert kinds["EEG Fp1"] == kinds["EEG T3"] == kinds["EEG A1"] == "eeg"
        assert kinds["ECG X1"] == "ecg"
        assert kinds["EEG Mark1"] == kinds["EEG Mark2"] == "marker"
        assert kinds["X2"] == "misc"
        mark = next(c for c in rec.channels if c.label == "EEG Mark1")
        assert (mark.unit, mark.to_uv) == ("mV", 1000.0)
        texts = [a.text for a in rec.annotations]
        assert texts.count("SZ START") == 3 and texts.count("SZ END") == 3
        assert any("unknown physical unit" in w and "Events/Markers" in w for w in rec.warnings)


def test_subsecond_start_and_inverted_range(shared_data):
    path = shared_data / "pyedflib_test_subsecond.edf"
    with open_recording(path) as rec:
        # The first record's TAL says +0.3945312 s after the header's 04:05:56.
        assert rec.start_time.isoformat() == "2020-01-24T04:05:56.394531"
        channel = rec.channels[0]
        assert (channel.physical_min, channel.physical_max) == (8711.0, -8711.0)
        # An inverted range flips polarity: the µV signal must anti-correlate with the stored integers.
        digital = np.frombuffer(
            b"".join(r[: 128 * 2] for r in records_of(path)[1][:50]), dtype="<i2"
        ).astype(np.float64)
        assert np.corrcoef(digital, rec.read([0], 0.0, 50.0)[0])[0, 1] < -0.999999


def test_legacy_plain_edf_with_annotation_signal(shared_data):
    with open_recording(shared_data / "pyedflib_test_legacy.edf") as rec:
        assert rec.file_format == "EDF"
        assert [a.text for a in rec.annotations] == ["Recording starts", "Recording ends"]
        assert [c.label for c in rec.channels][-1] == "sine 50 Hz"  # the annotation signal is not a channel


def test_mixed_rates_and_odd_records(shared_data):
    with open_recording(shared_data / "pyedflib_test_generator.bdf") as rec:
        assert sorted(c.sfreq for c in rec.channels) == [500, 800, 975, 999, 1000]
        with pytest.raises(ValueError, match="different rates"):
            rec.read([0, 1, 2, 3, 4])
    with open_recording(shared_data / "pyedflib_test_generator_datarec_generator_2.bdf") as rec:
        assert {487.5, 499.5} <= {c.sfreq for c in rec.channels}
        odd = next(c for c in rec.channels if c.sfreq == 487.5)
        assert rec.read([odd.index], 2.0, 4.0).shape == (1, 975)
    with open_recording(shared_data / "pyedflib_test_generator_datarec_generator_0_5.bdf") as rec:
        assert rec.duration_s == 30.0 and rec.segments[0].duration_s == 30.0


def test_channel_kinds(shared_data):
    with open_recording(shared_data / "epilepsy2bids_PN00-5_sample.edf") as rec:
        kinds = {c.label: c.kind for c in rec.channels}
    assert kinds["EKG EKG"] == "ecg" and kinds["SPO2"] == "spo2" and kinds["MK"] == "marker"
    assert kinds["HR"] == kinds["1"] == kinds["2"] == "misc"
    assert kinds["EEG Fc5"] == "eeg"
    with open_recording(shared_data / "epilepsy2bids_aaaaaaac_s001_t000_sample.edf") as rec:
        kinds = {c.label: c.kind for c in rec.channels}
    assert kinds["PHOTIC PH"] == "photic" and kinds["EEG EKG-LE"] == "ecg" and kinds["EEG FP1-LE"] == "eeg"
    with open_recording(shared_data / "epilepsy2bids_chb01_01_sample.edf") as rec:
        assert {c.kind for c in rec.channels} == {"eeg"}
        assert [c.label for c in rec.channels].count("T8-P8") == 2
        assert any("duplicate channel labels" in w and "T8-P8" in w for w in rec.warnings)
    with open_recording(shared_data / "edf-parser_S001R01.edf") as rec:
        assert {c.kind for c in rec.channels} == {"eeg"}  # dotted labels "Fc5.", "Cz.."
    assert classify_channel("EOG L", "uV") == "eog"
    assert classify_channel("EMG chin", "uV") == "emg"
    assert classify_channel("Resp nasal", "uV") == "resp"
    assert classify_channel("X2", "uV") == "misc"


@pytest.mark.parametrize(
    ("unit", "scale", "understood"),
    [("uV", 1.0, True), ("µV", 1.0, True), ("μV", 1.0, True), ("mV", 1e3, True), ("V", 1e6, True),
     ("nV", 1e-3, True), ("UV", 1.0, True), ("MV", None, False), ("%", None, True), ("furlong", None, False)],
)
def test_unit_table(unit, scale, understood):
    assert unit_to_uv(unit) == (scale, understood)


# ---------------------------------------------------------------------------------------------------------------
# Generated edge cases


@pytest.fixture(scope="module")
def generator_edf(shared_data) -> Path:
    return shared_data / "pyedflib_test_generator.edf"


def test_latin1_micro_unit(generator_edf, tmp_path):
    patched = set_unit(generator_edf, tmp_path / "latin1.edf", b"\xb5V")
    assert b"\xb5V" in patched.read_bytes()[: 256 * 13]
    with open_recording(patched) as rec, open_recording(generator_edf, reader="pyedflib") as original, \
            open_recording(patched, reader="mne") as by_mne:
        assert rec.channels[0].unit == "µV" and rec.channels[0].to_uv == 1.0 and rec.reader == "native"
        np.testing.assert_array_equal(rec.read([0, 3], 10, 20), original.read([0, 3], 10, 20))
        np.testing.assert_allclose(by_mne.read([0, 3], 10, 20), original.read([0, 3], 10, 20), atol=1e-9)
    with pytest.raises(BadInputError, match="pyedflib cannot read this file"):
        open_recording(patched, reader="pyedflib")


def test_millivolt_and_unknown_units(generator_edf, tmp_path):
    with open_recording(set_unit(generator_edf, tmp_path / "mv.edf", b"mV", [1])) as rec, open_recording(
        generator_edf
    ) as original:
        np.testing.assert_allclose(rec.read([1], 0, 5), original.read([1], 0, 5) * 1000.0, rtol=1e-12)
    with open_recording(set_unit(generator_edf, tmp_path / "odd.edf", b"MV", [2])) as rec:
        assert rec.channels[2].to_uv is None
        assert any("unknown physical unit" in w and "'MV'" in w for w in rec.warnings)
        with pytest.raises(BadInputError, match="no µV scale"):
            rec.read([2])
        assert rec.read([2], units="physical").shape == (1, rec.channels[2].n_samples)


def test_discontinuous_file_segments(generator_edf, tmp_path):
    notes = [(50.0, None, "before"), (106.0, 1.5, "after first gap"), (500.25, None, "late µ")]
    path, onsets = make_discontinuous(generator_edf, tmp_path / "gaps.edf", {100: 5.0, 400: 2.5}, notes)
    with open_recording(path) as rec, open_recording(generator_edf) as original:
        assert rec.file_format == "EDF+D"
        assert [(s.onset_s, s.data_start_s, s.duration_s) for s in rec.segments] == [
            (0.0, 0.0, 100.0), (105.0, 100.0, 300.0), (407.5, 400.0, 200.0)
        ]
        assert rec.segments[2].onset_s == pytest.approx(onsets[400])
        assert [(a.onset_s, a.duration_s, a.text) for a in rec.annotations] == notes
        assert any("discontinuous" in w and "7.500 s of gaps" in w for w in rec.warnings)
        with open_recording(path, reader="native") as native:
            np.testing.assert_array_equal(native.read([0, 4], 95, 110), original.read([0, 4], 95, 110))
        # Stored data is the records concatenated: same samples as the contiguous original.
        np.testing.assert_allclose(rec.read([0, 4], 95, 110), original.read([0, 4], 95, 110), rtol=0, atol=1e-9)


def test_contiguous_label_with_jumping_stamps_is_not_glued(generator_edf, tmp_path):
    path, _ = make_discontinuous(generator_edf, tmp_path / "liar.edf", {10: 1.0})
    patch_header_bytes(path, path, 192, b"EDF+C")
    with open_recording(path) as rec:
        assert rec.file_format == "EDF+C" and len(rec.segments) == 2
        assert any("although the header says EDF+C" in w for w in rec.warnings)


def test_bdf_24bit_from_real_eeg(shared_data, tmp_path):
    source = shared_data / "pyedflib_test_subsecond.edf"
    bdf = edf_to_bdf(source, tmp_path / "subsecond.bdf", scale=256)
    with open_recording(bdf) as rec, open_recording(source) as original:
        assert rec.file_format == "BDF+C" and rec.reader == "native"
        assert rec.channels[0].digital_min == -32768 * 256
        assert rec.start_time == original.start_time
        assert [a.text for a in rec.annotations] == [a.text for a in original.annotations]
        mine = rec.read([0])[0]
        np.testing.assert_allclose(mine, original.read([0])[0], atol=1e-9)
        theirs = mne.io.read_raw_bdf(bdf, preload=True, verbose="error").get_data(units="uV")[0]
        np.testing.assert_allclose(mine, theirs, atol=1e-6)
    with open_recording(bdf, reader="native") as native:
        np.testing.assert_array_equal(native.read([0])[0], mine)


def test_failed_pyedflib_open_does_not_break_open_readers(generator_edf, shared_data, tmp_path):
    """pyedflib 0.1.42 closes edflib handle 0 when an open fails; the reader on it must keep returning data."""
    bdf = edf_to_bdf(shared_data / "pyedflib_test_subsecond.edf", tmp_path / "ok.bdf")
    header = read_raw_header(bdf)
    annotation_digital_min = 256 + header.n_signals * (16 + 80 + 8 + 8 + 8) + 8 * 1
    refused = patch_header_bytes(bdf, tmp_path / "refused.bdf", annotation_digital_min, b"-32768  ")
    with open_recording(generator_edf, reader="pyedflib") as first:
        before = first.read([0, 4], 0, 30)
        with pytest.raises(BadInputError, match="pyedflib cannot read"):
            open_recording(refused, reader="pyedflib")
        with open_recording(refused, reader="mne") as second:
            assert second.reader == "mne"
        np.testing.assert_array_equal(first.read([0, 4], 0, 30), before)
        assert np.abs(before).max() > 0


def test_record_count_minus_one_is_inferred(generator_edf, tmp_path):
    with open_recording(set_record_count(generator_edf, tmp_path / "unknown.edf", -1), reader="mne") as rec:
        assert rec.duration_s == 600.0
        assert any("inferred from the file size" in w for w in rec.warnings)


def test_write_edf_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(-30000, 30000, size=(3, 10 * 256)).astype(np.int16)
    signals = [SignalSpec("EEG Cz", 256), SignalSpec("EEG Pz", 256), SignalSpec("ECG", 256, unit="mV")]
    path = write_edf(tmp_path / "w.edf", signals, 10, 1.0, lambda k: data[:, k * 256 : (k + 1) * 256])
    with open_recording(path) as rec:
        assert rec.file_format == "EDF" and rec.reader == "native"
        gain = (3276.7 + 3276.8) / 65535
        expected = (data.astype(np.float64) + 32768) * gain - 3276.8
        np.testing.assert_allclose(rec.read([0, 1]), expected[:2], atol=1e-9)
        np.testing.assert_allclose(rec.read([2]), expected[2:] * 1000, atol=1e-6)
        assert [c.kind for c in rec.channels] == ["eeg", "eeg", "ecg"]


# ---------------------------------------------------------------------------------------------------------------
# Bad input


def _refused(path, match: str) -> BadInputError:
    with pytest.raises(BadInputError, match=match) as caught:
        open_recording(path)
    assert caught.value.code == ExitCode.BAD_INPUT
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    return caught.value


def test_missing_directory_empty_text(tmp_path):
    _refused(tmp_path / "nope.edf", "file not found")
    _refused(tmp_path, "is a directory")
    (tmp_path / "empty.edf").write_bytes(b"")
    _refused(tmp_path / "empty.edf", "empty file")
    (tmp_path / "notes.edf").write_text("these are my notes about a patient, not an EDF file\n" * 20)
    _refused(tmp_path / "notes.edf", "not an EDF/BDF file")
    (tmp_path / "short.edf").write_bytes(b"0       tiny")
    _refused(tmp_path / "short.edf", "shorter than the 256-byte")


def test_truncated_and_lying_headers(generator_edf, tmp_path):
    record_bytes = read_raw_header(generator_edf).record_bytes
    _refused(truncate(generator_edf, tmp_path / "cut.edf", 1000), r"truncated.*disagrees with the file size")
    _refused(truncate(generator_edf, tmp_path / "cut_whole.edf", 3 * record_bytes), r"600 records.*597 complete")
    _refused(set_record_count(generator_edf, tmp_path / "more.edf", 700), r"disagrees with the file size")
    _refused(set_record_count(generator_edf, tmp_path / "fewer.edf", 10), r"lying header.*600 complete records")
    header_bytes = read_raw_header(generator_edf).header_bytes
    _refused(truncate(generator_edf, tmp_path / "header_only.edf", generator_edf.stat().st_size - header_bytes + 100),
             "truncated inside the header")


def test_header_garbage(generator_edf, tmp_path):
    _refused(patch_header_bytes(generator_edf, tmp_path / "ns.edf", 252, b"ab  "), "number of signals")
    _refused(patch_header_bytes(generator_edf, tmp_path / "dur.edf", 244, b"one sec "), "duration of a data record")
    header = read_raw_header(generator_edf)
    digital_min_field = 256 + header.n_signals * (16 + 80 + 8 + 8 + 8)
    _refused(patch_header_bytes(generator_edf, tmp_path / "dmin.edf", digital_min_field, b"40000   "),
             "digital minimum 40000 above its maximum")
    _refused(patch_header_bytes(generator_edf, tmp_path / "dmin2.edf", digital_min_field, b"-3x     "),
             "digital minimum of signal 1")


# ---------------------------------------------------------------------------------------------------------------
# The bundled example


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"


def test_example_excerpt_is_a_lossless_cut(absence_edf):
    assert EXAMPLE.stat().st_size < 3_000_000
    with open_recording(EXAMPLE) as excerpt, open_recording(absence_edf) as source:
        assert excerpt.file_format == "EDF+C" and excerpt.reader == "native" and not excerpt.segments[1:]
        offset = (excerpt.start_time - source.start_time).total_seconds()
        assert [c.label for c in excerpt.channels] == [c.label for c in source.channels]
        assert [(c.sfreq, c.physical_min, c.digital_max, c.unit) for c in excerpt.channels] == [
            (c.sfreq, c.physical_min, c.digital_max, c.unit) for c in source.channels
        ]
        picks = [c.index for c in excerpt.channels if c.to_uv is not None]
        np.testing.assert_array_equal(excerpt.read(picks), source.read(picks, offset, offset + excerpt.duration_s))
        expected = [(round(a.onset_s - offset, 3), a.text) for a in source.annotations
                    if offset <= a.onset_s < offset + excerpt.duration_s]
        assert [(round(a.onset_s, 3), a.text) for a in excerpt.annotations] == expected
        assert [a.text for a in excerpt.annotations].count("SZ START") == 3


def test_latin1_annotation_text(generator_edf, tmp_path):
    notes = [(12.0, None, "Müdigkeit µ-Rhythmus"), (30.5, 2.0, "café")]
    path, _ = make_discontinuous(generator_edf, tmp_path / "latin1_tal.edf", {}, notes, encoding="latin-1")
    assert "Müdigkeit".encode("latin-1") in path.read_bytes()
    with open_recording(path) as rec:
        assert [(a.onset_s, a.duration_s, a.text) for a in rec.annotations] == notes
        assert len(rec.segments) == 1


def test_discontinuous_mixed_rate_bdf_uses_own_reader(shared_data, tmp_path):
    source = shared_data / "pyedflib_test_generator.bdf"
    path, _ = make_discontinuous(source, tmp_path / "gaps.bdf", {10: 3.0})
    with open_recording(path) as rec, open_recording(source) as original:
        assert rec.file_format == "BDF+D" and rec.reader == "native"
        assert [s.onset_s for s in rec.segments] == [0.0, 13.0]
        for channel in rec.channels:  # five rates, each read at its own rate
            np.testing.assert_array_equal(rec.read([channel.index]), original.read([channel.index]))


def test_flat_channels(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.integers(-2000, 2000, size=(5, 128)).astype(np.int16)
    signals = [SignalSpec("EEG Cz", 128), SignalSpec("EEG Pz", 128), SignalSpec("EEG Oz", 128)]
    # Pz is constant everywhere; Oz is constant except for one sample in the last record.
    def record(k):
        last = np.full(128, 7, dtype=np.int16)
        if k == 4:
            last[-1] = 8
        return [noise[k], np.full(128, -3, dtype=np.int16), last]

    path = write_edf(tmp_path / "flat.edf", signals, 5, 1.0, record)
    with open_recording(path) as rec:
        assert [c.flat for c in rec.channels] == [None, None, None]  # the header cannot tell
        flat = rec.scan_flat(chunk_s=2.0)
        assert [c.label for c in flat] == ["EEG Pz"]
        assert [c.flat for c in rec.channels] == [False, True, False]
        assert [c.flat for c in open_recording(path).scan_flat(max_seconds=3.0)] == [True, True]


def test_same_file_opened_twice(generator_edf):
    # edflib refuses a second open of one file; the second Recording must still read, and the first keep reading.
    with open_recording(generator_edf, reader="pyedflib") as first, \
            open_recording(generator_edf, reader="mne") as second:
        assert first.reader == "pyedflib" and second.reader == "mne"
        np.testing.assert_allclose(second.read([0, 7], 3, 9), first.read([0, 7], 3, 9), rtol=0, atol=1e-9)
        assert np.abs(first.read([7], 3, 9)).max() > 0


def test_tuh_eye_canthus_leads_are_eog(shared_data):
    with open_recording(shared_data / "epilepsy2bids_aaaaaaac_s001_t000_sample.edf") as rec:
        kinds = {c.label: c.kind for c in rec.channels}
    # MNE types every "EEG ..." label as EEG; these are eye leads (right lower / left upper canthus).
    assert kinds["EEG RLC-LE"] == kinds["EEG LUC-LE"] == "eog"
    assert kinds["EEG T1-LE"] == kinds["EEG OZ-LE"] == "eeg"
    assert classify_channel("EEG ROC-REF", "uV") == classify_channel("LOC", "uV") == "eog"
    assert classify_channel("CLOCK", "uV") == "misc"


@pytest.mark.parametrize(
    ("unit", "physical", "flagged"),
    [("uV", 0.0032767, "volts"),  # volts written as µV
     ("uV", 3.2767, "volts"),  # millivolts written as µV
     ("V", 3276.7, "smaller unit"),  # µV written as V
     ("uV", 3276.7, None), ("mV", 3.2767, None), ("V", 0.0032767, None), ("uV", 262143.0, None)],
)
def test_implausible_eeg_range_for_its_unit_is_warned(tmp_path, unit, physical, flagged):
    signals = [SignalSpec("EEG Cz", 128, unit=unit, physical_min=-physical, physical_max=physical),
               SignalSpec("ECG", 128, unit=unit, physical_min=-physical, physical_max=physical)]
    samples = np.zeros((2, 128), dtype=np.int16)
    samples[:, ::2] = 1000
    path = write_edf(tmp_path / "units.edf", signals, 2, 1.0, lambda k: samples)
    with open_recording(path) as rec:
        notes = [w for w in rec.warnings if "implausible" in w]
    if flagged is None:
        assert notes == []
    else:
        assert len(notes) == 1 and "'EEG Cz'" in notes[0] and flagged in notes[0] and "ECG" not in notes[0]


def test_real_recordings_have_plausible_eeg_ranges(shared_data):
    for path in sorted(shared_data.glob("*.[eb]df")):
        with open_recording(path) as rec:
            assert not any("implausible" in w for w in rec.warnings), path.name


def test_scan_warns_on_eeg_that_never_swings_a_microvolt(tmp_path):
    # A writer that stored volts but kept a µV header: the digital values only wiggle by a few steps.
    rng = np.random.default_rng(2)
    real = rng.integers(-2000, 2000, size=(3, 128)).astype(np.int16)
    volts_as_uv = rng.integers(-4, 5, size=(3, 128)).astype(np.int16)  # ±0.4 µV at 0.1 µV per step
    signals = [SignalSpec("EEG Cz", 128), SignalSpec("EEG Pz", 128), SignalSpec("ECG", 128)]
    path = write_edf(tmp_path / "tiny.edf", signals, 3, 1.0, lambda k: [real[k], volts_as_uv[k], volts_as_uv[k]])
    with open_recording(path) as rec:
        assert not any("peak to peak" in w for w in rec.warnings)  # the header alone cannot tell
        rec.scan_flat()
        rec.scan_flat()
        notes = [w for w in rec.warnings if "below 1 µV peak to peak" in w]
        assert len(notes) == 1 and "'EEG Pz' (0.8 µV)" in notes[0]
        assert "Cz" not in notes[0] and "ECG" not in notes[0]


@pytest.mark.parametrize("name", REAL_FILES)
def test_default_reader_is_bit_identical_to_pyedflib(shared_data, name):
    """The default (our record reader) against the library it replaced, on every real recording pyedflib reads."""
    path = shared_data / name
    try:
        reference = open_recording(path, reader="pyedflib")
    except BadInputError as refusal:
        pytest.skip(f"pyedflib refuses {name}: {refusal}")
    with reference, open_recording(path) as native:
        assert native.reader == "native"
        for rate in sorted({c.sfreq for c in native.channels}):
            picks = [c.index for c in native.channels if c.sfreq == rate]
            units = "uV" if all(native.channels[i].to_uv is not None for i in picks) else "physical"
            np.testing.assert_array_equal(native.read(picks, units=units), reference.read(picks, units=units))
