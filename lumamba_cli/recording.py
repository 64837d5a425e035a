"""Open EDF / EDF+ / BDF / BDF+ recordings: header eagerly, samples lazily, everything in µV.

The header is parsed here, byte by byte, before any third-party reader sees the file. That is what lets us
refuse a lying or truncated header with a precise message, decode Latin-1 units, find an ``EDF Annotations``
signal in a plain-EDF file, and rebuild the record time line of EDF+D files from the TAL time stamps.
Samples are then read by pyedflib (``readSignal`` of a channel and a sample range, digital values, scaled here)
or, when pyedflib refuses a file that is still valid, by MNE with ``preload=False``.

Times passed to :meth:`Recording.read` are *stored-data* seconds: the data records concatenated. Where an
EDF+D file has gaps, :attr:`Recording.segments` maps stored-data time to true time; nothing downstream may
treat the concatenation as continuous across a segment boundary.
"""

from __future__ import annotations

import gc
import math
import os
import re
import threading
import weakref
import warnings as _pywarnings
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lumamba_cli.errors import BadInputError

ReaderName = Literal["auto", "pyedflib", "mne", "native"]
ChannelKind = Literal["eeg", "ecg", "eog", "emg", "resp", "spo2", "photic", "marker", "misc"]

_EDF_VERSION = b"0       "
_BDF_VERSION = b"\xffBIOSEMI"
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")

# Per-signal header fields, in the order and widths of the EDF specification.
_SIGNAL_FIELDS = (
    ("label", 16),
    ("transducer", 80),
    ("unit", 8),
    ("physical_min", 8),
    ("physical_max", 8),
    ("digital_min", 8),
    ("digital_max", 8),
    ("prefilter", 80),
    ("samples_per_record", 8),
    ("reserved", 32),
)

# Multipliers to µV. Case matters for the SI prefix: "mV" is milli, "MV" would be mega and is refused as
# unknown rather than guessed. Spellings whose case cannot change the meaning are accepted in any case.
_UNIT_TO_UV_EXACT = {
    "uV": 1.0,
    "µV": 1.0,  # U+00B5 MICRO SIGN (UTF-8 c2 b5, or Latin-1 byte b5)
    "μV": 1.0,  # U+03BC GREEK SMALL LETTER MU, which some writers use instead
    "mV": 1e3,
    "V": 1e6,
    "nV": 1e-3,
}
_UNIT_TO_UV_ANY_CASE = {
    "uv": 1.0,
    "µv": 1.0,
    "μv": 1.0,
    "nv": 1e-3,
    "v": 1e6,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "volt": 1e6,
    "volts": 1e6,
}
# Units that are understood but are not a voltage: such a channel has no µV scale, and that is not a defect.
_NON_VOLTAGE_UNITS = {"%", "bpm", "mm", "mmhg", "degc", "°c", "deg", "ohm", "kohm", "cmh2o", "l/min", "ml", "l", "g", "lux"}

_ELECTRODE = re.compile(
    r"(?:N|NF|FP|AF|AFF|F|FF|FFC|FFT|FC|FCC|FT|FTT|C|CC|CCP|CP|CPP|T|TT|TTP|TP|TPP|P|PP|PPO|PO|POO|O|OI|I|A|M|PG|SP)"
    r"(?:Z|\d{1,2}H?)|NZ|IZ"
)
_CANTHUS_LEADS = ("LOC", "ROC", "LUC", "RUC", "LLC", "RLC")
_REFERENCE_SUFFIX = re.compile(r"-(?:REF|LE|AR|AVG|AV|CAR|A1|A2|M1|M2|A1A2|LINKED)$")


@dataclass(frozen=True)
class ChannelInfo:
    """One signal channel as the header describes it. ``index`` is its position in ``Recording.channels``."""

    index: int
    label: str
    kind: ChannelKind
    sfreq: float
    n_samples: int
    unit: str
    to_uv: float | None
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefilter: str
    transducer: str
    flat: bool | None


@dataclass(frozen=True)
class Segment:
    """A stretch of contiguous data: true onset from the recording start, where it begins in stored data."""

    onset_s: float
    data_start_s: float
    duration_s: float


@dataclass(frozen=True)
class Annotation:
    onset_s: float
    duration_s: float | None
    text: str


@dataclass
class _Signal:
    """A header signal before it is split into data channels and annotation signals."""

    number: int
    label: str
    transducer: str
    unit: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefilter: str
    samples_per_record: int
    byte_offset_in_record: int = 0

    @property
    def is_annotation(self) -> bool:
        return self.label in _ANNOTATION_LABELS


