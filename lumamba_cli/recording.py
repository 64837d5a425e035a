"""A recording: channels, segments and annotations eagerly, samples lazily, everything in µV.

:func:`open_recording` opens EDF / EDF+ / BDF / BDF+ files (header checked in ``edf.py``); :class:`ArrayRecording`
holds data already in memory (NumPy arrays with channel names, ``mne.io.BaseRaw`` objects, TDBrain CSVs, APAVA
.mat files). Both satisfy :class:`RecordingLike`, the contract every later stage (montage, preprocess, qc) reads.

Times passed to ``read`` are *stored-data* seconds: the data records concatenated. Where an EDF+D file has gaps,
``segments`` maps stored-data time to true time; nothing downstream may treat the concatenation as continuous
across a segment boundary.
"""

from __future__ import annotations

import gc
import math
import os
import stat
import threading
import warnings as _pywarnings
import weakref
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from lumamba_cli.channels import (
    EEG_SWING_UV_MIN,
    ChannelInfo,
    ChannelKind,
    classify_channel,
    implausible_eeg_ranges,
    kind_from_label,
    unit_to_uv,
)
from lumamba_cli.edf import Annotation, Header, RecordReader, Segment, parse_start_time, read_header, read_timeline
from lumamba_cli.errors import BadInputError, first_line

Units = Literal["uV", "physical"]


class Reader(StrEnum):
    """Which library reads the samples (the header is always parsed and checked by ``edf.py`` first)."""

    auto = "auto"  # lumamba's own record reader, behind the header checks (the same values as pyedflib's)
    pyedflib = "pyedflib"  # kept as a cross-check; refuses EDF+D and non-ASCII headers
    mne = "mne"  # cannot serve channels slower than the fastest one
    native = "native"


class RecordingLike(Protocol):
    """What every stage after the reader needs of a recording."""

    path: Path
    file_format: str
    reader: str
    file_size: int
    start_time: datetime | None
    duration_s: float
    channels: list[ChannelInfo]
    segments: list[Segment]
    annotations: list[Annotation]
    warnings: list[str]
    bad_channels: dict[int, str]  # channel index → why its source marked it bad; the montage never uses these

    def read(self, channels: list[int], start_s: float = 0.0, stop_s: float | None = None, *,
             units: Units = "uV") -> np.ndarray: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------------------
# Sample sources behind Recording.read


# pyedflib 0.1.42: an EdfReader whose open fails still closes edflib handle 0 when it is destroyed, and a reader
# that owned handle 0 then returns zeros (printing "read -1") instead of raising. So after every refused open we
# reopen whichever live reader sat on handle 0, and keep its stale object referenced forever: its own destructor
# would otherwise close handle 0 again, which the reopened reader may now own.
_LIVE_PYEDFLIB: weakref.WeakSet[_PyedflibSource] = weakref.WeakSet()
_STALE_PYEDFLIB_READERS: list[Any] = []
# edflib's handle table is process-wide: opens, repairs and reads from several threads take turns.
_PYEDFLIB_LOCK = threading.RLock()


def _open_pyedflib(path: Path) -> Any:
    import pyedflib

    with _PYEDFLIB_LOCK:
        refusal: str | None = None
        try:
            return pyedflib.EdfReader(str(path), annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS,
                                      check_file_size=pyedflib.CHECK_FILE_SIZE)
        except OSError as exc:
            refusal = str(exc)
        # Outside the except block the failed reader is unreferenced; collect it now so its handle-0 close happens
        # before the repair, not after.
        gc.collect()
        for source in list(_LIVE_PYEDFLIB):
            if source._reader is not None and source._reader.handle == 0:
                _STALE_PYEDFLIB_READERS.append(source._reader)
                source._reader = None
                source._reader = pyedflib.EdfReader(str(source.path),
                                                    annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS,
                                                    check_file_size=pyedflib.CHECK_FILE_SIZE)
        raise OSError(refusal)


