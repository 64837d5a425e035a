"""EDF / EDF+ / BDF / BDF+ bytes: the header, its checks against the file size, TALs, and our own record reader.

The header is parsed here, byte by byte, before any third-party reader sees the file. That is what lets us
refuse a lying or truncated header with a precise message, decode Latin-1 units, find an ``EDF Annotations``
signal in a plain-EDF file, and rebuild the record time line of EDF+D files from the TAL time stamps.

Nothing here knows about EEG: units, channel kinds and positions live in ``channels.py`` and ``montage.py``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from lumamba_cli.errors import BadInputError

EDF_VERSION = b"0       "
BDF_VERSION = b"\xffBIOSEMI"
ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
MAX_SIGNALS = 4096  # 256 bytes of header each: a larger count is a lying header, not a recording

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
class SignalHeader:
    """One signal of the header, before it is split into data channels and annotation signals."""

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
        return self.label in ANNOTATION_LABELS


@dataclass
class Header:
    is_bdf: bool
    reserved: str
    patient: str
    recording_id: str
    start_date: str
    start_clock: str
    header_bytes: int
    n_records: int
    record_duration: float
    signals: list[SignalHeader]
    record_bytes: int
    bytes_per_sample: int
    non_printable: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def file_format(self) -> str:
        kind = "BDF" if self.is_bdf else "EDF"
        if self.reserved.startswith(("EDF+D", "BDF+D")):
            return f"{kind}+D"
        if self.reserved.startswith(("EDF+C", "BDF+C")):
            return f"{kind}+C"
        return kind

    @property
    def discontinuous(self) -> bool:
        return self.file_format.endswith("+D")


# ---------------------------------------------------------------------------------------------------------------
# Header


def decode_text(raw: bytes) -> str:
    """Header and TAL text is ASCII by the standard, but real files carry UTF-8 or Latin-1 (e.g. a 0xB5 micro
    sign); Latin-1 decodes any byte, so nothing is ever refused for its encoding alone."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


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


