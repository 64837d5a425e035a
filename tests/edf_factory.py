"""Makers of EDF/BDF edge cases that no package ships: truncated files, lying headers, EDF+D with gaps,
Latin-1 units, 24-bit BDF made from real data, and a plain streaming writer.

Everything here works on bytes with its own minimal header code, deliberately independent of
``lumamba_cli.recording``, so a test can compare the reader against a truth it did not compute itself.
Importable by any test (``from edf_factory import ...``; pytest puts tests/ on sys.path) and by benchmarks/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

SIGNAL_FIELD_WIDTHS = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)  # label … reserved, per the EDF specification


@dataclass
class RawHeader:
    fixed: bytearray  # the 256-byte fixed part
    signal_fields: list[list[bytes]]  # [field][signal] raw bytes
    n_signals: int
    header_bytes: int
    n_records: int
    record_duration: float
    bytes_per_sample: int

    def field(self, which: int, signal: int) -> str:
        return self.signal_fields[which][signal].decode("latin-1").strip()

    @property
    def samples_per_record(self) -> list[int]:
        return [int(self.field(8, s)) for s in range(self.n_signals)]

    @property
    def labels(self) -> list[str]:
        return [self.field(0, s) for s in range(self.n_signals)]

    @property
    def record_bytes(self) -> int:
        return sum(self.samples_per_record) * self.bytes_per_sample

    def annotation_signal(self) -> int | None:
        for number, label in enumerate(self.labels):
            if label in ("EDF Annotations", "BDF Annotations"):
                return number
        return None

    def signal_offsets(self) -> list[int]:
        offsets, position = [], 0
        for spr in self.samples_per_record:
            offsets.append(position)
            position += spr * self.bytes_per_sample
        return offsets

    def to_bytes(self) -> bytes:
        fixed = bytearray(self.fixed)
        fixed[184:192] = _pad(str(256 * (self.n_signals + 1)), 8)
        fixed[236:244] = _pad(str(self.n_records), 8)
        fixed[244:252] = _pad(_number(self.record_duration), 8)
        fixed[252:256] = _pad(str(self.n_signals), 4)
        out = bytes(fixed)
        for column in self.signal_fields:
            out += b"".join(column)
        return out


def _pad(text: str | bytes, width: int) -> bytes:
    raw = text.encode("latin-1") if isinstance(text, str) else text
    if len(raw) > width:
        raise ValueError(f"{raw!r} does not fit in {width} bytes")
    return raw.ljust(width, b" ")


def _number(value: float) -> str:
    """Shortest decimal that fits an 8-character header field."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.8g}"[:8]


def read_raw_header(path: str | Path) -> RawHeader:
    data = Path(path).read_bytes()
    n_signals = int(data[252:256])
    fields, offset = [], 256
    for width in SIGNAL_FIELD_WIDTHS:
        fields.append([data[offset + i * width : offset + (i + 1) * width] for i in range(n_signals)])
        offset += width * n_signals
    return RawHeader(
        fixed=bytearray(data[:256]),
        signal_fields=fields,
        n_signals=n_signals,
        header_bytes=int(data[184:192]),
        n_records=int(data[236:244]),
        record_duration=float(data[244:252]),
        bytes_per_sample=3 if data[0:1] == b"\xff" else 2,
    )