class _PyedflibSource:
    """pyedflib reads one channel's sample range at a time; we ask for digital values and scale them ourselves
    so that every reader shares one, checked, digital→physical map."""

    name = "pyedflib"
    digital = True

    def __init__(self, path: Path, header: Header, signal_numbers: list[int]):
        self.path = path
        self._reader: Any = None
        if header.discontinuous:
            # edflib refuses discontinuous files outright; asking would only trigger the handle bug above.
            raise OSError("pyedflib does not read EDF+D/BDF+D files")
        if header.non_printable:
            raise OSError("pyedflib refuses header text outside printable ASCII (e.g. a Latin-1 µ)")
        self._reader = _open_pyedflib(path)
        _LIVE_PYEDFLIB.add(self)
        listed = self._reader.signals_in_file
        if listed == len(header.signals):
            # Plain EDF: pyedflib lists an annotation signal like any other, so file numbering applies.
            self._index = list(signal_numbers)
        elif listed == len(signal_numbers):
            self._index = list(range(len(signal_numbers)))
        else:
            self.close()
            raise OSError(f"pyedflib lists {listed} signals, the header has {len(header.signals)}")

    def read_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        with _PYEDFLIB_LOCK:
            for row, channel in enumerate(channels):
                values = self._reader.readSignal(self._index[channel], first, count, digital=True)
                if len(values) != count:
                    raise OSError(f"expected {count} samples from {first}, got {len(values)}")
                out[row] = values

    def close(self) -> None:
        with _PYEDFLIB_LOCK:
            if self._reader is not None:
                _LIVE_PYEDFLIB.discard(self)
                self._reader.close()
                self._reader = None


class _NativeSource(RecordReader):
    digital = True

    def read_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        self.digital_into(out, channels, first, count)


class _MneSource:
    """MNE (``preload=False``) for files pyedflib refuses. MNE returns physical values it has already scaled
    by its own unit table; we undo that scale so the shared µV map applies. MNE resamples every channel to the
    highest rate, so it cannot return a slower channel's own samples: those are refused."""

    name = "mne"
    digital = False

    def __init__(self, path: Path, header: Header, channels: list[ChannelInfo]):
        import mne

        reader = mne.io.read_raw_bdf if header.is_bdf else mne.io.read_raw_edf
        with _pywarnings.catch_warnings():
            _pywarnings.simplefilter("ignore")
            # Annotations are parsed by us; Latin-1 only keeps MNE from refusing a file over annotation bytes
            # that are not UTF-8.
            self._raw = reader(str(path), preload=False, encoding="latin1", verbose="error")
        self._path = path
        self._channels = channels
        self._mne_units = np.asarray(self._raw._raw_extras[0]["units"], dtype=np.float64)
        self._sfreq = float(self._raw.info["sfreq"])

    def read_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        for row, channel in enumerate(channels):
            info = self._channels[channel]
            if not math.isclose(info.sfreq, self._sfreq):
                raise BadInputError(
                    f"channel {info.label!r} ({info.sfreq:g} Hz) cannot be read at its own rate with the MNE reader, "
                    f"which resamples every channel to {self._sfreq:g} Hz", path=self._path)
            data = self._raw.get_data(picks=[channel], start=first, stop=first + count, verbose="error")[0]
            out[row] = data / self._mne_units[channel]

    def close(self) -> None:
        self._raw.close()


# ---------------------------------------------------------------------------------------------------------------
# Shared behaviour of both recording kinds


