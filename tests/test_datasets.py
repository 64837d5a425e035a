"""Dataset adapters on miniature copies of each dataset's real layout (real file names and annotation formats,
synthetic or real signals), window-label rules, seeded subject splits and the window cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lumamba_cli import datasets, window_cache
from lumamba_cli.preprocess import PreprocessPolicy
from lumamba_cli.errors import BadInputError, UsageError
from lumamba_cli.recipes import load_recipe

from synthetic_eeg import make_tuab_tree, synthesize, write_edf, write_manifest, write_tuh_csv, tuh_labels

MUMTAZ_LABELS = ["Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Fp2", "F4", "C4", "P4", "O2", "F8", "T4",
                 "T6", "Cz", "Pz"]
TDBRAIN_COLUMNS = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC3", "FCz", "FC4", "T7", "C3", "Cz", "C4", "T8",
                   "CP3", "CPz", "CP4", "P7", "P3", "Pz", "P4", "P8", "O1", "Oz", "O2", "VPVA", "VNVB", "HPHL", "HNHR",
                   "Erbs", "OrbOcc", "Mass"]


@pytest.fixture()
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# --------------------------------------------------------------------------------------------------- TUAB


def test_tuab_layout_labels_and_authors_test_split(tmp_path):
    written = make_tuab_tree(tmp_path / "tuab", n_train_per_class=5, n_eval_per_class=2, duration_s=10, seed=1)
    # a second montage folder and a stray file must be ignored: upstream uses 01_tcp_ar only
    (tmp_path / "tuab/train/normal/02_tcp_le").mkdir(parents=True)
    (tmp_path / "tuab/train/normal/02_tcp_le/zzzz0000_s001_t000.edf").write_bytes(b"")
    recipe = load_recipe("tuab")
    index = datasets.discover("tuab", tmp_path / "tuab", recipe.labels)
    assert len(index.sources) == len(written) == 14
    truth = {p.name: label for p, label in written}
    for source in index.sources:
        assert source.label == truth[source.path.name]
        assert source.subject == source.path.name.split("_")[0]
        assert (source.split == "test") == source.key.startswith("eval/")
    split = datasets.assign_splits(index.sources, seed=3)
    again = datasets.assign_splits(index.sources, seed=3)
    other = datasets.assign_splits(index.sources, seed=4)
    assert split == again
    assert split != other  # the seed matters
    train_subjects = {s.subject for s in index.sources if s.key.startswith("train/")}
    assert {split[s] for s in train_subjects} == {"train", "val"}
    # 80/20 of 5 subjects per class: one validation subject per class
    val = [s for s in index.sources if split[s.subject] == "val"]
    assert sorted(s.label for s in val) == [0, 1]


def test_split_is_by_subject_with_several_sessions(tmp_path):
    make_tuab_tree(tmp_path / "tuab", n_train_per_class=6, n_eval_per_class=1, duration_s=6, sessions=3)
    index = datasets.discover("tuab", tmp_path / "tuab", ["normal", "abnormal"])
    split = datasets.assign_splits(index.sources, seed=0)
    per_subject = {}
    for source in index.sources:
        per_subject.setdefault(source.subject, set()).add(split[source.subject])
    assert all(len(v) == 1 for v in per_subject.values())
    assert len(index.sources) == 3 * len(per_subject)


def test_wrong_task_for_dataset_is_refused(tmp_path):
    make_tuab_tree(tmp_path / "tuab", n_train_per_class=1, n_eval_per_class=1, duration_s=6)
    with pytest.raises(UsageError):
        datasets.discover("tuab", tmp_path / "tuab", load_recipe("tusl").labels)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(BadInputError):
        datasets.discover("tuab", tmp_path, ["normal", "abnormal"])


# ------------------------------------------------------------------------------------------- TUAR / TUSL


def _tuh_file(folder: Path, name: str, duration_s: float, seed: int) -> Path:
    data = synthesize(np.random.default_rng(seed), abnormal=False, duration_s=duration_s)
    return write_edf(folder / f"{name}.edf", data, 250.0, tuh_labels())


def test_tuar_coverage_rule(tmp_path, cache):
    folder = tmp_path / "tuar" / "01_tcp_ar"
    path = _tuh_file(folder, "aaaaaaaa_s001_t000", 30.0, 0)
    write_tuh_csv(path.with_suffix(".csv"), 30.0, [
        ("FP1-F7", 0.0, 1.4, "eyem"),    # window 0: 28 % covered → 0
        ("F7-T3", 5.0, 6.6, "musc"),     # window 1: 32 % → 1
        ("FP1-F7", 10.0, 12.0, "bckg"),  # window 2: not an artifact label → 0
        ("EKG", 15.0, 20.0, "elec"),     # window 3: not one of the 22 TCP channels → 0
        ("T3-C3", 20.0, 21.0, "chew"),   # window 4: two events on different channels, union 1.5 s = 30 % → 1
        ("C3-CZ", 20.5, 21.5, "fnsz"),
    ])
    recipe = load_recipe("tuar_bc")
    index = datasets.discover("tuar", tmp_path / "tuar", recipe.labels)
    assert index.window_rule == "coverage" and len(index.sources) == 1
    split = window_cache.build_split(index, index.sources, recipe, cache_dir=cache)
    assert len(split) == 6
    assert split.labels.tolist() == [0, 1, 0, 0, 1, 0]
    x, pos, y = split.batch(np.arange(len(split)))
    assert x.shape == (6, 22, 1280) and pos.shape == (6, 22, 3)


def test_tuar_reads_the_ar_and_le_montage_folders_only(tmp_path):
    root = tmp_path / "tuar" / "edf"
    for folder, stem in (("01_tcp_ar", "aaaaaaaa_s001_t000"), ("02_tcp_le", "aaaaaaab_s001_t000"),
                         ("03_tcp_ar_a", "aaaaaaac_s001_t000")):
        (root / folder).mkdir(parents=True)
        (root / folder / f"{stem}.edf").write_bytes(b"")  # discovery reads names and CSVs only
        write_tuh_csv(root / folder / f"{stem}.csv", 10.0, [("FP1-F7", 1.0, 2.0, "eyem")])
    index = datasets.discover("tuar", tmp_path / "tuar", load_recipe("tuar_bc").labels)
    assert sorted(s.subject for s in index.sources) == ["aaaaaaaa", "aaaaaaab"]
    assert any("03_tcp_ar_a" in note for note in index.notes)


def test_tuh_csv_parser_reads_comments_and_rejects_bad_rows(tmp_path):
    good = write_tuh_csv(tmp_path / "a.csv", 10, [("FP1-F7", 1.0, 2.5, "EYEM")])
    events = datasets.read_tuh_csv(good)
    assert events == [datasets.Event(1.0, 2.5, "eyem", "FP1-F7")]
    bad = tmp_path / "b.csv"
    bad.write_text("# version = csv_v1.0.0\nchannel,start_time,stop_time,label,confidence\nFP1-F7,3.0,2.0,eyem,1.0\n")
    with pytest.raises(BadInputError, match="stop_time"):
        datasets.read_tuh_csv(bad)


def test_tusl_majority_rule_ties_to_smaller(tmp_path):
    index = datasets.DatasetIndex("tusl", tmp_path, [], ["none", "background", "seizure", "slowing"], "majority")
    sfreq, window_s = 256.0, 5.0
    source = datasets.Source(tmp_path / "x.edf", "s", events=[
        datasets.Event(0.0, 5.0, "bckg"),      # window 0: all bckg → 1
        datasets.Event(5.0, 7.5, "slow"),      # window 1: 2.5 s slow + 2.5 s seiz: tie → smaller (2 = seizure)
        datasets.Event(7.5, 10.0, "seiz"),
        datasets.Event(10.0, 12.0, "slow"),    # window 2: 2 s slow, 3 s unannotated → 0
        datasets.Event(15.0, 20.0, "artf"),    # window 3: an unknown label counts as 0
    ])
    labels = datasets.window_labels(index, source, np.array([0.0, 5.0, 10.0, 15.0]), window_s, sfreq)
    assert labels.tolist() == [1, 2, 0, 0]


def test_tusl_uses_first_montage_folder_of_each_session(tmp_path):
    session = tmp_path / "tusl" / "aaaaaaaa" / "s001_2010"
    for montage in ("01_tcp_ar", "02_tcp_le"):
        path = _tuh_file(session / montage, "aaaaaaaa_s001_t000", 10.0, 1)
        write_tuh_csv(path.with_suffix(".csv"), 10.0, [("FP1-F7", 0, 10, "slow")])
    index = datasets.discover("tusl", tmp_path / "tusl", load_recipe("tusl").labels)
    assert [s.path.parent.name for s in index.sources] == ["01_tcp_ar"]


def test_tuar_needs_its_csv(tmp_path):
    _tuh_file(tmp_path / "tuar", "aaaaaaaa_s001_t000", 6.0, 0)
    with pytest.raises(BadInputError, match="annotation"):
        datasets.discover("tuar", tmp_path / "tuar", ["no_artifact", "artifact"])


# ------------------------------------------------------------------------------------------------ Mumtaz


def test_mumtaz_names_conditions_and_channels(tmp_path, cache):
    rng = np.random.default_rng(5)
    root = tmp_path / "mumtaz"
    labels = [f"EEG {name}-LE" for name in MUMTAZ_LABELS] + ["EEG A2-A1", "EEG 23A-23R"]
    for group, number in (("H", 1), ("H", 2), ("MDD", 1), ("MDD", 3)):
        for condition in ("EO", "EC", "TASK"):
            data = synthesize(rng, abnormal=group == "MDD", duration_s=11, fs=256.0, electrodes=labels)
            write_edf(root / f"{group} S{number} {condition}.edf", data, 256.0, labels)
    (root / "notes.edf").write_bytes(b"")  # not a Mumtaz name: reported, not read
    recipe = load_recipe("mumtaz")
    index = datasets.discover("mumtaz", root, recipe.labels)
    assert len(index.sources) == 8  # EO + EC of 4 subjects; TASK dropped
    assert {s.subject for s in index.sources} == {"H-S001", "H-S002", "MDD-S001", "MDD-S003"}
    assert all((s.label == 1) == s.subject.startswith("MDD") for s in index.sources)
    assert any("ignored" in note for note in index.notes)
    split = window_cache.build_split(index, index.sources[:1], recipe, cache_dir=cache)
    assert split.caches[0].channel_names == ["Fp1", "F3", "C3", "P3", "O1", "F7", "T3", "T5", "Fz", "Fp2", "F4",
                                             "C4", "P4", "O2", "F8", "T4", "T6", "Cz", "Pz"]
    assert len(split) == 2  # 11 s → two 5-s windows


def test_mumtaz_keeps_upstreams_split_by_sorted_subject_number(tmp_path):
    """Upstream sorts subjects by number (S2 before S10) and cuts MDD 23/5/rest, H 19/4/4 (spec §3.8): the card's
    test subjects, so a head can be compared with the published numbers on the same people."""
    root = tmp_path / "mumtaz"
    root.mkdir()
    for group, count in (("MDD", 34), ("H", 30)):
        for number in range(1, count + 1):
            for condition in ("EO", "EC"):
                (root / f"{group} S{number} {condition}.edf").write_bytes(b"")
    index = datasets.discover("mumtaz", root, load_recipe("mumtaz").labels)
    split = {s.subject: s.split for s in index.sources}
    by_split = {name: sorted(subject for subject, placed in split.items() if placed == name)
                for name in ("train", "val", "test", "unused")}
    assert by_split["test"] == [f"H-S{n:03d}" for n in range(24, 28)] + [f"MDD-S{n:03d}" for n in range(29, 35)]
    assert by_split["val"] == [f"H-S{n:03d}" for n in range(20, 24)] + [f"MDD-S{n:03d}" for n in range(24, 29)]
    assert len(by_split["train"]) == 23 + 19 and by_split["unused"] == ["H-S028", "H-S029", "H-S030"]
    assignment = datasets.assign_splits(index.sources, seed=123)
    assert all(assignment[subject] == placed for subject, placed in split.items())
    assert any("unused" not in note and "left out" in note for note in index.notes)


# ------------------------------------------------------------------------------------------------ TDBrain


def _tdbrain_tree(root: Path, rows: list[tuple[str, str, str]], seconds: float = 3.0) -> None:
    lines = ["participants_ID\tindication\tEC\tage"]
    rng = np.random.default_rng(2)
    for pid, indication, ec in rows:
        lines.append(f"{pid}\t{indication}\t{ec}\t60")
        folder = root / "derivatives" / pid / "ses-1" / "eeg"
        folder.mkdir(parents=True)
        n = int(seconds * 500)
        data = rng.normal(scale=10.0, size=(n, len(TDBRAIN_COLUMNS)))
        header = ",".join(TDBRAIN_COLUMNS)
        np.savetxt(folder / f"{pid}_ses-1_task-restEC_eeg.csv", data, delimiter=",", header=header, comments="",
                   fmt="%.4f")
    (root / "TDBRAIN_participants_V2.tsv").write_text("\n".join(lines) + "\n")


def test_tdbrain_participants_and_csv(tmp_path, cache):
    root = tmp_path / "tdbrain"
    _tdbrain_tree(root, [("sub-001", "PARKINSON", "1"), ("sub-002", "HEALTHY", "1"), ("sub-003", "MDD", "1"),
                         ("sub-004", "HEALTHY", "0"), ("sub-005", "PARKINSON", "1.0")])
    recipe = load_recipe("tdbrain")
    index = datasets.discover("tdbrain", root, recipe.labels)
    assert [(s.subject, s.label) for s in index.sources] == [("sub-001", 1), ("sub-002", 0), ("sub-005", 1)]
    split = window_cache.build_split(index, index.sources[:1], recipe, cache_dir=cache)
    x, pos, _ = split.batch(np.arange(len(split)))
    assert x.shape == (2, 26, 320)  # 3 s at 500 → 256 Hz: two 1.25-s windows; EOG/EMG columns not used
    assert np.allclose(x.mean(axis=-1), 0, atol=1e-4) and np.allclose(x.std(axis=-1, ddof=1), 1, atol=1e-3)


def test_tdbrain_participant_without_recording_is_reported(tmp_path):
    root = tmp_path / "tdbrain"
    _tdbrain_tree(root, [("sub-001", "PARKINSON", "1"), ("sub-002", "HEALTHY", "1"), ("sub-003", "HEALTHY", "1")],
                  seconds=1.0)
    (root / "derivatives" / "sub-003" / "ses-1" / "eeg" / "sub-003_ses-1_task-restEC_eeg.csv").unlink()
    index = datasets.discover("tdbrain", root, load_recipe("tdbrain").labels)
    assert [s.subject for s in index.sources] == ["sub-001", "sub-002"]
    assert any("sub-003" in note and "left out" in note for note in index.notes)


# -------------------------------------------------------------------------------------------------- APAVA


def _apava_file(path: Path, n_epochs: int, seed: int) -> np.ndarray:
    from scipy.io import savemat

    epochs = np.random.default_rng(seed).normal(scale=20.0, size=(n_epochs, 16, 1280))
    cell = np.empty((3, 1), dtype=object)
    cell[0, 0] = np.array([[1.0]])
    cell[1, 0] = np.array(["label"], dtype=object)
    cell[2, 0] = epochs
    savemat(str(path), {"data": cell})
    return epochs


def test_apava_sorted_ids_labels_and_epochs(tmp_path, cache):
    root = tmp_path / "apava"
    root.mkdir()
    for number in range(1, 5):
        _apava_file(root / f"subject{number:02d}.mat", 2, number)
    recipe = load_recipe("apava")
    index = datasets.discover("apava", root, recipe.labels)
    # spec's AD set {1, 3, ...} applied to sorted order
    assert [(s.key, s.subject, s.label) for s in index.sources] == [
        ("subject01.mat", "S01", 1), ("subject02.mat", "S02", 0), ("subject03.mat", "S03", 1),
        ("subject04.mat", "S04", 0)]
    assert any("os.listdir" in note for note in index.notes)
    split = window_cache.build_split(index, index.sources[:1], recipe, cache_dir=cache)
    assert len(split) == 2  # one window per epoch, never spanning two epochs
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("path,label\nsubject01.mat,healthy\nsubject02.mat,alzheimers\nsubject03.mat,0\n"
                          "subject04.mat,1\n")
    given = datasets.discover("apava", root, recipe.labels, apava_labels=labels_csv)
    assert [s.label for s in given.sources] == [0, 1, 0, 1]


def test_apava_rejects_other_mat(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "apava"
    root.mkdir()
    savemat(str(root / "x.mat"), {"data": np.zeros((3, 3))})
    index = datasets.discover("apava", root, ["healthy", "alzheimers"])
    with pytest.raises(BadInputError, match="APAVA"):
        window_cache.load_windows(index.sources[0], load_recipe("apava"), cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------------------------- manifest


def test_manifest_with_events_and_explicit_splits(tmp_path, cache):
    rng = np.random.default_rng(9)
    paths = []
    for i in range(3):
        data = synthesize(rng, abnormal=False, duration_s=15, fs=250.0)
        paths.append(write_edf(tmp_path / "rec" / f"r{i}.edf", data, 250.0, tuh_labels()))
    manifest = write_manifest(tmp_path / "manifest.csv", [
        {"path": "rec/r0.edf", "label": "normal", "subject": "p1", "split": "train"},
        {"path": "rec/r1.edf", "label": "abnormal", "subject": "p1", "split": "train"},
        {"path": "rec/r2.edf", "label": "", "subject": "p2", "split": "test"},
    ])
    events = tmp_path / "events.csv"
    events.write_text("path,start_s,end_s,label\nrec/r2.edf,5.0,10.0,abnormal\nrec/r0.edf,0,2,abnormal\n")
    recipe = load_recipe("tuab")
    index = datasets.discover("manifest", manifest, recipe.labels, events_csv=events)
    assert [s.split for s in index.sources] == ["train", "train", "test"]
    assert datasets.assign_splits(index.sources, seed=0) == {"p1": "train", "p2": "test"}
    split = window_cache.build_split(index, index.sources, recipe, cache_dir=cache)
    by_recording = [split.labels[split.recording_of == r].tolist() for r in range(3)]
    # r0: 2 s of 'abnormal' in a normal recording is a minority → normal; r2: unlabelled → first label outside
    assert by_recording == [[0, 0, 0], [1, 1, 1], [0, 1, 0]]


def test_manifest_errors_name_the_line(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nmissing.edf,normal\n")
    with pytest.raises(BadInputError, match="line 2"):
        datasets.discover("manifest", manifest, ["normal", "abnormal"])
    edf = write_edf(tmp_path / "a.edf", np.zeros((21, 2500)), 250.0, tuh_labels())
    manifest.write_text(f"path,label\n{edf.name},sideways\n")
    with pytest.raises(BadInputError, match="sideways"):
        datasets.discover("manifest", manifest, ["normal", "abnormal"])


# -------------------------------------------------------------------------------------------------- cache


def test_cache_is_reused_and_keyed_by_content_and_recipe(tmp_path, cache, monkeypatch):
    data = synthesize(np.random.default_rng(0), abnormal=True, duration_s=12)
    path = write_edf(tmp_path / "a.edf", data, 250.0, tuh_labels())
    source = datasets.Source(path, "a", 1)
    recipe = load_recipe("tuab")
    first = window_cache.load_windows(source, recipe, cache_dir=cache)
    assert first.data.shape == (2, 22, 1280) and isinstance(first.data, np.memmap)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and not any(name.endswith((".raw", ".tmp")) for name in entries)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds this recording")

    from lumamba_cli.recording import Recording

    monkeypatch.setattr(Recording, "read", no_decoding)
    second = window_cache.load_windows(source, recipe, cache_dir=cache)
    np.testing.assert_array_equal(np.asarray(first.data), np.asarray(second.data))
    meta = json.loads(next(cache.glob("*.json")).read_text())
    assert meta["recipe_hash"] == recipe.hash and meta["sha256"] == first.sha256
    # another recipe version or other file content must miss the cache
    changed = recipe.with_options(step_s=2.5)
    auto = PreprocessPolicy("auto")
    assert window_cache.cache_key(changed, first.sha256, "edf", auto) != window_cache.cache_key(
        recipe, first.sha256, "edf", auto)
    with pytest.raises(AssertionError, match="decoded again"):
        window_cache.load_windows(source, changed, cache_dir=cache)
    # so must every setting that changes the windows, and another version of the preprocessing code
    key = window_cache.cache_key(recipe, first.sha256, "edf", auto)
    assert key != window_cache.cache_key(recipe, "0" * 64, "edf", auto)
    assert key != window_cache.cache_key(recipe, first.sha256, "edf", PreprocessPolicy("chunked"))
    assert key != window_cache.cache_key(recipe, first.sha256, "edf", auto, dtype="float16")
    assert key != window_cache.cache_key(recipe, first.sha256, "edf", PreprocessPolicy("auto", 120.0, 3600.0))
    monkeypatch.setattr("lumamba_cli.__version__", "0.0.0-other")
    assert key != window_cache.cache_key(recipe, first.sha256, "edf", auto)


def test_mumtaz_accepts_prefixed_file_names(tmp_path):
    """The distributed Mumtaz2016 set has names like '6921143_H S15 EO.edf'; upstream keeps them (it tests
    `"H" in parts[0]`), so dropping them would lose a whole subject without a word."""
    root = tmp_path / "mumtaz"
    root.mkdir()
    for name in ("6921143_H S15 EO.edf", "6921959_H S15 EC.edf", "H S1 EO.edf", "MDD S2 EC.edf", "MDD S2 TASK.edf"):
        (root / name).write_bytes(b"")  # discovery reads names only
    index = datasets.discover("mumtaz", root, load_recipe("mumtaz").labels)
    assert sorted(s.key for s in index.sources) == ["6921143_H S15 EO.edf", "6921959_H S15 EC.edf",
                                                     "H S1 EO.edf", "MDD S2 EC.edf"]
    assert {s.subject for s in index.sources} == {"H-S015", "H-S001", "MDD-S002"}
    assert not any("ignored" in note for note in index.notes)