def read_header(path: Path, file_size: int) -> Header:
    """Parse and check the fixed and per-signal header; the record count must agree with ``file_size``."""
    with open(path, "rb") as handle:
        fixed = handle.read(256)
        if len(fixed) < 256:
            raise BadInputError(
                f"not an EDF/BDF file: {file_size} bytes is shorter than the 256-byte fixed header", path=path
            )
        version = fixed[0:8]
        if version == BDF_VERSION:
            is_bdf = True
        elif version == EDF_VERSION:
            is_bdf = False
        else:
            raise BadInputError(
                f"not an EDF/BDF file: version field is {version!r}, expected '0' (EDF) or 0xFF'BIOSEMI' (BDF)",
                path=path,
            )
        ascii_fields = fixed[8:256].decode("latin-1")
        header_bytes = _parse_number(ascii_fields[176:184], "'number of bytes in header'", path, integer=True)
        n_records = _parse_number(ascii_fields[228:236], "'number of data records'", path, integer=True)
        record_duration = _parse_number(ascii_fields[236:244], "'duration of a data record'", path, integer=False)
        n_signals = _parse_number(ascii_fields[244:248], "'number of signals'", path, integer=True)
        if n_signals <= 0 or n_signals > MAX_SIGNALS:
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
            decode_text(raw_signals[offset + i * width : offset + (i + 1) * width]).strip() for i in range(n_signals)
        ]
        offset += width * n_signals

    bytes_per_sample = 3 if is_bdf else 2
    signals: list[SignalHeader] = []
    header_warnings: list[str] = []
    position = 0
    for number in range(n_signals):
        label = columns["label"][number]
        where = f"of signal {number + 1} ({label!r})"

        def number_field(name: str, what: str, *, integer: bool) -> float | int:
            return _parse_number(columns[name][number], f"{what} {where}", path, integer=integer)

        signal = SignalHeader(
            number=number,
            label=label,
            transducer=columns["transducer"][number],
            unit=columns["unit"][number],
            physical_min=float(number_field("physical_min", "physical minimum", integer=False)),
            physical_max=float(number_field("physical_max", "physical maximum", integer=False)),
            digital_min=int(number_field("digital_min", "digital minimum", integer=True)),
            digital_max=int(number_field("digital_max", "digital maximum", integer=True)),
            prefilter=columns["prefilter"][number],
            samples_per_record=int(number_field("samples_per_record", "samples per record", integer=True)),
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
        if not signal.is_annotation:
            _check_physics(signal, float(record_duration), path)
        limit = 2 ** (8 * bytes_per_sample - 1)
        if not signal.is_annotation and (signal.digital_min < -limit or signal.digital_max > limit - 1):
            header_warnings.append(
                f"signal {label!r}: digital range [{signal.digital_min}, {signal.digital_max}] exceeds what "
                f"{8 * bytes_per_sample}-bit samples can hold"
            )
        position += signal.samples_per_record * bytes_per_sample
        signals.append(signal)

    header = Header(
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


# Limits from physics, not from the format: no EEG/biosignal amplifier samples faster than 100 kHz, and a physical
# range beyond ±1e12 in any unit (V … nV) is a broken scaling that would overflow float32 in the model's input.
MAX_SAMPLING_RATE_HZ = 100_000.0
MAX_PHYSICAL_MAGNITUDE = 1e12


def _check_physics(signal: SignalHeader, record_duration: float, path: Path) -> None:
    """One data signal's header against physical plausibility: finite bounded range, a rate in (0, 100 kHz]."""
    name = f"signal {signal.number + 1} ({signal.label!r})"
    ends = (signal.physical_min, signal.physical_max)
    if not all(math.isfinite(v) and abs(v) <= MAX_PHYSICAL_MAGNITUDE for v in ends):
        raise BadInputError(f"{name} has physical range [{ends[0]:g}, {ends[1]:g}]: not finite or beyond "
                            f"±{MAX_PHYSICAL_MAGNITUDE:g}", path=path)
    if not math.isfinite(record_duration) or record_duration <= 0:
        raise BadInputError(f"data record duration {record_duration:g} s: data signals need a finite positive "
                            "duration", path=path)
    rate = signal.samples_per_record / record_duration
    if not rate <= MAX_SAMPLING_RATE_HZ:
        raise BadInputError(f"{name} samples at {rate:.6g} Hz ({signal.samples_per_record} samples per "
                            f"{record_duration:g}-s record), above the {MAX_SAMPLING_RATE_HZ:g} Hz any EEG amplifier "
                            "records", path=path)


def _check_record_count(header: Header, path: Path, file_size: int) -> None:
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


def parse_start_time(header: Header) -> tuple[datetime | None, str | None]:
    """Start date/time from the header (local clock of the recording site; the format stores no time zone), or
    (None, why) when the fields do not hold a valid date: that is a warning, never a reason to refuse a file."""
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


# ---------------------------------------------------------------------------------------------------------------
# Time-stamped annotation lists (TALs) and the record time line


_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)
# A TAL onset beyond this many seconds (about 30 years) from the start is not a time stamp of this recording.
MAX_TAL_SECONDS = 1e9


def parse_tals(block: bytes) -> tuple[float | None, list[tuple[float, float | None, str]]]:
    """One record's annotation bytes → (record time stamp, annotations). The first TAL of a record, whose
    text is empty, is the record's onset relative to the header start time. Onsets and durations that are not
    finite or lie absurdly far from the start are dropped, not trusted."""
    stamp: float | None = None
    found: list[tuple[float, float | None, str]] = []
    for number, match in enumerate(_TAL.finditer(block)):
        onset = float(match.group(1))
        duration = float(match.group(2)) if match.group(2) else None
        if not (math.isfinite(onset) and abs(onset) <= MAX_TAL_SECONDS):
            continue
        if duration is not None and not (math.isfinite(duration) and duration <= MAX_TAL_SECONDS):
            duration = None
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
                found.append((onset, duration, decode_text(text).strip()))
    return stamp, found


@dataclass
class Timeline:
    """Where the stored records lie in true time (EDF+ TALs), and the annotations they carry."""

    segments: list[Segment]
    annotations: list[Annotation]
    origin_s: float  # the first record's time stamp: the start time's sub-second offset (EDF+)
    warnings: list[str]


def read_timeline(path: Path, header: Header) -> Timeline:
    """Read only the annotation bytes of each record (positioned reads; the samples are never touched) and
    turn their time stamps into contiguous segments. Plain EDF and EDF+C files are one segment."""
    duration = header.n_records * header.record_duration
    annotation_signals = [s for s in header.signals if s.is_annotation]
    warnings: list[str] = []
    if not annotation_signals:
        if header.discontinuous:
            warnings.append("EDF+D file without an annotation signal: record onsets unknown, gaps cannot be located")
        return Timeline([Segment(0.0, 0.0, duration)], [], 0.0, warnings)
    if header.n_records == 0:
        return Timeline([], [], 0.0, warnings)
    stamps = np.full(header.n_records, np.nan)
    raw_annotations: list[tuple[float, float | None, str]] = []
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        for record in range(header.n_records):
            base = header.header_bytes + record * header.record_bytes
            for number, signal in enumerate(annotation_signals):
                block = os.pread(fd, signal.samples_per_record * header.bytes_per_sample,
                                 base + signal.byte_offset_in_record)
                stamp, found = parse_tals(block)
                if number == 0 and stamp is not None:
                    stamps[record] = stamp
                raw_annotations.extend(found)
    finally:
        os.close(fd)

    missing = int(np.isnan(stamps).sum())
    if missing and header.discontinuous:
        warnings.append(
            f"{missing} of {header.n_records} records carry no time stamp; those are assumed contiguous "
            "with the record before"
        )
    # Without a stamp a record is taken to follow its predecessor; EDF+C and plain EDF promise exactly that.
    for record in np.flatnonzero(np.isnan(stamps)):
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
        warnings.append(
            f"{len(backwards)} record(s) start before the previous record ends (first at record {backwards[0]}); "
            "the file's time line overlaps"
        )
    starts = [0, *[int(b) for b in breaks]]
    ends = [*[int(b) for b in breaks], header.n_records]
    segments = [
        Segment(onset_s=float(relative[first]), data_start_s=first * header.record_duration,
                duration_s=(last - first) * header.record_duration)
        for first, last in zip(starts, ends)
    ]
    if len(segments) > 1:
        gap_total = float(relative[-1] + header.record_duration - duration)
        note = "" if header.discontinuous else f" although the header says {header.file_format}"
        warnings.append(
            f"discontinuous: {len(segments)} contiguous segments{note}, {gap_total:.3f} s of gaps; "
            "stored data is never joined across a gap"
        )
    annotations = sorted(
        (Annotation(onset_s=onset - origin, duration_s=length, text=text) for onset, length, text in raw_annotations),
        key=lambda a: (a.onset_s, a.text),
    )
    return Timeline(segments, annotations, origin, warnings)


# ---------------------------------------------------------------------------------------------------------------
# Our own record reader


class RecordReader:
    """Positioned reads of whole data records, a bounded batch at a time, decoded with numpy. It reads every
    file :func:`read_header` accepts (EDF+D, Latin-1 headers, mixed rates) and reads all requested channels in
    one pass over the records, where pyedflib makes one pass per channel."""

    name = "native"
    batch_bytes = 32 * 1024 * 1024

    def __init__(self, path: Path, header: Header, signal_numbers: list[int]):
        self._header = header
        self._signals = [header.signals[number] for number in signal_numbers]
        self._fd: int | None = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def digital_into(self, out: np.ndarray, channels: list[int], first: int, count: int) -> None:
        """Fill ``out`` (len(channels), count) with digital values of samples [first, first + count) of
        ``channels`` (indices into the data signals), which share one rate."""
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