class _Samples:
    """``read``, ``iter_chunks`` and ``scan_flat`` on top of ``_physical_into`` (values in each channel's unit)."""

    path: Path
    channels: list[ChannelInfo]
    segments: list[Segment]
    warnings: list[str]
    duration_s: float

    def _physical_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        raise NotImplementedError

    def sample_range(self, channel: ChannelInfo, start_s: float, stop_s: float | None) -> tuple[int, int]:
        """Stored-data seconds → [first, last) sample numbers of ``channel`` (nearest sample)."""
        first = int(round(start_s * channel.sfreq))
        last = channel.n_samples if stop_s is None else int(round(stop_s * channel.sfreq))
        if first < 0 or last > channel.n_samples or first > last:
            raise ValueError(
                f"{self.path}: time range [{start_s}, {stop_s}) s is outside the stored data "
                f"(0 to {channel.n_samples / channel.sfreq:g} s)"
            )
        return first, last

    def read(self, channels: list[int], start_s: float = 0.0, stop_s: float | None = None, *,
             units: Units = "uV") -> np.ndarray:
        """Samples of ``channels`` (indices into :attr:`channels`) between stored-data seconds, float64
        (n_channels, n_samples), in µV. ``units='physical'`` returns each channel's own unit instead, for channels
        with a unit that has no µV scale (SpO2 %, an unknown unit)."""
        infos = [self.channels[i] for i in channels]
        if not infos:
            return np.zeros((0, 0))
        rates = {info.sfreq for info in infos}
        if len(rates) > 1:
            raise ValueError(
                f"{self.path}: channels {[i.label for i in infos]} have different rates {sorted(rates)}; read them separately"
            )
        if units == "uV":
            for info in infos:
                if info.to_uv is None:
                    raise BadInputError(f"channel {info.label!r} has unit {info.unit!r}, which has no µV scale",
                                        path=self.path)
        first, last = self.sample_range(infos[0], start_s, stop_s)
        out = np.empty((len(infos), last - first), dtype=np.float64)
        if last > first:
            self._physical_into(out, list(channels), first, last - first)
            if units == "uV":
                for row, info in enumerate(infos):
                    if info.to_uv != 1.0:
                        out[row] *= info.to_uv
        return out

    def iter_chunks(self, channels: list[int], chunk_s: float):
        """Yield (start_s, block) over all stored data in chunks of ``chunk_s`` seconds; memory stays bounded by
        one chunk whatever the recording's length."""
        rate = self.channels[channels[0]].sfreq
        total = self.channels[channels[0]].n_samples
        step = max(1, int(round(chunk_s * rate)))
        for first in range(0, total, step):
            last = min(total, first + step)
            yield first / rate, self.read(channels, first / rate, last / rate)

    def scan_flat(self, max_seconds: float | None = None, chunk_s: float = 60.0) -> list[ChannelInfo]:
        """Set ``flat`` (True: every sample equal, False: not) by reading the data, ``chunk_s`` at a time so memory
        stays bounded; ``max_seconds`` limits the scan to the start of the recording. Returns the flat channels.
        Without a scan ``flat`` is True only where the header alone proves it (digital or physical range of 0)."""
        tiny: list[str] = []
        for rate in sorted({c.sfreq for c in self.channels}):
            group = [c for c in self.channels if c.sfreq == rate and c.flat is not True]
            if not group:
                continue
            picks = [c.index for c in group]
            low = np.full(len(picks), np.inf)
            high = np.full(len(picks), -np.inf)
            stop = self.duration_s if max_seconds is None else min(self.duration_s, max_seconds)
            start = 0.0
            while start < stop:
                end = min(stop, start + chunk_s)
                block = self.read(picks, start, end, units="physical")
                if block.shape[1]:
                    np.minimum(low, block.min(axis=1), out=low)
                    np.maximum(high, block.max(axis=1), out=high)
                start = end
            for channel, lo, hi in zip(group, low, high):
                self.channels[channel.index] = replace(channel, flat=bool(lo == hi))
                if channel.kind == "eeg" and channel.to_uv is not None and lo < hi:
                    swing_uv = (hi - lo) * channel.to_uv
                    if swing_uv < EEG_SWING_UV_MIN:
                        tiny.append(f"{channel.label!r} ({swing_uv:.3g} µV)")
        if tiny:
            note = (
                f"EEG channel(s) whose largest swing over the scanned data is below {EEG_SWING_UV_MIN:g} µV peak to "
                "peak, which no connected scalp electrode shows; the unit is probably wrong (volts written as µV) or "
                "the electrode is disconnected: " + ", ".join(tiny)
            )
            if note not in self.warnings:
                self.warnings.append(note)
        return [c for c in self.channels if c.flat]

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------------
# EDF / BDF files


