"""Model-free signal quality, per window and channel, on the raw data (unfiltered, native rate, µV).

A screening score is only as good as its input: these checks say which windows do not look like scalp EEG, so a
report can flag (not silently score) them. Metrics, per window and channel:

``std_uv``
    standard deviation; below ``flat_std_uv`` the channel is **flat** (disconnected electrode, dead amplifier).
``ptp_uv``
    peak-to-peak; above ``extreme_ptp_uv`` it is **extreme** (movement, electrode pop, saturation).
``clip_fraction``
    fraction of samples within half a digital step of the channel's physical minimum or maximum (from the file
    header); above ``clip_fraction`` the channel is **clipping** (the amplifier's range was exceeded).
``line_ratio``
    power within ±1 Hz of the mains frequency / power in 1–45 Hz; above ``line_noise_ratio`` it is **line_noise**.
    The mains frequency is detected (50 vs 60 Hz, whichever carries more power in the first chunk) unless given.
``hf_ratio``
    power in 30–min(100, Nyquist − 5) Hz, mains ±1 Hz (and harmonics) excluded, / power in 1–30 Hz; above
    ``muscle_ratio`` it is **muscle** (EMG).

A window passes (``qc_pass``) when at most ``max_bad_channel_fraction`` of its channels carry a flag; ``qc_flags``
names each flag with its channel count, e.g. ``["flat 2/21", "line_noise 21/21"]``.

Default thresholds were chosen on real recordings and synthetic faults (``tests/test_qc.py``); they are
deliberately lenient: a flag means "look at this", not "this is bad EEG". On the clinical absence recording in
``../shared/data`` every window of its three seizures and of hyperventilation passes; 14 of its 362 windows fail,
all for muscle on several channels while the patient is awake and moving (after ~900 s: "stretching",
"counting out loud", "sitting up").
Work is vectorised over channels and windows and bounded by one chunk of ``chunk_s`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lumamba_cli.channels import ChannelInfo
from lumamba_cli.errors import MontageError, UsageError
from lumamba_cli.recording import RecordingLike

FLAG_NAMES = ("flat", "clipping", "extreme", "line_noise", "muscle")
# A spectrum and a standard deviation need a few samples per window; slower EEG cannot be checked.
MIN_WINDOW_SAMPLES = 8


class QCThresholds(BaseModel):
    """QC thresholds (documented defaults; override any of them from a YAML/JSON mapping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flat_std_uv: float = Field(0.5, gt=0, description="std below this (µV) → flat")
    extreme_ptp_uv: float = Field(1500.0, gt=0, description="peak-to-peak above this (µV) → extreme")
    clip_fraction: float = Field(0.01, ge=0, le=1, description="fraction of samples at the physical range → clipping")
    line_noise_ratio: float = Field(
        1.0, gt=0, description="power at mains ±1 Hz / power 1–45 Hz above this → line_noise"
    )
    muscle_ratio: float = Field(
        1.0, gt=0, description="power 30–min(100, Nyquist−5) Hz / power 1–30 Hz above this → muscle"
    )
    mains_hz: Literal["auto", 50, 60] = Field("auto", description="mains frequency, or auto-detect 50/60 Hz")
    max_bad_channel_fraction: float = Field(
        0.2, ge=0, le=1, description="a window fails when more than this fraction of its channels is flagged"
    )

    @classmethod
    def from_file(cls, path: str | Path) -> QCThresholds:
        """Thresholds from a YAML or JSON mapping; keys left out keep their defaults, unknown keys are refused."""
        import yaml
        from pydantic import ValidationError

        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            return cls.model_validate(values)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise UsageError(f"invalid QC thresholds: {str(exc).splitlines()[0]}", path=path) from exc


CHANNEL_METRICS = ("ptp_uv", "line_ratio", "hf_ratio")  # what reports keep per window and channel


@dataclass(frozen=True)
class QCWindow:
    """The verdict on one window: whether it passes, each flag with its channel count, the flagged channels, and
    per channel the metrics reports keep (``CHANNEL_METRICS``)."""

    start_s: float
    segment: int
    passed: bool
    flags: list[str]  # e.g. ["flat 2/21", "muscle 7/21"]; empty when clean
    bad_channels: dict[str, list[str]]  # flag → channel names
    channel_metrics: dict[str, np.ndarray]  # metric → (C,), in the block's channel order

    def values(self) -> dict[str, float]:
        """The window's numbers for a table: largest peak-to-peak, median line-noise and high-frequency ratios,
        number of flagged channels."""
        if not self.channel_metrics:
            return {"ptp_max_uv": float("nan"), "line_ratio_median": float("nan"), "hf_ratio_median": float("nan"),
                    "bad_channels": 0}
        return {"ptp_max_uv": float(np.max(self.channel_metrics["ptp_uv"])),
                "line_ratio_median": float(np.median(self.channel_metrics["line_ratio"])),
                "hf_ratio_median": float(np.median(self.channel_metrics["hf_ratio"])),
                "bad_channels": len({c for chans in self.bad_channels.values() for c in chans})}


@dataclass
class QCBlock:
    """QC of consecutive windows of one segment."""

    start_s: np.ndarray  # (N,) true seconds from the recording start
    segment: np.ndarray  # (N,)
    channel_names: list[str]
    metrics: dict[str, np.ndarray]  # name → (N, C)
    flags: dict[str, np.ndarray]  # flag name → (N, C) bool
    qc_pass: np.ndarray  # (N,) bool
    qc_flags: list[list[str]]  # per window
    mains_hz: float | None
    window_s: float

    def __len__(self) -> int:
        return int(self.start_s.shape[0])

    def windows(self) -> list[QCWindow]:
        out = []
        for k in range(len(self)):
            bad = {name: [self.channel_names[c] for c in np.flatnonzero(self.flags[name][k])] for name in FLAG_NAMES}
            out.append(QCWindow(float(self.start_s[k]), int(self.segment[k]), bool(self.qc_pass[k]),
                                list(self.qc_flags[k]), {n: chs for n, chs in bad.items() if chs},
                                {name: self.metrics[name][k] for name in CHANNEL_METRICS}))
        return out


def _band_power(psd: np.ndarray, freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (freqs >= lo) & (freqs <= hi)
    return psd[..., sel].sum(axis=-1)


def spectra(windows: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Hann-tapered periodogram of each (window, channel): the taper keeps a strong low-frequency component from
    leaking into the 30+ Hz and mains bands."""
    n = windows.shape[-1]
    taper = np.hanning(n)
    detrended = windows - windows.mean(axis=-1, keepdims=True)
    psd = np.abs(np.fft.rfft(detrended * taper, axis=-1)) ** 2
    return psd, np.fft.rfftfreq(n, 1.0 / sfreq)


def detect_mains(psd: np.ndarray, freqs: np.ndarray) -> float | None:
    """50 or 60 Hz, whichever has more power (±1 Hz) summed over windows and channels; None if neither fits."""
    candidates = [f for f in (50.0, 60.0) if f + 1 < freqs[-1]]
    if not candidates:
        return None
    power = {f: float(_band_power(psd, freqs, f - 1, f + 1).sum()) for f in candidates}
    return max(power, key=power.get)


def window_metrics(
    windows: np.ndarray,
    sfreq: float,
    clip_low: np.ndarray,
    clip_high: np.ndarray,
    mains_hz: float | None,
) -> dict[str, np.ndarray]:
    """Metrics of (N, C, T) µV windows; ``clip_low/high`` (C,) are the values at or beyond which a sample is clipped."""
    psd, freqs = spectra(windows, sfreq)
    tiny = np.finfo(np.float64).tiny
    eeg_band = _band_power(psd, freqs, 1.0, 45.0)
    low_band = _band_power(psd, freqs, 1.0, 30.0)
    hf_top = min(100.0, sfreq / 2 - 5.0)
    metrics = {
        "std_uv": windows.std(axis=-1, ddof=1),
        "ptp_uv": np.ptp(windows, axis=-1),
        "clip_fraction": ((windows <= clip_low[:, None]) | (windows >= clip_high[:, None])).mean(axis=-1),
        "line_ratio": (
            _band_power(psd, freqs, mains_hz - 1, mains_hz + 1) / np.maximum(eeg_band, tiny)
            if mains_hz is not None
            else np.zeros(windows.shape[:2])
        ),
        "hf_ratio": (
            _high_band(psd, freqs, hf_top, mains_hz) / np.maximum(low_band, tiny)
            if hf_top > 30.0
            else np.zeros(windows.shape[:2])
        ),
    }
    return metrics


def _high_band(psd: np.ndarray, freqs: np.ndarray, top: float, mains_hz: float | None) -> np.ndarray:
    """30 Hz–``top`` power without the mains band and its harmonics: hum is line noise, not muscle."""
    sel = (freqs >= 30.0) & (freqs <= top)
    if mains_hz is not None:
        for harmonic in np.arange(mains_hz, top + 1.0, mains_hz):
            sel &= np.abs(freqs - harmonic) > 1.0
    return psd[..., sel].sum(axis=-1)


def flag(metrics: dict[str, np.ndarray], thresholds: QCThresholds) -> dict[str, np.ndarray]:
    flat = metrics["std_uv"] < thresholds.flat_std_uv
    # A flat channel has no meaningful spectrum: its ratios are noise over noise, so they do not flag.
    return {
        "flat": flat,
        "clipping": metrics["clip_fraction"] > thresholds.clip_fraction,
        "extreme": metrics["ptp_uv"] > thresholds.extreme_ptp_uv,
        "line_noise": (metrics["line_ratio"] > thresholds.line_noise_ratio) & ~flat,
        "muscle": (metrics["hf_ratio"] > thresholds.muscle_ratio) & ~flat,
    }


def summarise(flags: dict[str, np.ndarray], thresholds: QCThresholds) -> tuple[np.ndarray, list[list[str]]]:
    n_windows, n_channels = next(iter(flags.values())).shape
    any_flag = np.zeros((n_windows, n_channels), dtype=bool)
    for value in flags.values():
        any_flag |= value
    qc_pass = any_flag.sum(axis=1) <= thresholds.max_bad_channel_fraction * n_channels
    texts = [[f"{name} {int(flags[name][k].sum())}/{n_channels}" for name in FLAG_NAMES if flags[name][k].any()]
             for k in range(n_windows)]
    return qc_pass, texts


def clip_limits(channels: Sequence[ChannelInfo]) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, the µV values at which samples count as clipped: the physical range, less half a digital step
    (the header's physical extremes map to the digital extremes; inverted ranges are allowed). A channel without
    a bounded range (data held in memory) never counts as clipped."""
    lows, highs = [], []
    for ch in channels:
        if not (np.isfinite(ch.physical_min) and np.isfinite(ch.physical_max)):
            lows.append(-np.inf)
            highs.append(np.inf)
            continue
        scale = ch.to_uv if ch.to_uv is not None else 1.0
        lo, hi = sorted((ch.physical_min * scale, ch.physical_max * scale))
        steps = max(abs(ch.digital_max - ch.digital_min), 1)
        half_step = (hi - lo) / steps / 2
        lows.append(lo + half_step)
        highs.append(hi - half_step)
    return np.array(lows), np.array(highs)


def qc_array(
    data_uv: np.ndarray,
    sfreq: float,
    clip_low: np.ndarray,
    clip_high: np.ndarray,
    *,
    window_s: float = 5.0,
    thresholds: QCThresholds | None = None,
    mains_hz: float | None | Literal["auto"] = "auto",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, list[list[str]], float | None]:
    """QC of one contiguous (C, n) µV array cut into non-overlapping windows (remainder dropped)."""
    thresholds = thresholds or QCThresholds()
    w = int(round(window_s * sfreq))
    n_win = data_uv.shape[-1] // w
    windows = data_uv[:, : n_win * w].reshape(data_uv.shape[0], n_win, w).transpose(1, 0, 2)
    if mains_hz == "auto":
        mains_hz = thresholds.mains_hz if thresholds.mains_hz != "auto" else None
        if mains_hz is None and n_win:
            mains_hz = detect_mains(*spectra(windows, sfreq))
    metrics = window_metrics(windows, sfreq, clip_low, clip_high, mains_hz)
    flags = flag(metrics, thresholds)
    qc_pass, texts = summarise(flags, thresholds) if n_win else (np.zeros(0, bool), [])
    return metrics, flags, qc_pass, texts, mains_hz


def eeg_channels(recording: RecordingLike) -> list[int]:
    """The EEG channels QC looks at: every EEG channel with a µV scale, not marked bad, at the most common EEG
    rate; refused (exit 4, as ``montage check``) when there is none."""
    eeg = [c for c in recording.channels
           if c.kind == "eeg" and c.to_uv is not None and c.index not in recording.bad_channels]
    if not eeg:
        raise MontageError("no EEG channel with a known unit to check", path=recording.path)
    rates = [c.sfreq for c in eeg]
    common = max(set(rates), key=rates.count)
    return [c.index for c in eeg if c.sfreq == common]


def iter_qc(
    recording: RecordingLike,
    channels: Sequence[int] | None = None,
    *,
    window_s: float | None = None,
    thresholds: QCThresholds | None = None,
    chunk_s: float = 300.0,
) -> Iterator[QCBlock]:
    """QC blocks over every contiguous segment of ``recording`` (windows never cross a segment boundary).

    ``window_s`` defaults to the ``qc`` recipe's (5 s, the model recipes' window length, so QC window k of a
    segment covers the same seconds as model window k).
    """
    if window_s is None:
        from lumamba_cli.recipes import load_recipe

        window_s = load_recipe("qc").window_s
    thresholds = thresholds or QCThresholds()
    channels = list(channels) if channels is not None else eeg_channels(recording)
    infos = [recording.channels[i] for i in channels]
    sfreq = float(infos[0].sfreq)
    clip_low, clip_high = clip_limits(infos)
    names = [c.label for c in infos]
    w = int(round(window_s * sfreq))
    if w < MIN_WINDOW_SAMPLES:
        raise MontageError(f"EEG sampled at {sfreq:g} Hz: a {window_s:g}-s window holds {w} samples, too few for a "
                           f"quality check (at least {MIN_WINDOW_SAMPLES})", path=recording.path)
    per_chunk = max(1, int(chunk_s // window_s)) * w
    mains: float | None | Literal["auto"] = "auto" if thresholds.mains_hz == "auto" else float(thresholds.mains_hz)
    for seg_index, seg in enumerate(recording.segments):
        first = int(round(seg.data_start_s * sfreq))
        count = min(int(round(seg.duration_s * sfreq)), infos[0].n_samples - first)
        usable = (count // w) * w
        for lo in range(0, usable, per_chunk):
            hi = min(usable, lo + per_chunk)
            data = recording.read(channels, (first + lo) / sfreq, (first + hi) / sfreq)
            metrics, flags, qc_pass, texts, mains = qc_array(
                data, sfreq, clip_low, clip_high, window_s=window_s, thresholds=thresholds, mains_hz=mains
            )
            starts = seg.onset_s + (lo + np.arange(len(qc_pass)) * w) / sfreq
            yield QCBlock(
                start_s=starts, segment=np.full(len(qc_pass), seg_index), channel_names=names, metrics=metrics,
                flags=flags, qc_pass=qc_pass, qc_flags=texts, mains_hz=mains, window_s=window_s,
            )