@dataclass
class _Header:
    is_bdf: bool
    reserved: str
    patient: str
    recording_id: str
    start_date: str
    start_clock: str
    header_bytes: int
    n_records: int
    record_duration: float
    signals: list[_Signal]
    record_bytes: int
    bytes_per_sample: int
    non_printable: bool = False
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# Header


def _decode(raw: bytes) -> str:
    """Header text is ASCII by the standard, but real files carry UTF-8 or Latin-1 (e.g. a 0xB5 micro sign)."""
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()


def _parse_number(text: str, what: str, path: Path, *, integer: bool) -> float | int:
    cleaned = text.strip()
    try:
        if integer:
            return int(cleaned)
        value = float(cleaned)
    except ValueError:
        raise BadInputError(f"header field {what} is not a number: {cleaned!r}", path=path) from None
    if not math.isfinite(value):
        raise BadInputError(f"header field {what} is not finite: {cleaned!r}", path=path)
    return value


def _read_header(path: Path, file_size: int) -> _Header:
    with open(path, "rb") as handle:
        fixed = handle.read(256)
        if len(fixed) < 256:
            raise BadInputError(
                f"not an EDF/BDF file: {file_size} bytes is shorter than the 256-byte fixed header", path=path
            )
        version = fixed[0:8]
        if version == _BDF_VERSION:
            is_bdf = True
        elif version == _EDF_VERSION:
            is_bdf = False
        else:
            raise BadInputError(
                f"not an EDF/BDF file: version field is {version!r}, expected '0' (EDF) or 0xFF'BIOSEMI' (BDF)",
                path=path,
            )
        try:
            ascii_fields = fixed[8:256].decode("ascii")
        except UnicodeDecodeError:
            ascii_fields = fixed[8:256].decode("latin-1")
        header_bytes = _parse_number(ascii_fields[176:184], "'number of bytes in header'", path, integer=True)
        n_records = _parse_number(ascii_fields[228:236], "'number of data records'", path, integer=True)
        record_duration = _parse_number(ascii_fields[236:244], "'duration of a data record'", path, integer=False)
        n_signals = _parse_number(ascii_fields[244:248], "'number of signals'", path, integer=True)
        if n_signals <= 0 or n_signals > 4096:
            raise BadInputError(f"header declares {n_signals} signals, which is not a valid count", path=path)
        if header_bytes != 256 * (n_signals + 1):
            raise BadInputError(
                f"header size field says {header_bytes} bytes but {n_signals} signals need {256 * (n_signals + 1)}",
                path=path,
            )
        if file_size < header_bytes:
            raise BadInputError(
                f"truncated inside the header: {file_size} bytes, the header alone needs {header_bytes}", path=path
            )
        if record_duration < 0:
            raise BadInputError(f"negative data record duration {record_duration}", path=path)
        raw_signals = handle.read(header_bytes - 256)

    columns: dict[str, list[str]] = {}
    offset = 0
    for name, width in _SIGNAL_FIELDS:
        columns[name] = [
            _decode(raw_signals[offset + i * width : offset + (i + 1) * width]) for i in range(n_signals)
        ]
        offset += width * n_signals

    bytes_per_sample = 3 if is_bdf else 2
    signals: list[_Signal] = []
    header_warnings: list[str] = []
    position = 0
    for number in range(n_signals):
        label = columns["label"][number]
        where = f"of signal {number + 1} ({label!r})"
        signal = _Signal(
            number=number,
            label=label,
            transducer=columns["transducer"][number],
            unit=columns["unit"][number],
            physical_min=float(_parse_number(columns["physical_min"][number], f"physical minimum {where}", path, integer=False)),
            physical_max=float(_parse_number(columns["physical_max"][number], f"physical maximum {where}", path, integer=False)),
            digital_min=int(_parse_number(columns["digital_min"][number], f"digital minimum {where}", path, integer=True)),
            digital_max=int(_parse_number(columns["digital_max"][number], f"digital maximum {where}", path, integer=True)),
            prefilter=columns["prefilter"][number],
            samples_per_record=int(
                _parse_number(columns["samples_per_record"][number], f"samples per record {where}", path, integer=True)
            ),
            byte_offset_in_record=position,
        )
        if signal.samples_per_record <= 0:
            raise BadInputError(f"signal {number + 1} ({label!r}) has {signal.samples_per_record} samples per record", path=path)
        if signal.digital_min > signal.digital_max:
            raise BadInputError(
                f"signal {number + 1} ({label!r}) has digital minimum {signal.digital_min} above its maximum "
                f"{signal.digital_max}",
                path=path,
            )
        limit = 2 ** (8 * bytes_per_sample - 1)
        if not signal.is_annotation and (signal.digital_min < -limit or signal.digital_max > limit - 1):
            header_warnings.append(
                f"signal {label!r}: digital range [{signal.digital_min}, {signal.digital_max}] exceeds what "
                f"{8 * bytes_per_sample}-bit samples can hold"
            )
        position += signal.samples_per_record * bytes_per_sample
        signals.append(signal)

    header = _Header(
        is_bdf=is_bdf,
        reserved=ascii_fields[184:228].strip(),
        patient=ascii_fields[0:80].strip(),
        recording_id=ascii_fields[80:160].strip(),
        start_date=ascii_fields[160:168],
        start_clock=ascii_fields[168:176],
        header_bytes=header_bytes,
        n_records=n_records,
        record_duration=float(record_duration),
        signals=signals,
        record_bytes=position,
        bytes_per_sample=bytes_per_sample,
        warnings=header_warnings,
    )
    header.non_printable = any(byte < 32 or byte > 126 for byte in fixed[8:256] + raw_signals)
    _check_record_count(header, path, file_size)
    return header