class Recording(_Samples):
    """An opened EDF/BDF recording. Header facts are attributes; :meth:`read` pulls samples on demand."""

    def __init__(self, path: Path, header: Header, reader: Reader):
        self.path = path
        self.file_size = path.stat().st_size
        self._header = header
        self.warnings: list[str] = list(header.warnings)
        self.file_format = header.file_format
        self.duration_s = header.n_records * header.record_duration
        start, problem = parse_start_time(header)
        if problem:
            self.warnings.append(problem)

        data_signals = [s for s in header.signals if not s.is_annotation]
        self._signal_numbers = [s.number for s in data_signals]
        self._gains: list[float] = []
        self._offsets: list[float] = []
        self.channels: list[ChannelInfo] = []
        unknown_units: list[str] = []
        for index, signal in enumerate(data_signals):
            to_uv, understood = unit_to_uv(signal.unit)
            if not understood:
                unknown_units.append(f"{signal.label!r} ({signal.unit!r})")
            span = signal.digital_max - signal.digital_min
            gain = (signal.physical_max - signal.physical_min) / span if span else 0.0
            self._gains.append(gain)
            self._offsets.append(signal.physical_min - gain * signal.digital_min if span else signal.physical_min)
            sfreq = signal.samples_per_record / header.record_duration if header.record_duration > 0 else 0.0
            self.channels.append(ChannelInfo(
                index=index, label=signal.label, kind=classify_channel(signal.label, signal.unit, signal.transducer),
                sfreq=sfreq, n_samples=signal.samples_per_record * header.n_records, unit=signal.unit, to_uv=to_uv,
                physical_min=signal.physical_min, physical_max=signal.physical_max,
                digital_min=signal.digital_min, digital_max=signal.digital_max, prefilter=signal.prefilter,
                transducer=signal.transducer,
                # Only the header can tell cheaply; a constant that the header does not reveal stays None.
                flat=True if span == 0 or signal.physical_min == signal.physical_max else None,
            ))
        if unknown_units:
            self.warnings.append(
                "unknown physical unit, no µV scale (read these with units='physical'): " + ", ".join(unknown_units)
            )
        implausible = implausible_eeg_ranges(self.channels)
        if implausible:
            self.warnings.append(
                "EEG channel(s) whose header range is implausible in the stated unit, so the unit is probably wrong "
                "(e.g. volts written as 'uV'); amplitudes and any µV threshold will be off: " + "; ".join(implausible)
            )
        if header.record_duration <= 0 and data_signals:
            raise BadInputError("data record duration is 0 but the file has signal channels", path=path)
        labels = [c.label for c in self.channels]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            self.warnings.append(f"duplicate channel labels (told apart by index only): {', '.join(duplicates)}")

        timeline = read_timeline(path, header)
        self.segments: list[Segment] = timeline.segments
        self.annotations: list[Annotation] = timeline.annotations
        self.warnings.extend(timeline.warnings)
        if start is not None and timeline.origin_s:
            try:
                start = start + timedelta(seconds=timeline.origin_s)
            except OverflowError:
                self.warnings.append(f"the first record's time stamp ({timeline.origin_s:g} s) moves the start time "
                                     "out of the calendar; start time unknown")
                start = None
        self.start_time: datetime | None = start
        self.bad_channels: dict[int, str] = {}
        self._source: Any = self._open_source(reader)
        self.reader: str = self._source.name

    def _open_source(self, reader: Reader) -> Any:
        # Our record reader reads every file the header checks accept, all channels in one pass: it is the default.
        # The libraries stay available (and the tests compare all three on every real recording).
        reader = Reader(reader)
        if reader in (Reader.auto, Reader.native):
            return _NativeSource(self.path, self._header, self._signal_numbers)
        if reader == Reader.pyedflib:
            try:
                return _PyedflibSource(self.path, self._header, self._signal_numbers)
            except OSError as exc:
                raise BadInputError(f"pyedflib cannot read this file: {exc}", path=self.path) from None
        try:
            return _MneSource(self.path, self._header, self.channels)
        except Exception as exc:  # MNE raises plain ValueError/RuntimeError on files it cannot parse
            raise BadInputError(f"MNE cannot read this file: {first_line(exc)}", path=self.path) from None

    def _physical_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        if self._source is None:
            raise ValueError(f"{self.path}: recording is closed")
        try:
            self._source.read_into(out, channels, first, count)
        except OSError as exc:
            raise BadInputError(f"cannot read samples: {exc}", path=self.path) from None
        if self._source.digital:
            for row, channel in enumerate(channels):
                # In place: a (channels × 5 min) block needs no second temporary of its size.
                out[row] *= self._gains[channel]
                out[row] += self._offsets[channel]

    @property
    def record_duration_s(self) -> float:
        return self._header.record_duration

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def to_dict(self, *, with_annotations: bool = True) -> dict[str, Any]:
        """Plain JSON-ready description (used by ``lumamba info --json``)."""
        described: dict[str, Any] = {
            "path": str(self.path),
            "file_format": self.file_format,
            "reader": self.reader,
            "file_size": self.file_size,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "duration_s": self.duration_s,
            "record_duration_s": self._header.record_duration,
            "n_records": self._header.n_records,
            "channels": [asdict(c) for c in self.channels],
            "segments": [asdict(s) for s in self.segments],
            "annotation_count": len(self.annotations),
            "warnings": list(self.warnings),
        }
        if with_annotations:
            described["annotations"] = [asdict(a) for a in self.annotations]
        return described

    def __repr__(self) -> str:
        return (
            f"Recording({str(self.path)!r}, {self.file_format}, {len(self.channels)} channels, "
            f"{self.duration_s:g} s, reader={self.reader})"
        )


