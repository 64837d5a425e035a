"""Labelled synthetic EEG recordings, written as real EDF files, for honest learning tests.

Background: per-channel pink (1/f) noise plus a posterior-dominant 8–12 Hz alpha rhythm whose frequency
and amplitude vary by subject. The "abnormal" class additionally carries diffuse 1–3 Hz slowing (a
physiological marker of encephalopathy), shared across channels with a per-channel gain. Amplitudes vary
by subject and by recording, so the classifier cannot key on overall power: after the per-window z-score
only the spectral shape differs between classes.

Layouts: TUAB (``train|eval/normal|abnormal/01_tcp_ar/<subject>_s00N_t000.edf`` with TUH's referential
labels ``EEG FP1-REF`` …) or a manifest CSV (``path,label,subject``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyedflib
from pyedflib import highlevel

TUH_ELECTRODES = [
    "FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2",
    "F7", "F8", "T3", "T4", "T5", "T6", "A1", "A2", "FZ", "CZ", "PZ",
]  # fmt: skip
POSTERIOR = {"O1", "O2", "P3", "P4", "T5", "T6", "PZ"}


def _pink_noise(rng: np.random.Generator, n_channels: int, n_samples: int) -> np.ndarray:
    spectrum = rng.normal(size=(n_channels, n_samples // 2 + 1)) + 1j * rng.normal(size=(n_channels, n_samples // 2 + 1))
    freqs = np.arange(n_samples // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=n_samples, axis=1)
    return noise / noise.std(axis=1, keepdims=True)


def _band_noise(rng: np.random.Generator, n_samples: int, fs: float, low: float, high: float) -> np.ndarray:
    spectrum = rng.normal(size=n_samples // 2 + 1) + 1j * rng.normal(size=n_samples // 2 + 1)
    freqs = np.fft.rfftfreq(n_samples, 1.0 / fs)
    spectrum[(freqs < low) | (freqs > high)] = 0
    signal = np.fft.irfft(spectrum, n=n_samples)
    return signal / (signal.std() + 1e-12)


def synthesize(
    rng: np.random.Generator, *, abnormal: bool, duration_s: float, fs: float = 250.0, electrodes=TUH_ELECTRODES
) -> np.ndarray:
    """(channels, samples) in µV."""
    n = int(round(duration_s * fs))
    t = np.arange(n) / fs
    n_ch = len(electrodes)
    background = 12.0 * rng.uniform(0.7, 1.4) * _pink_noise(rng, n_ch, n)
    alpha_freq = rng.uniform(8.5, 11.5)
    alpha_env = 1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))
    alpha_amp = rng.uniform(8.0, 20.0)
    data = background
    for i, name in enumerate(electrodes):
        gain = 1.0 if name in POSTERIOR else 0.35
        phase = rng.uniform(0, 2 * np.pi)
        data[i] += gain * alpha_amp * alpha_env * np.sin(2 * np.pi * alpha_freq * t + phase)
    if abnormal:
        # diffuse but not identical on every electrode: a shared generator plus independent local slow
        # activity, so the slowing survives the bipolar (neighbour-difference) montage as it does clinically
        shared = _band_noise(rng, n, fs, 1.0, 3.0)
        slow_amp = rng.uniform(25.0, 45.0)
        for i in range(n_ch):
            local = _band_noise(rng, n, fs, 1.0, 3.0)
            data[i] += slow_amp * rng.uniform(0.7, 1.2) * (0.5 * shared + 0.85 * local)
    return data


def write_edf(path: Path, data_uv: np.ndarray, fs: float, labels: list[str], *, physical_uv: float = 1000.0,
              transducer: str = "AgAgCl electrode") -> Path:
    """The tests' one EDF+ writer (pyedflib): (channels, samples) µV at ``fs``, physical range ±``physical_uv``
    (values beyond are clipped just inside it). ``tests/edf_factory.py`` writes bytes independently instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    headers = highlevel.make_signal_headers(
        labels, dimension="uV", sample_frequency=fs, physical_min=-physical_uv, physical_max=physical_uv
    )
    for header in headers:
        header["transducer"] = transducer
    limit = physical_uv * 0.999
    highlevel.write_edf(str(path), np.clip(data_uv, -limit, limit), headers, file_type=pyedflib.FILETYPE_EDFPLUS)
    return path


def noise_edf(path: Path, labels: list[str], sfreq: float = 128, seconds: float = 4, *, seed: int = 1) -> Path:
    """White noise of 20 µV std on every channel: for tests about names, layouts and rates, not about signals."""
    rng = np.random.default_rng(seed)
    return write_edf(path, rng.standard_normal((len(labels), int(sfreq * seconds))) * 20, sfreq, labels,
                     physical_uv=500.0, transducer="")


def tuh_labels(electrodes=TUH_ELECTRODES) -> list[str]:
    return [f"EEG {name}-REF" for name in electrodes]