def _check_record_count(header: _Header, path: Path, file_size: int) -> None:
    """Trust the file size, not the header: a record count that disagrees with it is refused, never guessed."""
    data_bytes = file_size - header.header_bytes
    complete, leftover = divmod(data_bytes, header.record_bytes)
    if header.n_records == -1:
        # The standard allows -1 while a recording is still being written; the size then decides.
        if leftover:
            raise BadInputError(
                f"truncated: record count is -1 (unknown) and the data ({data_bytes} bytes) is not a whole number "
                f"of {header.record_bytes}-byte records",
                path=path,
            )
        header.n_records = complete
        header.warnings.append(f"header record count was -1 (unknown); {complete} records inferred from the file size")
        return
    if header.n_records < 0:
        raise BadInputError(f"header declares {header.n_records} data records", path=path)
    expected = header.n_records * header.record_bytes
    if data_bytes == expected:
        return
    holds = f"{complete} complete records" + (f" + {leftover} bytes" if leftover else "")
    if data_bytes < expected:
        raise BadInputError(
            f"truncated or lying header: the header's record count ({header.n_records} records of "
            f"{header.record_bytes} bytes = {expected} data bytes) disagrees with the file size, which holds "
            f"{data_bytes} data bytes ({holds})",
            path=path,
        )
    raise BadInputError(
        f"lying header: the header's record count ({header.n_records} records = {expected} data bytes) disagrees "
        f"with the file size, which holds {data_bytes} data bytes ({holds})",
        path=path,
    )


def _parse_start_time(header: _Header) -> tuple[datetime | None, str | None]:
    """Start date/time from the header (local clock of the recording site; the format stores no time zone)."""
    match_date = re.fullmatch(r"(\d\d)\.(\d\d)\.(\d\d)", header.start_date.strip())
    match_clock = re.fullmatch(r"(\d\d)\.(\d\d)\.(\d\d)", header.start_clock.strip())
    if not match_date or not match_clock:
        return None, f"start date/time fields are not dd.mm.yy / hh.mm.ss: {header.start_date!r} {header.start_clock!r}"
    day, month, yy = (int(part) for part in match_date.groups())
    # EDF's two-digit year: 85-99 is 1985-1999, 00-84 is 2000-2084; EDF+ writes the full year in the recording field.
    year = 1900 + yy if yy >= 85 else 2000 + yy
    full_year = re.search(r"Startdate \d\d-[A-Z]{3}-(\d{4})", header.recording_id)
    if full_year:
        year = int(full_year.group(1))
    try:
        return datetime(year, month, day, *(int(part) for part in match_clock.groups())), None
    except ValueError:
        return None, f"start date/time is not a valid date: {header.start_date!r} {header.start_clock!r}"


# ----------------------------------------------------------------------------------------------------------------
# Time-stamped annotation lists (TALs)


_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_tals(block: bytes) -> tuple[float | None, list[tuple[float, float | None, str]]]:
    """One record's annotation bytes → (record time stamp, annotations). The first TAL of a record, whose
    text is empty, is the record's onset relative to the header start time."""
    stamp: float | None = None
    found: list[tuple[float, float | None, str]] = []
    for number, match in enumerate(_TAL.finditer(block)):
        onset = float(match.group(1))
        duration = float(match.group(2)) if match.group(2) else None
        texts = match.group(3).split(b"\x14")
        if number == 0 and texts == [b""]:
            stamp = onset
            continue
        if number == 0 and stamp is None:
            # Writers that put the time stamp first with a text are rare; the onset still times the record.
            stamp = onset
            texts = texts[1:] if texts and texts[0] == b"" else texts
        for text in texts:
            if text:
                found.append((onset, duration, _decode_text(text).strip()))
    return stamp, found