def records_of(path: str | Path) -> tuple[RawHeader, list[bytes]]:
    header = read_raw_header(path)
    data = Path(path).read_bytes()[header.header_bytes :]
    size = header.record_bytes
    return header, [data[i * size : (i + 1) * size] for i in range(len(data) // size)]


# ------------------------------------------------------------------------------------------------------------
# Byte patchers on real files


def truncate(src: Path, dst: Path, drop_bytes: int) -> Path:
    """Cut ``drop_bytes`` off the end, leaving the header's record count as it was."""
    data = Path(src).read_bytes()
    dst.write_bytes(data[: len(data) - drop_bytes])
    return dst


def set_record_count(src: Path, dst: Path, n_records: int) -> Path:
    """Keep every byte but write ``n_records`` into the header (a header that lies about its size)."""
    data = bytearray(Path(src).read_bytes())
    data[236:244] = _pad(str(n_records), 8)
    dst.write_bytes(bytes(data))
    return dst


def patch_header_bytes(src: Path, dst: Path, offset: int, raw: bytes) -> Path:
    data = bytearray(Path(src).read_bytes())
    data[offset : offset + len(raw)] = raw
    dst.write_bytes(bytes(data))
    return dst


def set_unit(src: Path, dst: Path, unit: bytes, signals: Sequence[int] | None = None) -> Path:
    """Rewrite the physical-dimension field (raw bytes, e.g. Latin-1 ``b"\\xb5V"``) of some or all data signals."""
    header = read_raw_header(src)
    annotation = header.annotation_signal()
    chosen = [s for s in range(header.n_signals) if s != annotation] if signals is None else list(signals)
    for signal in chosen:
        header.signal_fields[2][signal] = _pad(unit, 8)
    data = Path(src).read_bytes()
    dst.write_bytes(header.to_bytes() + data[header.header_bytes :])
    return dst


def tal_block(
    onset: float, annotations: Iterable[tuple[float, float | None, str]], size: int, encoding: str = "utf-8"
) -> bytes:
    """One record's annotation bytes: the time-keeping TAL, then ``annotations``, zero-padded to ``size``."""
    block = f"{onset:+.7g}".encode() + b"\x14\x14\x00"
    for start, duration, text in annotations:
        stamp = f"{start:+.7g}".encode()
        if duration is not None:
            stamp += b"\x15" + f"{duration:.7g}".encode()
        block += stamp + b"\x14" + text.encode(encoding) + b"\x14\x00"
    if len(block) > size:
        raise ValueError(f"annotations need {len(block)} bytes, the record has {size}")
    return block.ljust(size, b"\x00")


def make_discontinuous(
    src: Path,
    dst: Path,
    gaps: dict[int, float],
    annotations: Sequence[tuple[float, float | None, str]] = (),
    encoding: str = "utf-8",
) -> tuple[Path, list[float]]:
    """Rewrite an EDF+ file as EDF+D: records keep their samples, but the record that starts at index k is
    stamped ``gaps[k]`` seconds later than contiguous (cumulative). ``annotations`` (true onsets) are put into
    the record whose stamp precedes them. Returns the path and the true onset of every record."""
    header, records = records_of(src)
    annotation = header.annotation_signal()
    if annotation is None:
        raise ValueError(f"{src} has no annotation signal to carry record time stamps")
    offsets = header.signal_offsets()
    size = header.samples_per_record[annotation] * header.bytes_per_sample
    onsets, shift = [], 0.0
    for index in range(len(records)):
        shift += gaps.get(index, 0.0)
        onsets.append(index * header.record_duration + shift)
    header.fixed[192:236] = _pad(("BDF+D" if header.bytes_per_sample == 3 else "EDF+D"), 44)
    out = bytearray(header.to_bytes())
    for index, record in enumerate(records):
        following = onsets[index + 1] if index + 1 < len(onsets) else float("inf")
        inside = [a for a in annotations if onsets[index] <= a[0] < following]
        block = tal_block(onsets[index], inside, size, encoding)
        out += record[: offsets[annotation]] + block + record[offsets[annotation] + size :]
    dst.write_bytes(bytes(out))
    return dst, onsets


def edf_to_bdf(src: Path, dst: Path, scale: int = 256) -> Path:
    """A 24-bit BDF(+) with the same physical values as ``src``: every digital sample and the digital range are
    multiplied by ``scale`` (so the samples really use the upper bytes, sign included). An annotation signal is
    carried over as ``BDF Annotations`` with its bytes unchanged and zero-padded to whole 3-byte samples."""
    header, records = records_of(src)
    annotation = header.annotation_signal()
    spr_in = header.samples_per_record
    offsets = header.signal_offsets()
    spr_out = list(spr_in)
    for signal in range(header.n_signals):
        if signal == annotation:
            spr_out[signal] = -(-spr_in[signal] * 2 // 3)
            header.signal_fields[0][signal] = _pad("BDF Annotations", 16)
            header.signal_fields[5][signal] = _pad("-8388608", 8)
            header.signal_fields[6][signal] = _pad("8388607", 8)
        else:
            for field in (5, 6):
                header.signal_fields[field][signal] = _pad(str(int(header.field(field, signal)) * scale), 8)
        header.signal_fields[8][signal] = _pad(str(spr_out[signal]), 8)
    header.fixed[0:8] = b"\xffBIOSEMI"
    reserved = header.fixed[192:236].decode("latin-1").strip()
    header.fixed[192:236] = _pad(reserved.replace("EDF+", "BDF+") if reserved.startswith("EDF+") else "24BIT", 44)
    header.bytes_per_sample = 3
    out = bytearray(header.to_bytes())
    for record in records:
        for signal in range(header.n_signals):
            chunk = record[offsets[signal] : offsets[signal] + spr_in[signal] * 2]
            if signal == annotation:
                out += chunk.ljust(spr_out[signal] * 3, b"\x00")
            else:
                out += int24_bytes(np.frombuffer(chunk, dtype="<i2").astype(np.int32) * scale)
    dst.write_bytes(bytes(out))
    return dst


def int24_bytes(values: np.ndarray) -> bytes:
    little = np.asarray(values, dtype="<i4").view(np.uint8).reshape(-1, 4)
    return little[:, :3].tobytes()


# ------------------------------------------------------------------------------------------------------------
# A streaming writer for synthetic files (benchmarks, long recordings)


@dataclass
class SignalSpec:
    label: str
    samples_per_record: int
    unit: str = "uV"
    physical_min: float = -3276.8
    physical_max: float = 3276.7
    digital_min: int = -32768
    digital_max: int = 32767
    transducer: str = ""
    prefilter: str = ""


def header_bytes(
    signals: Sequence[SignalSpec],
    n_records: int,
    record_duration: float,
    *,
    start: datetime = datetime(2020, 1, 1, 0, 0, 0),
    bdf: bool = False,
    reserved: str = "",
    patient: str = "X X X X",
    recording: str = "Startdate X X X X",
) -> bytes:
    version = b"\xffBIOSEMI" if bdf else _pad("0", 8)
    fixed = (
        version
        + _pad(patient, 80)
        + _pad(recording, 80)
        + _pad(start.strftime("%d.%m.%y"), 8)
        + _pad(start.strftime("%H.%M.%S"), 8)
        + _pad(str(256 * (len(signals) + 1)), 8)
        + _pad(reserved, 44)
        + _pad(str(n_records), 8)
        + _pad(_number(record_duration), 8)
        + _pad(str(len(signals)), 4)
    )
    columns = [
        [_pad(s.label, 16) for s in signals],
        [_pad(s.transducer, 80) for s in signals],
        [_pad(s.unit, 8) for s in signals],
        [_pad(_number(s.physical_min), 8) for s in signals],
        [_pad(_number(s.physical_max), 8) for s in signals],
        [_pad(str(s.digital_min), 8) for s in signals],
        [_pad(str(s.digital_max), 8) for s in signals],
        [_pad(s.prefilter, 80) for s in signals],
        [_pad(str(s.samples_per_record), 8) for s in signals],
        [_pad("", 32) for _ in signals],
    ]
    return fixed + b"".join(b"".join(column) for column in columns)


def write_edf(
    path: Path,
    signals: Sequence[SignalSpec],
    n_records: int,
    record_duration: float,
    record_samples: Callable[[int], Sequence[np.ndarray]],
    **header_options,
) -> Path:
    """Write a plain EDF record by record: ``record_samples(k)`` returns one int16 array per signal. Memory stays
    at one record whatever ``n_records`` is."""
    with open(path, "wb") as handle:
        handle.write(header_bytes(signals, n_records, record_duration, **header_options))
        for record in range(n_records):
            arrays = record_samples(record)
            handle.write(b"".join(np.asarray(a, dtype="<i2").tobytes() for a in arrays))
    return path
