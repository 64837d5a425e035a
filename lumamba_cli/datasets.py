"""Dataset adapters: a dataset as distributed → labelled, preprocessed windows for training and evaluation.

Each adapter finds the recordings of one public dataset in its distributed layout, gives every recording a
subject id, a label (or window-level label events) and, where the dataset's authors fixed one, a split.
:func:`assign_splits` then splits the rest **by subject, seeded**, so the same seed always gives the same
split (upstream's splits were unseeded or depended on file-system order; spec §7.8).

Windows come from the task recipe's own preprocessing and are cached on disk by ``window_cache.py``.

TUAR also has per-channel protocols (spec §3.4): "mc" gives every window a 22-vector of 0/1 (≥30 % rule per
channel) and "mmc" a 22-vector of artifact-type codes 0..5; columns follow the model input rows.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Sequence

import numpy as np

from lumamba_cli.errors import BadInputError, MontageError, UsageError
from lumamba_cli.recording import ArrayRecording, RecordingLike, open_recording



class Dataset(StrEnum):
    """The layouts ``--data`` can have: a public dataset as distributed, or a CSV manifest of any lab's files."""

    tuab = "tuab"
    tuar = "tuar"
    tusl = "tusl"
    mumtaz = "mumtaz"
    tdbrain = "tdbrain"
    apava = "apava"
    manifest = "manifest"


SPLITS = ("train", "val", "test")

# TUAR "bc" (spec §3.4): any of these labels, seizure types included, makes a window positive.
TUAR_ARTIFACT_LABELS = frozenset(
    "chew chew_elec chew_musc cpsz elec elpp eyem eyem_chew eyem_elec eyem_musc eyem_shiv "
    "fnsz gnsz musc musc_elec shiv shiv_elec tcsz".split()
)
TUH_BIPOLAR_NAMES = frozenset(
    "FP1-F7 F7-T3 T3-T5 T5-O1 FP2-F8 F8-T4 T4-T6 T6-O2 A1-T3 T3-C3 C3-CZ CZ-C4 C4-T4 T4-A2 "
    "FP1-F3 F3-C3 C3-P3 P3-O1 FP2-F4 F4-C4 C4-P4 P4-O2".split()
)
# TUAR "mmc" (spec §3.4): per-channel artifact type codes; every other label (seizures included) is 0 none/other.
TUAR_MMC_CODES = {
    "chew": 1, "chew_elec": 1, "chew_musc": 1, "elec": 2,
    "eyem": 3, "eyem_chew": 3, "eyem_elec": 3, "eyem_musc": 3, "eyem_shiv": 3,
    "musc": 4, "musc_elec": 4, "shiv": 5, "shiv_elec": 5,
}
TUAR_MMC_CLASSES = 6
TUAR_MONTAGE_FOLDERS = ("01_tcp_ar", "02_tcp_le")
PER_CHANNEL_RULES = ("coverage_mc", "majority_mmc")
TUSL_CODES = {"bckg": 1, "seiz": 2, "slow": 3}  # anything else, or no annotation, is 0 (spec §3.5)
COVERAGE_THRESHOLD = 0.30

# APAVA (spec §3.6): ids are 1-based positions in upstream's unsorted os.listdir order; we use sorted order.
APAVA_AD_IDS = frozenset({1, 3, 6, 8, 9, 11, 12, 13, 15, 17, 19, 21})
APAVA_CHANNELS = ["C3", "C4", "F3", "F4", "F7", "F8", "Fp1", "Fp2", "O1", "O2", "P3", "P4", "T3", "T4", "T5", "T6"]
APAVA_SFREQ = 256.0
TDBRAIN_SFREQ = 500.0
TDBRAIN_EOG = {"VPVA", "VNVB"}
TDBRAIN_EMG = {"HPHL", "HNHR", "Erbs", "OrbOcc", "Mass"}


@dataclass(frozen=True)
class Event:
    """A labelled time span (true seconds from the recording start) used for window-level labels."""

    start_s: float
    end_s: float
    label: str
    channel: str | None = None