# ----------------------------------------------------------------------------------------------------------------
# Channel typing and units


def unit_to_uv(unit: str) -> tuple[float | None, bool]:
    """(multiplier to µV or None, whether the unit is understood at all)."""
    text = unit.strip()
    if text in _UNIT_TO_UV_EXACT:
        return _UNIT_TO_UV_EXACT[text], True
    lowered = text.lower()
    if lowered in _UNIT_TO_UV_ANY_CASE:
        return _UNIT_TO_UV_ANY_CASE[lowered], True
    if lowered in _NON_VOLTAGE_UNITS:
        return None, True
    return None, False


def _is_electrode(token: str) -> bool:
    return bool(_ELECTRODE.fullmatch(token))


def classify_channel(label: str, unit: str = "", transducer: str = "") -> ChannelKind:
    """Kind of a channel from its label, then its unit and transducer. Markers and physiological channels are
    recognised before the ``EEG`` prefix, because clinical systems write e.g. ``EEG Mark1`` or ``EEG EKG-LE``."""
    text = label.upper().strip()
    words = re.split(r"[^A-Z0-9]+", text)
    hints = (transducer.upper() + " " + text).strip()
    if text in ("MK", "STATUS", "TRIGGER") or "MARK" in text or text.startswith(("EVENT", "TRIG", "STI ")):
        return "marker"
    if any(w in ("ECG", "EKG") or w.startswith(("ECG", "EKG")) for w in words):
        return "ecg"
    # LOC/ROC (left/right outer canthus) and TUH's canthus leads (LUC, RLC: left upper, right lower …) are eye
    # electrodes even when the label carries an "EEG" prefix and a reference suffix ("EEG RLC-LE").
    if any(w.startswith("EOG") or w in _CANTHUS_LEADS for w in words):
        return "eog"
    if any(w.startswith("EMG") for w in words) or "CHIN" in words:
        return "emg"
    if any(w.startswith(("SPO2", "SAO2")) for w in words) or unit.strip() == "%" and "SAT" in hints:
        return "spo2"
    if any(w.startswith(("RESP", "THOR", "ABDO", "AIRFLOW", "FLOW", "NASAL", "PRESS")) for w in words):
        return "resp"
    if any(w.startswith("PHOTIC") or w == "PHOT" for w in words):
        return "photic"
    voltage = unit_to_uv(unit)[0] is not None or unit.strip() == ""
    if text.startswith("EEG ") or text.startswith("EEG-"):
        return "eeg"
    core = text.rstrip(".").strip()
    core = _REFERENCE_SUFFIX.sub("", core)
    parts = core.split("-")
    if voltage and 1 <= len(parts) <= 2 and all(_is_electrode(part.rstrip(".")) for part in parts):
        return "eeg"
    if voltage and "EEG" in transducer.upper() and _is_electrode(parts[0]):
        return "eeg"
    return "misc"


# A scalp EEG amplifier must span at least a few hundred µV peak to peak or ordinary EEG (tens to a few hundred µV)
# would clip; no EEG front end spans more than a few volts. A header range outside these bounds, once scaled to µV,
# means the unit field is wrong, not the amplifier. The bounds are loose on purpose: only gross mislabels
# (V or mV written as µV, µV written as V) are flagged.
_EEG_SPAN_UV_MIN = 20.0
_EEG_SPAN_UV_MAX = 1e7
# Real scalp EEG swings by tens of µV within seconds; a whole recording (or scanned stretch) that stays within 1 µV
# is not EEG in µV.
_EEG_SWING_UV_MIN = 1.0


def _implausible_eeg_ranges(channels: list[ChannelInfo]) -> list[str]:
    """Describe EEG channels whose physical range, in µV, no real EEG amplifier has."""
    found = []
    for channel in channels:
        if channel.kind != "eeg" or channel.to_uv is None or channel.flat:
            continue
        span_uv = abs(channel.physical_max - channel.physical_min) * channel.to_uv
        if span_uv < _EEG_SPAN_UV_MIN:
            guess = "volts or millivolts"
        elif span_uv > _EEG_SPAN_UV_MAX:
            guess = "a smaller unit (µV or nV)"
        else:
            continue
        found.append(
            f"{channel.label!r} spans {channel.physical_min:g} to {channel.physical_max:g} {channel.unit} "
            f"({span_uv:.3g} µV peak to peak; likely {guess})"
        )
    return found