def open_recording(path: str | os.PathLike[str], *, reader: Reader = Reader.auto) -> Recording:
    """Open ``path`` (EDF, EDF+C/D, BDF, BDF+C/D). Raises :class:`BadInputError` for anything that is not a
    complete, self-consistent recording: missing, a directory, empty, not EDF/BDF, truncated, lying header."""
    file = Path(path)
    if not file.exists():
        raise BadInputError("file not found", path=file)
    if file.is_dir():
        raise BadInputError("is a directory, not a recording (give an .edf/.bdf file)", path=file)
    try:
        info = file.stat()
    except OSError as exc:
        raise BadInputError(f"cannot read: {exc.strerror}", path=file) from None
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block the reader or never end: refuse before opening it.
        raise BadInputError("not a regular file (a pipe, socket or device): give the recording itself", path=file)
    size = info.st_size
    if size == 0:
        raise BadInputError("empty file (0 bytes)", path=file)
    try:
        header = read_header(file, size)
    except PermissionError:
        raise BadInputError("permission denied", path=file) from None
    return Recording(file, header, reader)


# ---------------------------------------------------------------------------------------------------------------
# Data already in memory


class ArrayRecording(_Samples):
    """A recording held in memory, with the interface of :class:`Recording`: (channels, samples) µV data at one
    rate. ``segment_lengths`` (samples) marks pieces that preprocessing must treat separately (APAVA's epochs);
    ``bad`` maps channel names their source marked bad (MNE ``info['bads']``) to the reason; the montage never
    uses them.

    Arrays carry no amplifier range, so clipping cannot be judged from them: their physical range is unbounded.
    """

    file_format = "array"

    def __init__(self, path: str | os.PathLike[str], data_uv: np.ndarray, sfreq: float, labels: Sequence[str],
                 kinds: Sequence[ChannelKind] | None = None, *, reader: str = "memory",
                 segment_lengths: Sequence[int] | None = None, start_time: datetime | None = None,
                 annotations: Sequence[Annotation] = (), bad: dict[str, str] | None = None,
                 file_size: int | None = None):
        self.path = Path(path)
        self.reader = reader
        self._data = np.ascontiguousarray(data_uv, dtype=np.float64)
        if self._data.ndim != 2 or self._data.shape[0] != len(labels):
            raise BadInputError(f"data of shape {self._data.shape} does not match {len(labels)} channel names",
                                path=self.path)
        if not (math.isfinite(sfreq) and sfreq > 0):
            raise BadInputError(f"sampling rate {sfreq!r} is not a positive number", path=self.path)
        if not np.isfinite(self._data).all():
            raise BadInputError("data contain NaN or infinite values", path=self.path)
        n = self._data.shape[1]
        self.file_size = int(file_size if file_size is not None else self._data.nbytes)
        self.duration_s = n / sfreq
        self.start_time = start_time
        self.warnings: list[str] = []
        self.annotations = list(annotations)
        kinds = list(kinds) if kinds is not None else [kind_from_label(label) for label in labels]
        self.channels = [
            ChannelInfo(index=i, label=str(label), kind=kind, sfreq=float(sfreq), n_samples=n, unit="uV", to_uv=1.0,
                        physical_min=-math.inf, physical_max=math.inf, digital_min=0, digital_max=0,
                        prefilter="", transducer="", flat=bool(n and np.ptp(self._data[i]) == 0))
            for i, (label, kind) in enumerate(zip(labels, kinds))
        ]
        index_of = {c.label: c.index for c in self.channels}
        bad = bad or {}
        self.bad_channels = {index_of[name]: reason for name, reason in bad.items() if name in index_of}
        unknown_bad = sorted(set(bad) - set(index_of))
        if unknown_bad:
            self.warnings.append(f"channels marked bad are not in the data: {', '.join(unknown_bad)}")
        lengths = list(segment_lengths) if segment_lengths else [n]
        if sum(lengths) != n:
            raise BadInputError(f"segment lengths add up to {sum(lengths)} samples, the data has {n}", path=self.path)
        self.segments = []
        start = 0
        for length in lengths:
            # separate pieces get a 1-s true-time gap so nothing ever treats them as continuous
            onset = start / sfreq + len(self.segments)
            self.segments.append(Segment(onset_s=onset, data_start_s=start / sfreq, duration_s=length / sfreq))
            start += length

    def _physical_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        out[:] = self._data[channels, first:first + count]

    def content_sha256(self) -> str:
        """sha256 of what was given (rate, names, kinds, segments, µV samples): the report's input checksum."""
        import hashlib

        digest = hashlib.sha256()
        described = [self.channels[0].sfreq if self.channels else 0.0, [(c.label, c.kind) for c in self.channels],
                     [(s.data_start_s, s.duration_s) for s in self.segments]]
        digest.update(repr(described).encode("utf-8"))
        digest.update(self._data.tobytes())
        return digest.hexdigest()

    @classmethod
    def from_mne(cls, raw: Any, *, path: str | os.PathLike[str] | None = None) -> ArrayRecording:
        """An ``mne.io.BaseRaw`` as it is in memory (cropped, renamed, re-referenced …): data in µV, MNE's channel
        types as kinds, ``info['bads']`` kept as bad channels, annotations and start time carried over."""
        import mne

        picks = mne.pick_types(raw.info, eeg=True, eog=True, ecg=True, emg=True, misc=True, resp=True, stim=False,
                               exclude=[])
        names = [raw.ch_names[i] for i in picks]
        kinds = [_MNE_KINDS.get(raw.get_channel_types(picks=[i])[0], "misc") for i in picks]
        data = raw.get_data(picks=picks, units="uV") if len(picks) else np.zeros((0, raw.n_times))
        source = path or (raw.filenames[0] if raw.filenames and raw.filenames[0] else "<mne.io.Raw>")
        meas_date = raw.info["meas_date"]
        annotations = [Annotation(float(a["onset"]) - raw.first_time, float(a["duration"]) or None,
                                  str(a["description"])) for a in raw.annotations]
        return cls(source, data, float(raw.info["sfreq"]), names, kinds, reader="mne-object",
                   start_time=meas_date.replace(tzinfo=None) if meas_date is not None else None,
                   annotations=annotations,
                   bad={name: "marked bad in info['bads']" for name in raw.info["bads"] if name in names})


_MNE_KINDS: dict[str, ChannelKind] = {"eeg": "eeg", "eog": "eog", "ecg": "ecg", "emg": "emg", "resp": "resp",
                                      "misc": "misc"}
