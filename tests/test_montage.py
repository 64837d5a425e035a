"""Electrode registry, aliases, layouts and channel resolution (montage.py), checked against MNE and the spec."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

from lumamba_cli.errors import BadInputError, MontageError, UsageError
from lumamba_cli.channels import normalise_label
from lumamba_cli.montage import (
    Derivation,
    get_layout,
    list_layouts,
    load_registry,
)
from lumamba_cli.resources import data_dir

# Spec §3.1, "TUH/TUEG bipolar midpoints, head frame, in CHN_ORDER" (MNE 1.13.2), 6 decimals.
SPEC_TUH22 = [
    ("FP1-F7", -0.051390, 0.093844, 0.026829), ("F7-T3", -0.078929, 0.043988, 0.028482),
    ("T3-T5", -0.080220, -0.013626, 0.036224), ("T5-O1", -0.053016, -0.061346, 0.048032),
    ("FP2-F8", 0.049922, 0.094926, 0.026411), ("F8-T4", 0.077348, 0.044882, 0.028037),
    ("T4-T6", 0.077147, -0.013501, 0.036086), ("T6-O2", 0.049358, -0.061374, 0.047966),
    ("T3-C3", -0.076565, 0.019115, 0.067842), ("C3-CZ", -0.034261, 0.025488, 0.122355),
    ("CZ-C4", 0.031977, 0.025595, 0.121946), ("C4-T4", 0.074295, 0.019416, 0.067333),
    ("FP1-F3", -0.041356, 0.100637, 0.053290), ("F3-C3", -0.059479, 0.055023, 0.091612),
    ("C3-P3", -0.061093, -0.010426, 0.102210), ("P3-O1", -0.043306, -0.062389, 0.077349),
    ("FP2-F4", 0.039342, 0.101392, 0.052496), ("F4-C4", 0.057802, 0.055506, 0.090482),
    ("C4-P4", 0.059482, -0.010381, 0.102104), ("P4-O2", 0.040660, -0.062412, 0.077625),
    ("A1-T3", -0.086961, 0.008736, 0.002154), ("T4-A2", 0.083595, 0.008613, 0.002032),
]

# Spec §3.1 unipolar table (head frame); its first 62 rows are torcheeg's SEED_CHANNEL_LIST order.
SPEC_UNIPOLAR = """
FP1 -0.030903 0.114585 0.027867|FPZ -0.001337 0.119102 0.032890|FP2 0.028409 0.115346 0.027721
AF3 -0.035186 0.109130 0.056439|AF4 0.034230 0.109811 0.057117|F7 -0.071877 0.073104 0.025790
F5 -0.066054 0.080240 0.053771|F3 -0.051809 0.086688 0.078714|F1 -0.029044 0.091448 0.096619
FZ -0.001229 0.093274 0.102639|F2 0.027968 0.091870 0.095780|F4 0.050274 0.087438 0.077271
F6 0.066331 0.081529 0.053116|F8 0.071435 0.074505 0.025101|FT7 -0.082489 0.044849 0.027681
FC5 -0.078906 0.051367 0.062962|FC3 -0.061852 0.057133 0.093766|FC1 -0.035716 0.061714 0.117983
FCZ -0.001271 0.063460 0.126572|FC2 0.033131 0.061828 0.116782|FC4 0.060625 0.057707 0.093795
FC6 0.077847 0.052099 0.062867|FT8 0.080104 0.045554 0.027412|T7 -0.085982 0.014872 0.031173
C5 -0.082085 0.019294 0.069490|C3 -0.067149 0.023358 0.104511|C1 -0.037938 0.026337 0.129771
CZ -0.001374 0.027617 0.140199|C2 0.035893 0.026358 0.128412|C4 0.065329 0.023573 0.103692
C6 0.081653 0.019696 0.069482|T8 0.083261 0.015258 0.030973|TP7 -0.086757 -0.014951 0.035159
CP5 -0.081514 -0.013346 0.073133|CP3 -0.065472 -0.011897 0.107778|CP1 -0.037425 -0.010824 0.133444
CPZ -0.001525 -0.010518 0.141549|CP2 0.036472 -0.010904 0.132812|CP4 0.064696 -0.011991 0.107713
CP6 0.081401 -0.013462 0.073364|TP8 0.083622 -0.015086 0.035058|P7 -0.074458 -0.042123 0.041274
P5 -0.069300 -0.043227 0.072254|P3 -0.055038 -0.044210 0.099909|P1 -0.030654 -0.044927 0.119472
PZ -0.001709 -0.045213 0.126673|P2 0.029886 -0.045033 0.120748|P4 0.053636 -0.044335 0.100516
P6 0.065861 -0.043339 0.071941|P8 0.071032 -0.042260 0.041199|PO7 -0.056949 -0.065923 0.047907
PO5 -0.050535 -0.066691 0.066787|PO3 -0.038625 -0.067362 0.082416|POZ -0.001900 -0.068054 0.095910
PO4 0.034668 -0.067662 0.081647|PO6 0.047708 -0.067138 0.066921|PO8 0.053557 -0.066417 0.047851
CB1 -0.045116 -0.074747 0.051391|O1 -0.031574 -0.080568 0.054790|OZ -0.002060 -0.082783 0.060737
O2 0.027683 -0.080489 0.054734|CB2 0.041529 -0.075164 0.051350|PO9 -0.057028 -0.068605 0.009741
PO10 0.052869 -0.069047 0.009668|AF7 -0.056361 0.099152 0.025141|AF8 0.054225 0.099832 0.024915
T3 -0.085982 0.014872 0.031173|T4 0.083261 0.015258 0.030973|T5 -0.074458 -0.042123 0.041274
T6 0.071032 -0.042260 0.041199
"""


def _spec_unipolar() -> list[tuple[str, np.ndarray]]:
    out = []
    for item in SPEC_UNIPOLAR.replace("\n", "|").split("|"):
        if item.strip():
            name, *xyz = item.split()
            out.append((name, np.array([float(v) for v in xyz])))
    return out


# Spec §3.1 check values for GSN-HydroCel-129, raw montage frame (MNE 1.13.2).
SPEC_GSN = {
    "E1": (0.062663, 0.059775, -0.027906), "E2": (0.057295, 0.072640, 0.003329),
    "E3": (0.041837, 0.082656, 0.033215), "E4": (0.031061, 0.077367, 0.054022),
    "E5": (0.016017, 0.061569, 0.073763),
}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _read_table(name: str) -> dict[str, np.ndarray]:
    lines = (data_dir("montages") / name).read_text().splitlines()
    assert lines[0].split("\t") == ["name", "x_m", "y_m", "z_m"]
    return {n: np.array([float(x), float(y), float(z)]) for n, x, y, z in (ln.split("\t") for ln in lines[1:])}


def _edf_labels(path):
    pyedflib = pytest.importorskip("pyedflib")
    reader = pyedflib.EdfReader(str(path))
    try:
        return reader.getSignalLabels(), list(reader.getSampleFrequencies())
    finally:
        reader.close()


# -- stored tables vs MNE, checksums --------------------------------------------------------------------------
def _mne_montage(name):
    mne = pytest.importorskip("mne")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return mne, mne.channels.make_standard_montage(name)
        except ValueError:
            if name != "standard_1005":
                raise
            # MNE ≥ 1.14 renames the template; the positions must still be the same.
            return mne, mne.channels.make_standard_montage("colin27_1005")


def test_head_table_equals_mne_head_frame():
    mne, montage = _mne_montage("standard_1005")
    info = mne.create_info(montage.ch_names, 100.0, "eeg")
    info.set_montage(montage, match_case=False)
    live = info.get_montage().get_positions()
    assert live["coord_frame"] == "head"
    stored = _read_table("standard_1005_head.tsv")
    assert list(stored) == list(montage.ch_names)
    worst = max(float(np.abs(stored[n] - live["ch_pos"][n]).max()) for n in stored)
    assert worst <= 1e-9, f"stored head-frame table differs from MNE {mne.__version__} by {worst:g} m"


def test_gsn_table_equals_mne_raw_frame_and_spec():
    mne, montage = _mne_montage("GSN-HydroCel-129")
    live = montage.get_positions()["ch_pos"]
    stored = _read_table("GSN-HydroCel-129_raw.tsv")
    assert list(stored) == list(montage.ch_names) and len(stored) == 129
    assert max(float(np.abs(stored[n] - live[n]).max()) for n in stored) <= 1e-9
    for name, xyz in SPEC_GSN.items():
        np.testing.assert_allclose(stored[name], xyz, atol=1e-6, rtol=0)


def test_checksums_pin_the_bundled_tables():
    root = data_dir("montages")
    pinned = dict(reversed(line.split("  ")) for line in (root / "checksums.sha256").read_text().splitlines() if line)
    assert set(pinned) == {"standard_1005_head.tsv", "GSN-HydroCel-129_raw.tsv", "aliases.tsv"}
    for name, digest in pinned.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, f"{name} changed without re-pinning"


# -- spec tables ------------------------------------------------------------------------------------------------
def test_tuh_layout_positions_equal_spec_midpoints():
    layout = get_layout("tuh_tcp22")
    assert layout.channels == [row[0] for row in SPEC_TUH22]
    assert layout.kind == "bipolar" and layout.frame == "head"
    positions = layout.positions()
    assert positions.dtype == np.float32 and positions.shape == (22, 3)
    np.testing.assert_allclose(positions, [row[1:] for row in SPEC_TUH22], atol=1e-6, rtol=0)


def test_unipolar_positions_equal_spec_table(registry):
    for name, xyz in _spec_unipolar():
        match = registry.canonical(name)
        assert match.known, name
        np.testing.assert_allclose(registry.position(match.canonical), xyz, atol=1e-6, rtol=0, err_msg=name)


def test_seed62_is_the_spec_table_order_and_positions():
    spec = _spec_unipolar()[:62]
    layout = get_layout("seed62")
    assert layout.channels == [name for name, _ in spec]
    np.testing.assert_allclose(layout.positions(), np.stack([xyz for _, xyz in spec]), atol=1e-6, rtol=0)


def test_positions_match_upstream_preprocessing_fixtures(fixtures_dir):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    s01 = safetensors_numpy.load_file(str(fixtures_dir / "preprocessing" / "s01_tuab_from_absence.safetensors"))
    s02 = safetensors_numpy.load_file(str(fixtures_dir / "preprocessing" / "s02_mumtaz_from_absence.safetensors"))
    np.testing.assert_allclose(get_layout("tuh_tcp22").positions(np.float64), s01["positions_f64"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(get_layout("mumtaz19").positions(np.float64), s02["positions_f64"], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "name, count, kind, frame",
    [("tuh_tcp22", 22, "bipolar", "head"), ("apava16", 16, "referential", "head"),
     ("tdbrain26", 26, "referential", "head"), ("mumtaz19", 19, "referential", "head"),
     ("standard_1020_19", 19, "referential", "head"), ("seed62", 62, "referential", "head"),
     ("mobi60", 60, "referential", "head"), ("gsn_hydrocel_129", 128, "referential", "raw")],
)
def test_layouts_have_the_published_size_and_distinct_positions(name, count, kind, frame):
    layout = get_layout(name)
    assert (len(layout.channels), layout.kind, layout.frame) == (count, kind, frame)
    positions = layout.positions(np.float64)
    assert np.all(np.isfinite(positions)) and np.all(np.abs(positions) < 0.2)
    assert len({tuple(np.round(p, 9)) for p in positions}) == count, "two channels share a position"


def test_every_layout_file_loads():
    assert {"tuh_tcp22", "gsn_hydrocel_129", "seed62"} <= set(list_layouts())
    for name in list_layouts():
        assert get_layout(name).name == name
    with pytest.raises(UsageError, match="known layouts"):
        get_layout("no_such_layout")


# -- names and aliases -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "label, canonical, source",
    [("T3", "T7", "alias"), ("EEG T5", "P7", "alias"), ("t4", "T8", "alias"), ("T6", "P8", "alias"),
     ("CB1", "POO7", "alias"), ("cb2", "POO8", "alias"), ("M1", "M1", "direct"), ("A2", "A2", "direct"),
     ("EEG FP1-LE", "Fp1", "direct"), ("EEG A1-REF", "A1", "direct"), ("Fc5.", "FC5", "direct"),
     ("Cz..", "Cz", "direct"), ("T10.", "T10", "direct"), ("EEG-Fp1", "Fp1", "direct"), (" c3-AVG ", "C3", "direct"),
     ("Oz-AR", "Oz", "direct"), ("FP1-F7", "Fp1-F7", "bipolar"), ("EEG F7-T3", "F7-T7", "bipolar"),
     ("E17", "E17", "direct")],
)
def test_canonical_names(registry, label, canonical, source):
    match = registry.canonical(label)
    assert (match.canonical, match.source) == (canonical, source)


@pytest.mark.parametrize("label", ["Channel 1", "EEG Pg1", "EEG 23A-23R", "X2", "EEG SP1-LE", "", "Fp1-Fp1", "T1"])
def test_unknown_names_get_no_position(registry, label):
    match = registry.canonical(label)
    assert match.source == "unknown" and match.canonical is None
    with pytest.raises(KeyError):
        registry.position(label)


def test_old_names_sit_exactly_where_their_aliases_point(registry):
    # MNE lists T3…T6 itself; the alias must not move them (ACNS T5 = P7, not T9).
    table = _read_table("standard_1005_head.tsv")
    for alias, target in registry.aliases.items():
        if alias in table:
            np.testing.assert_array_equal(table[alias], table[target[0]])
    assert not np.allclose(table["T5"], table["T9"])
    # M1/M2 stay MNE's own mastoid positions, 2 cm from TP9/TP10.
    assert np.linalg.norm(registry.position("M1") - registry.position("TP9")) > 0.02


def test_reference_suffix_is_remembered():
    assert normalise_label("EEG FP1-REF") == ("FP1", "REF")
    assert normalise_label("EEG T3-LE") == ("T3", "LE")
    assert normalise_label("Fp1") == ("Fp1", None)
    assert normalise_label("-REF") == ("-REF", None)


def test_bipolar_position_is_the_midpoint(registry):
    np.testing.assert_allclose(
        registry.position("C3-Cz"), (registry.position("C3") + registry.position("Cz")) / 2, atol=0, rtol=0
    )


# -- resolution on real recordings' labels ---------------------------------------------------------------------
def test_absence_recording_derives_all_22_tuh_channels(registry, absence_edf):
    labels, rates = _edf_labels(absence_edf)
    report = registry.resolve(labels, "tuh_tcp22", sfreqs=rates)
    assert report.usable, report.verdict
    assert [q.status for q in report.required] == ["derivable"] * 22
    assert report.required[0].how == "EEG Fp1 − EEG F7"
    der = report.derivation
    assert der.sfreq == 200.0 and der.channel_names == [row[0] for row in SPEC_TUH22]
    np.testing.assert_allclose(der.positions, [row[1:] for row in SPEC_TUH22], atol=1e-6, rtol=0)
    index = {label: i for i, label in enumerate(labels)}
    assert der.terms[20] == [(index["EEG A1"], 1.0), (index["EEG T3"], -1.0)]
    used = {labels[i] for i in der.file_channels}
    tuh21 = ["FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6",
             "A1", "A2", "FZ", "CZ", "PZ"]
    # Fz and Pz are TUH electrodes but no TCP channel uses them.
    assert {f"EEG {e}".lower() for e in tuh21 if e not in ("FZ", "PZ")} == {u.lower() for u in used}
    reasons = {row.label: row.reason for row in report.rows}
    assert reasons["EEG Fz"] == "not in layout tuh_tcp22"
    assert reasons["ECG X1"] == "ECG channel"
    assert reasons["EEG Pg1"].startswith("unknown name")


def test_tusz_le_labels(registry, shared_data):
    labels, rates = _edf_labels(shared_data / "epilepsy2bids_aaaaaaac_s001_t000_sample.edf")
    report = registry.resolve(labels, "tuh_tcp22", sfreqs=rates)
    assert report.usable and report.derivation.sfreq == 250.0
    assert all(row.match.reference == "LE" for row in report.rows if row.used)
    rows = {row.label: row for row in report.rows}
    assert rows["EEG EKG-LE"].kind == "ecg" and not rows["EEG EKG-LE"].used
    assert rows["EEG T1-LE"].match.source == "unknown"
    assert rows["EEG OZ-LE"].match.canonical == "Oz" and rows["EEG OZ-LE"].reason == "not in layout tuh_tcp22"


def test_physionet_dotted_labels_all_resolve(registry, shared_data):
    labels, rates = _edf_labels(shared_data / "edf-parser_S001R01.edf")
    assert len(labels) == 64
    report = registry.resolve(labels, sfreqs=rates)
    assert report.usable and not report.warnings
    assert all(row.used and row.match.source == "direct" for row in report.rows)
    assert len(report.derivation.channel_names) == 64 and report.derivation.sfreq == 160.0
    assert report.derivation.channel_names[:3] == ["FC5", "FC3", "FC1"]


def test_siena_eeg_prefix_labels(registry, shared_data):
    labels, rates = _edf_labels(shared_data / "epilepsy2bids_PN00-5_sample.edf")
    report = registry.resolve(labels, "mumtaz19", sfreqs=rates, on_missing="ignore")
    assert report.usable, report.verdict
    assert report.required[6].how == "file channel 'EEG T3'"
    plain = registry.resolve(labels, sfreqs=rates, on_missing="ignore")
    assert len(plain.derivation.channel_names) == 29  # F9, F10, FC/CP 1/2/5/6 included
    assert {"F9", "F10"} <= set(plain.derivation.channel_names)


def test_chb_bipolar_labels_are_midpoints_used_directly(registry, shared_data):
    labels, rates = _edf_labels(shared_data / "epilepsy2bids_chb01_01_sample.edf")
    report = registry.resolve(labels, sfreqs=rates)
    rows = report.rows
    assert all(row.match.source == "bipolar" for row in rows)
    spec = {name: np.array(xyz) for name, *xyz in SPEC_TUH22}
    np.testing.assert_allclose(rows[0].position, spec["FP1-F7"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(rows[1].position, spec["F7-T3"], atol=1e-6, rtol=0)  # F7-T7 ≡ F7-T3
    assert rows[22].label == "T8-P8" and not rows[22].used and "duplicate of channel 14" in rows[22].reason
    # Against TCP: the 16 chains present are used as they are, the other 6 cannot be built from bipolar pairs.
    tuh = registry.resolve(labels, "tuh_tcp22", sfreqs=rates, on_missing="ignore")
    assert not tuh.usable and tuh.derivation is None
    assert sum(q.status == "present" for q in tuh.required) == 16
    assert set(tuh.missing) == {"T3-C3", "C3-CZ", "CZ-C4", "C4-T4", "A1-T3", "T4-A2"}


def test_reversed_bipolar_pair_is_negated(registry):
    labels = [name.replace("T3-T5", "T5-T3") for name, *_ in SPEC_TUH22]
    report = registry.resolve(labels, "tuh_tcp22")
    assert report.usable
    assert report.required[2].status == "derivable" and report.derivation.terms[2] == [(2, -1.0)]


# -- on_missing, rates, frames -----------------------------------------------------------------------------------
def test_missing_channel_raise_warn_ignore(registry):
    labels = [f"EEG {e}-REF" for e in ["FP1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "FZ", "FP2", "F4", "C4",
                                        "P4", "O2", "F8", "T4", "T6", "CZ"]]  # PZ absent
    with pytest.raises(MontageError, match=r"needs Pz .*--aliases"):
        registry.resolve(labels, "mumtaz19")
    with pytest.warns(RuntimeWarning, match="Pz"):
        report = registry.resolve(labels, "mumtaz19", on_missing="warn")
    assert not report.usable and report.missing == ["Pz"] and report.derivation is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = registry.resolve(labels, "mumtaz19", on_missing="ignore")
    assert quiet.missing == ["Pz"] and "1 of 19 channels missing" in quiet.verdict


def test_unnamed_channels_are_refused(registry):
    labels = [f"Channel {i}" for i in range(1, 5)]
    with pytest.raises(MontageError, match="no EEG channel matches"):
        registry.resolve(labels)
    report = registry.resolve(labels, on_missing="ignore")
    assert not report.usable and report.derivation is None
    assert all(row.reason == "unknown name: no position" for row in report.rows)


def test_layout_channels_must_share_a_rate(registry):
    labels = ["Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Fp2", "F4", "C4", "P4", "O2", "F8", "T4", "T6",
              "Cz", "Pz"]
    rates = [256.0] * 18 + [512.0]
    report = registry.resolve(labels, "mumtaz19", sfreqs=rates, on_missing="ignore")
    assert not report.usable and "different sampling rates" in report.verdict
    plain = registry.resolve(labels, sfreqs=rates)
    assert plain.usable and len(plain.derivation.channel_names) == 18 and plain.warnings
    assert "512 Hz differs" in plain.rows[-1].reason


def test_gsn_net_uses_raw_frame_and_drops_cz_reference(registry):
    labels = [f"E{i}" for i in range(1, 129)] + ["Cz"]
    report = registry.resolve(labels, "gsn_hydrocel_129")
    assert report.usable and report.derivation.frame == "raw"
    for k, name in enumerate(["E1", "E2", "E3", "E4", "E5"]):
        np.testing.assert_allclose(report.derivation.positions[k], SPEC_GSN[name], atol=1e-6, rtol=0)
    assert not report.rows[-1].used and "head-frame electrode" in report.rows[-1].reason


def test_mixed_references_are_reported(registry):
    labels = [f"EEG {a}-REF" for a in ["FP1", "F7", "T3", "T5", "O1", "FP2", "F8", "T4", "T6", "O2", "C3", "CZ",
                                       "C4", "F3", "P3", "F4", "P4", "A1"]] + ["EEG A2-LE"]
    report = registry.resolve(labels, "tuh_tcp22")
    assert report.usable
    assert any("T4-A2" in w and "different references" in w for w in report.warnings)


def test_seed_cap_with_cerebellar_names(registry):
    layout = get_layout("seed62")
    report = registry.resolve(list(layout.channels), layout)
    assert report.usable
    cb1 = layout.channels.index("CB1")
    assert report.rows[cb1].match.canonical == "POO7"


# -- derivation --------------------------------------------------------------------------------------------------
def test_derivation_apply_matches_direct_subtraction():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 50))
    der = Derivation(["A-B", "C", "B-A"], np.zeros((3, 3)), [[(0, 1.0), (1, -1.0)], [(2, 1.0)], [(3, -1.0)]], 100.0)
    out = der.apply(data)
    np.testing.assert_array_equal(out[0], data[0] - data[1])
    np.testing.assert_array_equal(out[1], data[2])
    np.testing.assert_array_equal(out[2], -data[3])
    assert der.file_channels == [0, 1, 2, 3]
    subset = data[[3, 0, 2, 1]]
    np.testing.assert_array_equal(der.apply(subset, rows=[3, 0, 2, 1]), out)
    assert der.apply(data.astype(np.float32)).dtype == np.float32


# -- user overrides --------------------------------------------------------------------------------------------
def test_user_tsv_adds_aliases_and_positions(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text("name\tcanonical\tx\ty\tz\tnote\nChannel 1\tCz\t\t\t\tour cap\nM1\tTP9\n"
                    "Nose\t\t0.0\t0.1\t-0.02\tnose tip\n")
    registry = load_registry(path)
    assert registry.canonical("Channel 1").canonical == "Cz"
    assert registry.canonical("M1").source == "alias" and registry.canonical("M1").canonical == "TP9"
    np.testing.assert_array_equal(registry.position("Nose"), [0.0, 0.1, -0.02])
    assert registry.canonical("Nose-Cz").source == "bipolar"
    assert load_registry().canonical("Channel 1").source == "unknown", "overrides leaked into the default registry"


def test_user_json_overrides(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"aliases": {"Kanal 1": "Fp1"}, "positions": {"Ref": [0.0, 0.0, 0.15]}}))
    registry = load_registry(path)
    report = registry.resolve(["Kanal 1", "Ref", "Channel 9"], on_missing="ignore")
    assert [row.used for row in report.rows] == [True, True, False]


@pytest.mark.parametrize(
    "text, error, message",
    [("name\tcanonical\nFoo\tNoSuchElectrode\n", BadInputError, "unknown electrode"),
     ("name\tx\ty\tz\nFoo\t10\t95\t40\n", BadInputError, "metres"),
     ("name\tx\ty\tz\nFoo\ta\tb\tc\n", BadInputError, "not numbers"),
     ("just some text\n", BadInputError, "header")],
)
def test_bad_override_files_are_refused_with_the_file_named(tmp_path, text, error, message):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(error, match=message) as info:
        load_registry(path)
    assert "bad.tsv" in str(info.value)


def test_mixed_references_in_a_referential_layout_are_reported(registry):
    names = ["Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Fp2", "F4", "C4", "P4", "O2", "F8", "T4", "T6",
             "Cz", "Pz"]
    one_reference = registry.resolve([f"EEG {n}-LE" for n in names], "mumtaz19")
    assert one_reference.usable and not any("different references" in w for w in one_reference.warnings)
    mixed = registry.resolve([f"EEG {n}-LE" for n in names[:-2]] + [f"EEG {n}-REF" for n in names[-2:]], "mumtaz19")
    assert mixed.usable
    warning = next(w for w in mixed.warnings if "different references" in w)
    assert "REF: EEG Cz-REF, EEG Pz-REF" in warning and "LE: EEG Fp1-LE" in warning


def test_tuh_eye_canthus_leads_are_eog_in_bare_label_lists(registry):
    report = registry.resolve(["EEG Cz-LE", "EEG RLC-LE", "EEG LUC-LE", "ROC"], on_missing="ignore")
    kinds = {row.label: row.kind for row in report.rows}
    assert kinds == {"EEG Cz-LE": "eeg", "EEG RLC-LE": "eog", "EEG LUC-LE": "eog", "ROC": "eog"}
    assert report.unknown_eeg == []