@dataclass
class Source:
    """One recording of a dataset, before preprocessing."""

    path: Path
    subject: str
    label: int | None = None  # recording-level class index into recipe.labels
    split: str | None = None  # fixed by the dataset (e.g. TUAB eval = test); None = assign_splits decides
    events: list[Event] | None = None
    reader: str = "edf"  # "edf" | "tdbrain-csv" | "apava-mat"
    key: str = ""  # stable id for reports: the path relative to the dataset root

    def to_json(self) -> dict:
        return {"key": self.key, "subject": self.subject, "label": self.label, "split": self.split}


@dataclass
class DatasetIndex:
    name: str
    root: Path
    sources: list[Source]
    label_names: list[str]
    window_rule: str  # "recording" | "coverage" (TUAR bc) | "majority" (TUSL, manifest events) | PER_CHANNEL_RULES
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- discovery


def check_request(dataset: Dataset, root: Path) -> None:
    """Cheap checks of --dataset/--data, done before anything slow (encoder lookup, decoding)."""
    Dataset(dataset)
    if not Path(root).exists():
        raise BadInputError("data path does not exist", path=root)


def discover(
    dataset: Dataset,
    root: Path,
    label_names: Sequence[str],
    *,
    events_csv: Path | None = None,
    apava_labels: Path | None = None,
    classification_type: str = "bc",
) -> DatasetIndex:
    """Find and label the recordings of ``dataset`` under ``root`` (a folder, or a CSV for ``manifest``).

    ``classification_type`` picks TUAR's protocol: "bc" (one label per window), "mc" (22 binary labels, one per
    bipolar channel) or "mmc" (22 artifact-type codes); other datasets accept single-label tasks only."""
    dataset = Dataset(dataset)
    root = Path(root)
    if not root.exists():
        raise BadInputError("data path does not exist", path=root)
    label_names = list(label_names)
    if dataset == "tuab":
        index = _discover_tuab(root, label_names)
    elif dataset == "tuar":
        index = _discover_tuh_csv(root, label_names, "tuar", classification_type)
    elif dataset == "tusl":
        index = _discover_tuh_csv(root, label_names, "tusl")
    elif dataset == "mumtaz":
        index = _discover_mumtaz(root, label_names)
    elif dataset == "tdbrain":
        index = _discover_tdbrain(root, label_names)
    elif dataset == "apava":
        index = _discover_apava(root, label_names, apava_labels)
    else:
        index = _discover_manifest(root, label_names, events_csv)
    if classification_type in ("mc", "mmc") and index.window_rule not in PER_CHANNEL_RULES:
        raise UsageError(f"per-channel ({classification_type}) labels exist only for --dataset tuar, not {dataset!r}")
    if not index.sources:
        raise BadInputError(f"no {dataset} recordings found (see `lumamba train --help` for the expected layout)", path=root)
    return index


def _label_index(label_names: list[str], name: str, where: Path | str) -> int:
    lowered = [n.lower() for n in label_names]
    text = str(name).strip()
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if re.fullmatch(r"\d+", text) and int(text) < len(label_names):
        return int(text)
    raise BadInputError(f"label {text!r} is not one of the task's labels {label_names}", path=where)


def _require_labels(label_names: list[str], meaning: list[str], dataset: str) -> list[int]:
    """Class indices for a dataset's classes, matched by position: the recipe orders its labels as upstream
    numbered them (e.g. TUAB normal 0 / abnormal 1), whatever it calls them."""
    if len(label_names) != len(meaning):
        raise UsageError(
            f"dataset {dataset!r} has {len(meaning)} classes ({', '.join(meaning)}); this task has "
            f"{len(label_names)} labels {label_names}: pick the matching --task"
        )
    return list(range(len(meaning)))


def _discover_tuab(root: Path, label_names: list[str]) -> DatasetIndex:
    normal, abnormal = _require_labels(label_names, ["normal", "abnormal"], "tuab")
    sources = []
    for split_dir, split in (("train", None), ("eval", "test")):
        for class_dir, label in (("normal", normal), ("abnormal", abnormal)):
            folder = root / split_dir / class_dir / "01_tcp_ar"
            for path in sorted(folder.glob("*.edf")):
                sources.append(
                    Source(path, _tuh_subject(path), label, split, key=str(path.relative_to(root)))
                )
    notes = ["TUAB: eval/ is the test set; train/ is split 80/20 by subject into train/val (seeded)"]
    return DatasetIndex("tuab", root, sources, label_names, "recording", notes)