# ----------------------------------------------------------------------------------------------------------------
# Sample readers


# pyedflib 0.1.42: an EdfReader whose open fails still closes edflib handle 0 when it is destroyed, and a reader
# that owned handle 0 then returns zeros (printing "read -1") instead of raising. So after every refused open we
# reopen whichever live reader sat on handle 0, and keep its stale object referenced forever: its own destructor
# would otherwise close handle 0 again, which the reopened reader may now own.
_LIVE_PYEDFLIB: weakref.WeakSet[_PyedflibSource] = weakref.WeakSet()
_STALE_PYEDFLIB_READERS: list[Any] = []
# edflib's handle table is process-wide: opens, repairs and reads from several threads take turns.
_PYEDFLIB_LOCK = threading.RLock()


def _open_pyedflib(path: Path) -> Any:
    with _PYEDFLIB_LOCK:
        return _open_pyedflib_locked(path)


def _open_pyedflib_locked(path: Path) -> Any:
    import pyedflib

    refusal: str | None = None
    try:
        return pyedflib.EdfReader(
            str(path), annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS, check_file_size=pyedflib.CHECK_FILE_SIZE
        )
    except OSError as exc:
        refusal = str(exc)
    # Outside the except block the failed reader is unreferenced; collect it now so its handle-0 close happens
    # before the repair, not after.
    gc.collect()
    for source in list(_LIVE_PYEDFLIB):
        if source._reader is not None and source._reader.handle == 0:
            _STALE_PYEDFLIB_READERS.append(source._reader)
            source._reader = None
            source._reader = pyedflib.EdfReader(
                str(source.path),
                annotations_mode=pyedflib.DO_NOT_READ_ANNOTATIONS,
                check_file_size=pyedflib.CHECK_FILE_SIZE,
            )
    raise OSError(refusal)


class _PyedflibSource:
    """pyedflib reads one channel's sample range at a time; we ask for digital values and scale them ourselves
    so that both readers share one, checked, digital→physical map."""

    name = "pyedflib"

    def __init__(self, path: Path, header: _Header, channel_signal_numbers: list[int]):
        self.path = path
        self._reader: Any = None
        if header.reserved.startswith(("EDF+D", "BDF+D")):
            # edflib refuses discontinuous files outright; asking would only trigger the handle bug above.
            raise OSError("pyedflib does not read EDF+D/BDF+D files")
        if header.non_printable:
            raise OSError("pyedflib refuses header text outside printable ASCII (e.g. a Latin-1 µ)")
        self._reader = _open_pyedflib(path)
        _LIVE_PYEDFLIB.add(self)
        listed = self._reader.signals_in_file
        if listed == len(header.signals):
            # Plain EDF: pyedflib lists an annotation signal like any other, so file numbering applies.
            self._index = list(channel_signal_numbers)
        elif listed == len(channel_signal_numbers):
            self._index = list(range(len(channel_signal_numbers)))
        else:
            self._reader.close()
            self._reader = None
            raise OSError(f"pyedflib lists {listed} signals, the header has {len(header.signals)}")

    def digital(self, channel: int, start: int, count: int) -> np.ndarray:
        with _PYEDFLIB_LOCK:
            return np.asarray(self._reader.readSignal(self._index[channel], start, count, digital=True), dtype=np.float64)

    def close(self) -> None:
        with _PYEDFLIB_LOCK:
            if self._reader is not None:
                _LIVE_PYEDFLIB.discard(self)
                self._reader.close()
                self._reader = None