def make_tuab_tree(
    root: Path,
    *,
    n_train_per_class: int = 6,
    n_eval_per_class: int = 3,
    duration_s: float = 60.0,
    sessions: int = 1,
    seed: int = 0,
    fs: float = 250.0,
) -> list[tuple[Path, int]]:
    """Write a miniature TUAB tree; returns (path, label) for every file. Subject ids are unique per class."""
    rng = np.random.default_rng(seed)
    written = []
    subject_number = 0
    for split, n_per_class in (("train", n_train_per_class), ("eval", n_eval_per_class)):
        for label_name, label in (("normal", 0), ("abnormal", 1)):
            for _ in range(n_per_class):
                subject = f"aaaa{subject_number:04x}"
                subject_number += 1
                for session in range(sessions):
                    data = synthesize(rng, abnormal=bool(label), duration_s=duration_s, fs=fs)
                    path = root / split / label_name / "01_tcp_ar" / f"{subject}_s{session + 1:03d}_t000.edf"
                    write_edf(path, data, fs, tuh_labels())
                    written.append((path, label))
    return written


def write_manifest(path: Path, rows: list[dict]) -> Path:
    fields = [name for name in ("path", "label", "subject", "split") if any(name in row for row in rows)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: row.get(name, "") for name in fields})
    return path


def write_tuh_csv(path: Path, duration_s: float, events: list[tuple[str, float, float, str]]) -> Path:
    """TUH annotation CSV (csv_v1.0.0 style): ``#`` header lines then channel,start_time,stop_time,label,confidence."""
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {path.stem}",
        f"# duration = {duration_s:.4f} secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    lines += [f"{ch},{start:.4f},{stop:.4f},{label},1.0000" for ch, start, stop, label in events]
    path.write_text("\n".join(lines) + "\n")
    return path


# The 22 TCP bipolar pairs (anode, cathode) by TUH's referential names.
TCP_PAIRS = [
    ("FP1", "F7"), ("F7", "T3"), ("T3", "T5"), ("T5", "O1"), ("FP2", "F8"), ("F8", "T4"), ("T4", "T6"), ("T6", "O2"),
    ("A1", "T3"), ("T3", "C3"), ("C3", "CZ"), ("CZ", "C4"), ("C4", "T4"), ("T4", "A2"),
    ("FP1", "F3"), ("F3", "C3"), ("C3", "P3"), ("P3", "O1"), ("FP2", "F4"), ("F4", "C4"), ("C4", "P4"), ("P4", "O2"),
]  # fmt: skip
# temporalis muscle sits under T3 and T4: the electrodes that carry the synthetic muscle bursts
MUSCLE_ELECTRODES = ("T3", "T4")


def make_tuar_tree(
    root: Path, *, n_subjects: int = 10, duration_s: float = 60.0, seed: int = 0, fs: float = 250.0,
    bursts_per_recording: int = 8, first_subject: int = 0,
) -> list[tuple[Path, list[tuple[str, float, float, str]]]]:
    """TUAR-layout tree (``<subject>/01_tcp_ar/<subject>_s001_t000.edf`` + ``.csv``) with muscle bursts.

    Each burst is 20–40 Hz band noise, 4–8× the background, on one electrode for 2.5–4 s; it is annotated
    ``musc`` on every TCP channel that uses that electrode (as an annotator sees it in the bipolar view), so
    the per-channel labels are exactly the channels whose signal carries the burst. Returns (edf, events).
    """
    rng = np.random.default_rng(seed)
    written = []
    index = {name: i for i, name in enumerate(TUH_ELECTRODES)}
    for number in range(first_subject, first_subject + n_subjects):
        subject = f"aaar{number:04x}"
        data = synthesize(rng, abnormal=False, duration_s=duration_s, fs=fs)
        n = data.shape[1]
        events: list[tuple[str, float, float, str]] = []
        # one burst per 5-s slot at most, so bursts never merge into one long artifact
        slots = rng.permutation(int(duration_s // 5))[:bursts_per_recording]
        for slot in sorted(slots):
            length = rng.uniform(2.5, 4.0)
            start = slot * 5.0 + rng.uniform(0.2, 5.0 - length - 0.2)
            electrode = str(rng.choice(MUSCLE_ELECTRODES))
            first, last = int(start * fs), min(n, int((start + length) * fs))
            burst = _band_noise(rng, last - first, fs, 20.0, 40.0) * 12.0 * rng.uniform(4.0, 8.0)
            taper = np.hanning(min(50, last - first))  # 0.1-s on/off ramps, like a real contraction
            burst[: len(taper) // 2] *= taper[: len(taper) // 2]
            burst[-(len(taper) // 2):] *= taper[len(taper) // 2:]
            data[index[electrode], first:last] += burst
            for anode, cathode in TCP_PAIRS:
                if electrode in (anode, cathode):
                    events.append((f"{anode}-{cathode}", start, start + length, "musc"))
        # an annotation on a channel name outside the 22 must be ignored, a seizure label counts for mc
        events.append(("EKG-REF", 0.0, duration_s, "musc"))
        path = root / subject / "01_tcp_ar" / f"{subject}_s001_t000.edf"
        write_edf(path, data, fs, tuh_labels())
        write_tuh_csv(path.with_suffix(".csv"), duration_s, events)
        written.append((path, events))
    return written