def _tuh_subject(path: Path) -> str:
    return path.name.split("_", 1)[0]


def read_tuh_csv(path: Path) -> list[Event]:
    """TUH annotation CSV: ``#`` comment lines, then ``channel,start_time,stop_time,label,confidence``."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read annotation CSV ({exc})", path=path) from None
    if not lines:
        return []
    reader = csv.DictReader(lines)
    needed = {"channel", "start_time", "stop_time", "label"}
    if not needed <= set(reader.fieldnames or []):
        raise BadInputError(f"annotation CSV lacks columns {sorted(needed - set(reader.fieldnames or []))}", path=path)
    events = []
    for row_number, row in enumerate(reader, start=2):
        try:
            start, stop = float(row["start_time"]), float(row["stop_time"])
        except ValueError:
            raise BadInputError(f"line {row_number}: start/stop time is not a number", path=path) from None
        if stop < start:
            raise BadInputError(f"line {row_number}: stop_time before start_time", path=path)
        events.append(Event(start, stop, row["label"].strip().lower(), row["channel"].strip().upper()))
    return events


def _discover_tuh_csv(
    root: Path, label_names: list[str], dataset: str, classification_type: str = "bc"
) -> DatasetIndex:
    edfs = sorted(p for p in root.rglob("*.edf"))
    if dataset == "tuar" and classification_type == "mc":
        rule = "coverage_mc"
        if {name.upper() for name in label_names} != TUH_BIPOLAR_NAMES or len(label_names) != 22:
            raise UsageError("the tuar mc protocol needs a task whose 22 labels are the TCP bipolar channel names")
        notes = ["TUAR mc: per channel, label 1 when ≥30 % of the window's samples lie in an artifact/seizure "
                 "annotation on that channel (annotations on other channel names are ignored); split by subject "
                 "here (upstream split by file)"]
    elif dataset == "tuar" and classification_type == "mmc":
        rule = "majority_mmc"
        if len(label_names) != TUAR_MMC_CLASSES:
            raise UsageError("the tuar mmc protocol needs a task with 6 labels (none, chew, elec, eyem, musc, shiv)")
        notes = ["TUAR mmc: per channel, the most frequent artifact-type code of the window when it covers ≥30 % of "
                 "the samples, else 0 (none/other); seizure labels count as 0; split by subject here"]
    elif dataset == "tuar":
        rule = "coverage"
        if len(label_names) != 2:
            raise UsageError("the tuar adapter implements the binary (bc) protocol: the task must have 2 labels")
        notes = ["TUAR bc: a window is positive when ≥30 % of its samples lie in an artifact/seizure annotation on "
                 "one of the 22 TCP channels; split by subject here (upstream split by file)"]
    else:
        rule = "majority"
        _require_labels(label_names, ["none", "bckg", "seiz", "slow"], "tusl")
        # TUSL: each session uses only its first montage sub-folder (spec §3.5)
        montage_folder = re.compile(r"^\d+_tcp_")
        first_montage: dict[Path, str] = {}
        for path in edfs:
            if montage_folder.match(path.parent.name):
                session = path.parent.parent
                first_montage[session] = min(first_montage.get(session, path.parent.name), path.parent.name)
        edfs = [p for p in edfs
                if not montage_folder.match(p.parent.name) or first_montage[p.parent.parent] == p.parent.name]
        notes = ["TUSL: window label = majority per-sample label (0 none, 1 bckg, 2 seiz, 3 slow; ties to the smaller)"]
    if dataset == "tuar":
        # TUAR: upstream reads the 01_tcp_ar and 02_tcp_le folders only (spec §3.4); 03_tcp_ar_a recordings have
        # no A1/A2, so they could never give the 22 TCP channels and would only show up as "skipped" later
        montage_folder = re.compile(r"^\d+_tcp_")
        other = [p for p in edfs if montage_folder.match(p.parent.name) and p.parent.name not in TUAR_MONTAGE_FOLDERS]
        if other:
            edfs = [p for p in edfs if p not in set(other)]
            notes.append(f"{len(other)} recording(s) in other montage folders "
                         f"({', '.join(sorted({p.parent.name for p in other}))}) left out, as upstream")
    sources = []
    for path in edfs:
        annotation = path.with_suffix(".csv")
        if not annotation.exists():
            raise BadInputError(f"no annotation file {annotation.name} next to the recording", path=path)
        sources.append(Source(path, _tuh_subject(path), None, None, read_tuh_csv(annotation),
                              key=str(path.relative_to(root))))
    return DatasetIndex(dataset, root, sources, label_names, rule, notes)


# Some distributed files carry a download-id prefix ("6921143_H S15 EO.edf"); upstream accepts them (it tests
# `"H" in parts[0]`), and skipping them would silently drop a subject.
_MUMTAZ_NAME = re.compile(r"^(?:\d+_)?(H|MDD)\s+S\s*(\d+)\s+(EO|EC|TASK)\s*\.edf$", re.IGNORECASE)


def _discover_mumtaz(root: Path, label_names: list[str]) -> DatasetIndex:
    healthy, mdd = _require_labels(label_names, ["healthy", "mdd"], "mumtaz")
    sources = []
    skipped = 0
    for path in sorted(root.rglob("*.edf")):
        match = _MUMTAZ_NAME.match(path.name)
        if not match:
            skipped += 1
            continue
        group, number, condition = match.group(1).upper(), int(match.group(2)), match.group(3).upper()
        if condition == "TASK":  # upstream uses eyes-open and eyes-closed only
            continue
        label = mdd if group == "MDD" else healthy
        sources.append(Source(path, f"{group}-S{number:03d}", label, None, key=str(path.relative_to(root))))
    # upstream's split is reproducible (subjects sorted by number) and defines the card's test set: keep it, so a
    # head can be compared with the published numbers on the same subjects (spec §3.8)
    split_of: dict[str, str] = {}
    for group, cuts in (("MDD", (23, 28, None)), ("H", (19, 23, 27))):
        numbers = sorted({int(s.subject.split("-S")[1]) for s in sources if s.subject.startswith(group + "-")})
        train_end, val_end, test_end = cuts
        for rank, number in enumerate(numbers):
            placed = ("train" if rank < train_end else "val" if rank < val_end
                      else "test" if test_end is None or rank < test_end else "unused")
            split_of[f"{group}-S{number:03d}"] = placed
    for source in sources:
        source.split = split_of[source.subject]
    unused = sorted({s.subject for s in sources if s.split == "unused"})
    notes = ["Mumtaz2016: EO and EC recordings only; upstream's split by sorted subject number (MDD 23/5/rest, "
             "H 19/4/4)"]
    if unused:
        notes.append(f"{len(unused)} healthy subject(s) beyond upstream's 27 left out of every split, as upstream "
                     f"({', '.join(unused)})")
    if skipped:
        notes.append(f"{skipped} .edf files ignored: names not of the form '<H|MDD> S<n> <EO|EC|TASK>.edf'")
    return DatasetIndex("mumtaz", root, sources, label_names, "recording", notes)


def _discover_tdbrain(root: Path, label_names: list[str]) -> DatasetIndex:
    healthy, parkinson = _require_labels(label_names, ["healthy", "parkinson"], "tdbrain")
    participants_file = next(iter(sorted(root.rglob("TDBRAIN_participants_V2.tsv"))), None)
    if participants_file is None:
        raise BadInputError("TDBRAIN_participants_V2.tsv not found", path=root)
    import pandas as pd

    table = pd.read_csv(participants_file, sep="\t", dtype=str)
    needed = {"participants_ID", "indication", "EC"}
    if not needed <= set(table.columns):
        raise BadInputError(f"participants table lacks columns {sorted(needed - set(table.columns))}", path=participants_file)
    sources = []
    seen = set()
    missing: list[str] = []
    for _, row in table.iterrows():
        pid, indication = str(row["participants_ID"]).strip(), str(row["indication"]).strip().upper()
        if pid in seen or indication not in ("PARKINSON", "HEALTHY"):
            continue
        try:
            eyes_closed = float(row["EC"]) == 1.0
        except (TypeError, ValueError):
            eyes_closed = False
        if not eyes_closed:
            continue
        seen.add(pid)
        path = root / "derivatives" / pid / "ses-1" / "eeg" / f"{pid}_ses-1_task-restEC_eeg.csv"
        if not path.exists():
            missing.append(pid)
            continue
        label = parkinson if indication == "PARKINSON" else healthy
        sources.append(Source(path, pid, label, None, reader="tdbrain-csv", key=str(path.relative_to(root))))
    sources.sort(key=lambda s: s.subject)
    notes = ["TDBrain: PARKINSON vs HEALTHY with EC == 1, session 1 eyes-closed CSV at 500 Hz; subjects sorted "
             "(upstream's order came from a Python set and was not reproducible)"]
    if missing:
        # a selected participant without its recording changes the cohort: say so rather than shrink it silently
        notes.append(f"{len(missing)} selected participant(s) have no session-1 eyes-closed CSV and are left out "
                     f"(e.g. {missing[0]})")
    return DatasetIndex("tdbrain", root, sources, label_names, "recording", notes)


def _discover_apava(root: Path, label_names: list[str], labels_file: Path | None) -> DatasetIndex:
    healthy, ad = _require_labels(label_names, ["healthy", "alzheimer"], "apava")
    files = sorted(root.glob("*.mat"))
    notes = [
        "APAVA: upstream numbered subjects in unsorted os.listdir order, so its AD labels depended on the file "
        "system; here subjects are numbered in sorted file-name order"
    ]
    given: dict[str, int] = {}
    if labels_file is not None:
        with open(labels_file, newline="") as handle:
            for row in csv.DictReader(handle):
                given[Path(row["path"]).name] = _label_index(label_names, row["label"], labels_file)
        notes.append(f"labels from {labels_file.name}")
    else:
        notes.append("labels from the spec's AD id set {1,3,6,8,9,11,12,13,15,17,19,21} applied to sorted order; "
                     "pass --labels to give them explicitly")
    sources = []
    for number, path in enumerate(files, start=1):
        if labels_file is not None:
            if path.name not in given:
                raise BadInputError(f"{path.name} has no label in the labels file", path=labels_file)
            label = given[path.name]
        else:
            label = ad if number in APAVA_AD_IDS else healthy
        sources.append(Source(path, f"S{number:02d}", label, None, reader="apava-mat", key=path.name))
    return DatasetIndex("apava", root, sources, label_names, "recording", notes)


def _discover_manifest(manifest: Path, label_names: list[str], events_csv: Path | None) -> DatasetIndex:
    if manifest.is_dir():
        raise BadInputError("--dataset manifest expects a CSV file (path,label[,subject][,split])", path=manifest)
    base = manifest.parent
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "path" not in rows[0]:
        raise BadInputError("manifest must have a header with at least a 'path' column", path=manifest)
    events: dict[str, list[Event]] = defaultdict(list)
    if events_csv is not None:
        with open(events_csv, newline="") as handle:
            for n, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    start, end = float(row["start_s"]), float(row["end_s"])
                except (KeyError, ValueError):
                    raise BadInputError(f"line {n}: needs numeric start_s and end_s", path=events_csv) from None
                label = label_names[_label_index(label_names, row["label"], events_csv)]
                events[str((base / row["path"]).resolve())].append(Event(start, end, label))
    sources = []
    for n, row in enumerate(rows, start=2):
        path = (base / row["path"]).resolve()
        if not path.exists():
            raise BadInputError(f"line {n}: recording {row['path']} does not exist", path=manifest)
        label_text = (row.get("label") or "").strip()
        label = _label_index(label_names, label_text, manifest) if label_text else None
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            raise BadInputError(f"line {n}: split {split!r} is not one of {SPLITS}", path=manifest)
        own_events = events.get(str(path))
        if label is None and not own_events:
            raise BadInputError(f"line {n}: {row['path']} has neither a label nor events", path=manifest)
        subject = (row.get("subject") or "").strip() or path.stem
        sources.append(Source(path, subject, label, split, own_events, key=row["path"]))
    rule = "majority" if events else "recording"
    notes = []
    if events:
        notes.append("window label = majority label of its samples; unannotated samples take the recording's label "
                     "(or the task's first label when the manifest gives none)")
    return DatasetIndex("manifest", manifest, sources, label_names, rule, notes)


# ------------------------------------------------------------------------------------------------ splits


def assign_splits(
    sources: list[Source], *, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.15
) -> dict[str, str]:
    """Subject → split. Subjects already placed by the dataset keep their split; the rest are shuffled with
    ``seed`` within each class (a subject's class = its most frequent recording label) so every split sees
    every class. When the dataset fixes a test set, the remainder is split train/val only."""
    fixed: dict[str, str] = {}
    for source in sources:
        if source.split is not None:
            # a subject with any recording in the fixed test set goes wholly to test: never train on a test subject
            if fixed.get(source.subject) != "test":
                fixed[source.subject] = source.split
    has_fixed_test = any(s.split == "test" for s in sources)
    free_subjects: dict[str, list[int]] = defaultdict(list)
    for source in sources:
        if source.subject not in fixed:
            free_subjects[source.subject].append(-1 if source.label is None else source.label)
    by_class: dict[int, list[str]] = defaultdict(list)
    for subject in sorted(free_subjects):
        labels = Counter(free_subjects[subject])
        by_class[min(labels, key=lambda k: (-labels[k], k))].append(subject)
    rng = np.random.default_rng(seed)
    assignment = dict(fixed)
    test_share = 0.0 if has_fixed_test else test_fraction
    for label in sorted(by_class):
        subjects = list(rng.permutation(by_class[label]))
        n = len(subjects)
        n_test = int(round(n * test_share))
        n_val = int(round(n * val_fraction))
        # keep at least one subject of each class for training and validation, and for testing when possible
        if n >= 2:
            n_val = max(n_val, 1)
        if n >= 3 and test_share > 0:
            n_test = max(n_test, 1)
        n_test = min(n_test, max(0, n - 2))
        n_val = min(n_val, max(0, n - n_test - 1))
        for i, subject in enumerate(subjects):
            assignment[str(subject)] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return assignment


# ------------------------------------------------------------------------------------------------ labels


def window_labels(
    index: DatasetIndex, source: Source, start_s: np.ndarray, window_s: float, sfreq: float,
    channel_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Class index of every window of ``source`` (windows start at ``start_s``, true seconds): (N,), or (N, 22)
    for the per-channel TUAR protocols, whose columns follow ``channel_names`` (the model input rows)."""
    n = len(start_s)
    if index.window_rule == "recording" or (index.window_rule == "majority" and not source.events
                                           and source.label is not None):
        if source.label is None:
            raise BadInputError("recording has no label", path=source.path)
        return np.full(n, source.label, dtype=np.int64)
    n_samples = int(round(window_s * sfreq))
    times = start_s[:, None] + np.arange(n_samples)[None, :] / sfreq  # (N, T) sample times
    if index.window_rule in PER_CHANNEL_RULES:
        return _per_channel_labels(index, source, times, channel_names)
    if index.window_rule == "coverage":
        covered = np.zeros(times.shape, dtype=bool)
        for event in source.events or []:
            if event.label in TUAR_ARTIFACT_LABELS and (event.channel or "") in TUH_BIPOLAR_NAMES:
                covered |= (times >= event.start_s) & (times < event.end_s)
        return (covered.mean(axis=1) >= COVERAGE_THRESHOLD).astype(np.int64)
    # majority of per-sample labels, ties to the smaller class index
    if index.name == "tusl":
        codes = np.zeros(times.shape, dtype=np.int64)
        for event in source.events or []:
            code = TUSL_CODES.get(event.label, 0)
            codes[(times >= event.start_s) & (times < event.end_s)] = code
    else:
        default = source.label if source.label is not None else 0
        codes = np.full(times.shape, default, dtype=np.int64)
        lowered = [name.lower() for name in index.label_names]
        for event in source.events or []:
            codes[(times >= event.start_s) & (times < event.end_s)] = lowered.index(event.label.lower())
    n_classes = len(index.label_names)
    counts = np.stack([(codes == k).sum(axis=1) for k in range(n_classes)], axis=1)
    return counts.argmax(axis=1).astype(np.int64)  # argmax returns the first maximum: ties → smaller


def _per_channel_labels(index: DatasetIndex, source: Source, times: np.ndarray,
                        channel_names: Sequence[str] | None) -> np.ndarray:
    """(N, 22) labels, one column per model input row: mc 0/1 per channel, mmc codes 0..5 per channel."""
    rows = [name.upper() for name in channel_names] if channel_names is not None else None
    if index.window_rule == "coverage_mc":
        channels = [name.upper() for name in index.label_names]
        if rows is not None and rows != channels:
            # the head's output k is trained against column k: outputs must follow the data rows' order
            raise MontageError(f"model input rows {rows} do not follow the task's channel labels", path=source.path)
    else:
        if rows is None:
            raise ValueError("mmc labels need the model input rows' channel names")
        channels = rows
    n_windows, n_samples = times.shape
    out = np.zeros((n_windows, len(channels)), dtype=np.int64)
    by_channel: dict[str, list[Event]] = defaultdict(list)
    for event in source.events or []:
        if (event.channel or "") in TUH_BIPOLAR_NAMES:
            by_channel[event.channel].append(event)
    for column, channel in enumerate(channels):
        events = by_channel.get(channel, [])
        if not events:
            continue
        if index.window_rule == "coverage_mc":
            covered = np.zeros(times.shape, dtype=bool)
            for event in events:
                if event.label in TUAR_ARTIFACT_LABELS:
                    covered |= (times >= event.start_s) & (times < event.end_s)
            out[:, column] = covered.mean(axis=1) >= COVERAGE_THRESHOLD
        else:
            codes = np.zeros(times.shape, dtype=np.int64)
            for event in events:  # later annotations overwrite earlier ones where they overlap
                codes[(times >= event.start_s) & (times < event.end_s)] = TUAR_MMC_CODES.get(event.label, 0)
            counts = np.stack([(codes == k).sum(axis=1) for k in range(TUAR_MMC_CLASSES)], axis=1)
            winner = counts.argmax(axis=1)  # ties → the smaller code
            # the 30 % test applies to every code, 0 included: a winner below it falls back to 0 anyway
            share = counts[np.arange(n_windows), winner] / n_samples
            out[:, column] = np.where(share >= COVERAGE_THRESHOLD, winner, 0)
    return out


# --------------------------------------------------------------------------------- reading a dataset's files


def open_source(source: Source) -> RecordingLike:
    """The recording behind ``source``: an EDF/BDF file, or a TDBrain CSV / APAVA .mat held in memory."""
    if source.reader == "tdbrain-csv":
        return _tdbrain_recording(source.path)
    if source.reader == "apava-mat":
        return _apava_recording(source.path)
    return open_recording(source.path)


def _tdbrain_recording(path: Path) -> ArrayRecording:
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for malformed CSVs
        raise BadInputError(f"cannot read TDBrain CSV ({exc})", path=path) from None
    kinds = {name: "eog" if name in TDBRAIN_EOG else "emg" if name in TDBRAIN_EMG else "eeg" for name in table.columns}
    numeric = [c for c in table.columns if np.issubdtype(table[c].dtype, np.number)]
    data = table[numeric].to_numpy(dtype=np.float64).T
    return ArrayRecording(path, data, TDBRAIN_SFREQ, numeric, [kinds[c] for c in numeric], reader="tdbrain-csv",
                          file_size=path.stat().st_size)


def _unwrap_cell(value) -> np.ndarray:
    """MATLAB cells load as nested 1-element object arrays; peel them down to the numeric array."""
    value = np.asarray(value)
    while value.dtype == object and value.size == 1:
        value = np.asarray(value.item())
    return np.asarray(value, dtype=np.float64)


def _apava_recording(path: Path) -> ArrayRecording:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as exc:
        raise BadInputError(f"cannot read .mat file ({exc})", path=path) from None
    # upstream reads data[2][0][j]; the variable is 'data' in the distributed files, else the only one there
    payload = mat.get("data", next((v for k, v in mat.items() if not k.startswith("__")), None))
    try:
        container = payload[2][0]
        epochs = [_unwrap_cell(container[j]) for j in range(len(container))]
    except (TypeError, IndexError, ValueError):
        raise BadInputError("not an APAVA subject file: data[2][0] holds no epochs", path=path) from None
    if not epochs or any(e.shape != (16, 1280) for e in epochs):
        raise BadInputError("APAVA epochs must be (16, 1280) arrays at 256 Hz", path=path)
    # each epoch is its own segment: upstream filters every 5-s epoch separately (spec §3.6)
    data = np.concatenate(epochs, axis=1)
    lengths = [e.shape[1] for e in epochs]
    return ArrayRecording(path, data, APAVA_SFREQ, APAVA_CHANNELS, ["eeg"] * 16, reader="apava-mat",
                          segment_lengths=lengths, file_size=path.stat().st_size)