class _NativeSource:
    """Our own record reader: positioned reads of whole data records, a bounded batch at a time, decoded with
    numpy. It reads every file the header parser accepts (EDF+D, Latin-1 headers, mixed rates) and reads all
    requested channels in one pass over the records, where pyedflib makes one pass per channel."""

    name = "native"
    batch_bytes = 32 * 1024 * 1024

    def __init__(self, path: Path, header: _Header, channel_signal_numbers: list[int]):
        self._header = header
        self._signals = [header.signals[number] for number in channel_signal_numbers]
        self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def digital_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        """Fill ``out`` (len(channels), count) with digital values of samples [first, first + count)."""
        header = self._header
        signals = [self._signals[c] for c in channels]
        spr = signals[0].samples_per_record  # all share one rate, hence one samples-per-record
        width = header.bytes_per_sample
        first_record, last_record = first // spr, -(-(first + count) // spr)
        per_batch = max(1, self.batch_bytes // header.record_bytes)
        written = 0
        for batch_start in range(first_record, last_record, per_batch):
            batch_end = min(last_record, batch_start + per_batch)
            size = (batch_end - batch_start) * header.record_bytes
            raw = os.pread(self._fd, size, header.header_bytes + batch_start * header.record_bytes)
            if len(raw) != size:
                raise OSError(f"short read: {len(raw)} of {size} bytes at record {batch_start}")
            records = np.frombuffer(raw, dtype=np.uint8).reshape(batch_end - batch_start, header.record_bytes)
            skip = first - batch_start * spr if batch_start == first_record else 0
            take = min(count - written, (batch_end - batch_start) * spr - skip)
            for row, signal in enumerate(signals):
                start = signal.byte_offset_in_record
                block = records[:, start : start + spr * width]
                if width == 2:
                    values = np.ascontiguousarray(block).view("<i2").reshape(-1)
                else:
                    triplets = block.reshape(-1, 3).astype(np.int32)
                    values = triplets[:, 0] | (triplets[:, 1] << 8) | (triplets[:, 2] << 16)
                    values = np.where(values >= 1 << 23, values - (1 << 24), values)
                out[row, written : written + take] = values[skip : skip + take]
            written += take

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _MneSource:
    """MNE (``preload=False``) for files pyedflib refuses. MNE returns physical values it has already scaled
    by its own unit table; we undo that scale so the shared µV map below applies. MNE resamples every channel
    to the highest rate, so it cannot return a slower channel's own samples: those are refused."""

    name = "mne"

    def __init__(self, path: Path, header: _Header):
        import mne

        reader = mne.io.read_raw_bdf if header.is_bdf else mne.io.read_raw_edf
        with _pywarnings.catch_warnings():
            _pywarnings.simplefilter("ignore")
            # Annotations are parsed by us; Latin-1 only keeps MNE from refusing a file over annotation bytes
            # that are not UTF-8.
            self._raw = reader(str(path), preload=False, encoding="latin1", verbose="error")
        extras = self._raw._raw_extras[0]
        self._mne_units = np.asarray(extras["units"], dtype=np.float64)
        self._sfreq = float(self._raw.info["sfreq"])

    def physical(self, channel: int, start: int, count: int, sfreq: float, label: str) -> np.ndarray:
        if not math.isclose(sfreq, self._sfreq):
            raise BadInputError(
                f"channel {label!r} ({sfreq:g} Hz) cannot be read at its own rate with the MNE reader, which "
                f"resamples every channel to {self._sfreq:g} Hz",
                path=self._raw.filenames[0],
            )
        data = self._raw.get_data(picks=[channel], start=start, stop=start + count, verbose="error")[0]
        return data / self._mne_units[channel]

    def close(self) -> None:
        self._raw.close()


# ----------------------------------------------------------------------------------------------------------------
# Recording


class Recording:
    """An opened recording. Header facts are attributes; :meth:`read` pulls samples on demand."""

    def __init__(self, path: Path, header: _Header, reader: ReaderName):
        self.path = path
        self.file_size = path.stat().st_size
        self._header = header
        self.warnings: list[str] = list(header.warnings)
        kind = "BDF" if header.is_bdf else "EDF"
        if header.reserved.startswith(("EDF+D", "BDF+D")):
            self.file_format = f"{kind}+D"
        elif header.reserved.startswith(("EDF+C", "BDF+C")):
            self.file_format = f"{kind}+C"
        else:
            self.file_format = kind
        self.duration_s = header.n_records * header.record_duration
        start, problem = _parse_start_time(header)
        if problem:
            self.warnings.append(problem)

        data_signals = [s for s in header.signals if not s.is_annotation]
        self._annotation_signals = [s for s in header.signals if s.is_annotation]
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
            self.channels.append(
                ChannelInfo(
                    index=index,
                    label=signal.label,
                    kind=classify_channel(signal.label, signal.unit, signal.transducer),
                    sfreq=sfreq,
                    n_samples=signal.samples_per_record * header.n_records,
                    unit=signal.unit,
                    to_uv=to_uv,
                    physical_min=signal.physical_min,
                    physical_max=signal.physical_max,
                    digital_min=signal.digital_min,
                    digital_max=signal.digital_max,
                    prefilter=signal.prefilter,
                    transducer=signal.transducer,
                    # Only the header can tell cheaply; a constant that the header does not reveal stays None.
                    flat=True if span == 0 or signal.physical_min == signal.physical_max else None,
                )
            )
        if unknown_units:
            self.warnings.append(
                "unknown physical unit, no µV scale (read these with units='physical'): " + ", ".join(unknown_units)
            )
        implausible = _implausible_eeg_ranges(self.channels)
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

        self.annotations: list[Annotation] = []
        self.segments: list[Segment] = []
        first_stamp = self._scan_annotations()
        if start is not None and first_stamp:
            start = start + timedelta(seconds=first_stamp)
        self.start_time: datetime | None = start
        self._source = self._open_source(reader)
        self.reader: str = self._source.name

    # -- annotations and segments ------------------------------------------------------------------------------

    def _scan_annotations(self) -> float:
        """Read only the annotation bytes of each record (positioned reads; the samples are never touched)."""
        header = self._header
        full = [Segment(onset_s=0.0, data_start_s=0.0, duration_s=self.duration_s)]
        if not self._annotation_signals:
            if self.file_format.endswith("+D"):
                self.warnings.append("EDF+D file without an annotation signal: record onsets unknown, gaps cannot be located")
            self.segments = full
            return 0.0
        stamps = np.full(header.n_records, np.nan)
        raw_annotations: list[tuple[float, float | None, str]] = []
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            for record in range(header.n_records):
                base = header.header_bytes + record * header.record_bytes
                for number, signal in enumerate(self._annotation_signals):
                    block = os.pread(
                        fd,
                        signal.samples_per_record * header.bytes_per_sample,
                        base + signal.byte_offset_in_record,
                    )
                    stamp, found = _parse_tals(block)
                    if number == 0 and stamp is not None:
                        stamps[record] = stamp
                    raw_annotations.extend(found)
        finally:
            os.close(fd)

        if header.n_records == 0:
            self.segments = []
            return 0.0
        missing = int(np.isnan(stamps).sum())
        if missing:
            if self.file_format.endswith("+D"):
                self.warnings.append(
                    f"{missing} of {header.n_records} records carry no time stamp; those are assumed contiguous "
                    "with the record before"
                )
            # Without a stamp a record is taken to follow its predecessor; EDF+C and plain EDF promise exactly that.
            for record in range(header.n_records):
                if np.isnan(stamps[record]):
                    stamps[record] = 0.0 if record == 0 else stamps[record - 1] + header.record_duration
        origin = float(stamps[0])
        relative = stamps - origin
        # A gap is a record that starts later than where its predecessor ends; tolerance covers decimal rounding
        # of the stamps, far below one sample at any EEG rate.
        tolerance = min(1e-4, header.record_duration / 1000)
        expected_next = relative[:-1] + header.record_duration
        breaks = np.flatnonzero(np.abs(relative[1:] - expected_next) > tolerance) + 1
        backwards = [int(b) for b in breaks if relative[b] < expected_next[b - 1] - tolerance]
        if backwards:
            self.warnings.append(
                f"{len(backwards)} record(s) start before the previous record ends (first at record {backwards[0]}); "
                "the file's time line overlaps"
            )
        starts = [0, *[int(b) for b in breaks]]
        ends = [*[int(b) for b in breaks], header.n_records]
        self.segments = [
            Segment(
                onset_s=float(relative[first]),
                data_start_s=first * header.record_duration,
                duration_s=(last - first) * header.record_duration,
            )
            for first, last in zip(starts, ends)
        ]
        if len(self.segments) > 1:
            gap_total = float(relative[-1] + header.record_duration - self.duration_s)
            note = "" if self.file_format.endswith("+D") else f" although the header says {self.file_format}"
            self.warnings.append(
                f"discontinuous: {len(self.segments)} contiguous segments{note}, {gap_total:.3f} s of gaps; "
                "stored data is never joined across a gap"
            )
        self.annotations = sorted(
            (Annotation(onset_s=onset - origin, duration_s=duration, text=text) for onset, duration, text in raw_annotations),
            key=lambda a: (a.onset_s, a.text),
        )
        return origin

    # -- samples -----------------------------------------------------------------------------------------------

    def _open_source(self, reader: ReaderName) -> Any:
        if reader not in ("auto", "pyedflib", "mne", "native"):
            raise ValueError(f"unknown reader {reader!r}")
        if reader == "native":
            return _NativeSource(self.path, self._header, self._signal_numbers)
        refusal: Exception | None = None
        if reader in ("auto", "pyedflib"):
            try:
                return _PyedflibSource(self.path, self._header, self._signal_numbers)
            except OSError as exc:
                if reader == "pyedflib":
                    raise BadInputError(f"pyedflib cannot read this file: {exc}", path=self.path) from None
                refusal = exc
        rates = {channel.sfreq for channel in self.channels}
        if reader == "auto" and len(rates) > 1:
            # MNE would resample slower channels to the fastest rate, so it cannot serve their own samples;
            # our record reader can, and every header check has already passed.
            self.warnings.append(f"read with lumamba's own record reader because pyedflib refused the file: {refusal}")
            return _NativeSource(self.path, self._header, self._signal_numbers)
        try:
            source = _MneSource(self.path, self._header)
        except Exception as exc:  # MNE raises plain ValueError/RuntimeError on files it cannot parse
            because = f" (pyedflib: {refusal})" if refusal else ""
            raise BadInputError(f"no reader can read this file: MNE: {exc}{because}", path=self.path) from None
        if refusal is not None:
            self.warnings.append(f"read with MNE because pyedflib refused the file: {refusal}")
        return source

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

    def read(
        self,
        channels: list[int],
        start_s: float = 0.0,
        stop_s: float | None = None,
        *,
        units: Literal["uV", "physical"] = "uV",
    ) -> np.ndarray:
        """Samples of ``channels`` (indices into :attr:`channels`) between stored-data seconds, float64
        (n_channels, n_samples), in µV. ``units='physical'`` returns the header's own unit instead, for channels
        with a unit that has no µV scale (SpO2 %, an unknown unit)."""
        if self._source is None:
            raise ValueError(f"{self.path}: recording is closed")
        infos = [self.channels[i] for i in channels]
        if not infos:
            return np.zeros((0, 0))
        rates = {info.sfreq for info in infos}
        if len(rates) > 1:
            raise ValueError(
                f"{self.path}: channels {[i.label for i in infos]} have different rates {sorted(rates)}; read them separately"
            )
        first, last = self.sample_range(infos[0], start_s, stop_s)
        scales = []
        for info in infos:
            if units == "uV" and info.to_uv is None:
                raise BadInputError(f"channel {info.label!r} has unit {info.unit!r}, which has no µV scale", path=self.path)
            scales.append(info.to_uv if units == "uV" else 1.0)
        out = np.empty((len(infos), last - first), dtype=np.float64)
        if last == first:
            return out
        if isinstance(self._source, _NativeSource):
            self._source.digital_into(out, [info.index for info in infos], first, last - first)
        for row, (info, scale) in enumerate(zip(infos, scales)):
            if isinstance(self._source, _MneSource):
                out[row] = self._source.physical(info.index, first, last - first, info.sfreq, info.label) * scale
                continue
            if isinstance(self._source, _PyedflibSource):
                digital = self._source.digital(info.index, first, last - first)
                if digital.shape[0] != last - first:
                    raise BadInputError(
                        f"channel {info.label!r}: expected {last - first} samples from {first}, got {digital.shape[0]}",
                        path=self.path,
                    )
                out[row] = digital
            # In place: a (channels × 5 min) block needs no second temporary of its size.
            out[row] *= self._gains[info.index] * scale
            out[row] += self._offsets[info.index] * scale
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

    # -- lifecycle and reporting -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

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
                    if swing_uv < _EEG_SWING_UV_MIN:
                        tiny.append(f"{channel.label!r} ({swing_uv:.3g} µV)")
        if tiny:
            note = (
                f"EEG channel(s) whose largest swing over the scanned data is below {_EEG_SWING_UV_MIN:g} µV peak to "
                "peak, which no connected scalp electrode shows; the unit is probably wrong (volts written as µV) or "
                "the electrode is disconnected: " + ", ".join(tiny)
            )
            if note not in self.warnings:
                self.warnings.append(note)
        return [c for c in self.channels if c.flat]

    def channel_indices(self, kinds: tuple[str, ...]) -> list[int]:
        return [c.index for c in self.channels if c.kind in kinds]

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


def open_recording(path: str | os.PathLike[str], *, reader: ReaderName = "auto") -> Recording:
    """Open ``path`` (EDF, EDF+C/D, BDF, BDF+C/D). Raises :class:`BadInputError` for anything that is not a
    complete, self-consistent recording: missing, a directory, empty, not EDF/BDF, truncated, lying header."""
    file = Path(path)
    if not file.exists():
        raise BadInputError("file not found", path=file)
    if file.is_dir():
        raise BadInputError("is a directory, not a recording (give an .edf/.bdf file)", path=file)
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise BadInputError(f"cannot read: {exc.strerror}", path=file) from None
    if size == 0:
        raise BadInputError("empty file (0 bytes)", path=file)
    try:
        header = _read_header(file, size)
    except PermissionError:
        raise BadInputError("permission denied", path=file) from None
    return Recording(file, header, reader)
