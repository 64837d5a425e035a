"""Cut examples/absence_excerpt.edf out of eeghdf's absence-epilepsy recording, without loss.

    python examples/make_excerpt.py PATH/TO/eeghdf_absence_epilepsy.edf [--out examples/absence_excerpt.edf]

Whole data records are copied byte for byte, so every signal keeps its int16 samples, physical and digital
ranges, label, unit and rate. Only three things are rewritten: the record count, the start time (moved to the
first copied record), and the annotation signal, whose time stamps and annotations are shifted so the excerpt
starts at 0 s. The default window is 180 s starting 10 s before the first ``SZ START``: it holds all three
annotated absence seizures, which occur during hyperventilation, and stays under 3 MB.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from lumamba_cli.recording import open_recording

SIGNAL_FIELD_WIDTHS = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)


def _field(width: int, text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > width:
        raise ValueError(f"{text!r} does not fit in {width} bytes")
    return raw.ljust(width, b" ")


def _tal(onset: float, text: str | None = None) -> bytes:
    if text is None:
        return f"+{onset:g}".encode() + b"\x14\x14\x00"
    return f"+{onset:.4f}".rstrip("0").rstrip(".").encode() + b"\x14" + text.encode("utf-8") + b"\x14\x00"


def make_excerpt(source: Path, out: Path, start_s: float | None, duration_s: float) -> Path:
    with open_recording(source) as rec:
        if rec.file_format not in ("EDF+C", "EDF") or len(rec.segments) != 1:
            sys.exit(f"{source}: expected a contiguous EDF(+C) recording, got {rec.file_format}")
        if start_s is None:
            seizures = [a.onset_s for a in rec.annotations if a.text == "SZ START"]
            if not seizures:
                sys.exit(f"{source}: no 'SZ START' annotation to centre the excerpt on; give --start")
            start_s = seizures[0] - 10.0
        annotations = list(rec.annotations)
        start_time = rec.start_time

    raw = source.read_bytes()
    n_signals = int(raw[252:256])
    header_bytes = int(raw[184:192])
    record_duration = float(raw[244:252])
    fields, offset = [], 256
    for width in SIGNAL_FIELD_WIDTHS:
        fields.append([raw[offset + i * width : offset + (i + 1) * width].decode("latin-1").strip() for i in range(n_signals)])
        offset += width * n_signals
    labels = fields[0]
    samples = [int(v) for v in fields[8]]
    annotation_signal = labels.index("EDF Annotations")
    record_bytes = 2 * sum(samples)
    annotation_offset = 2 * sum(samples[:annotation_signal])
    annotation_size = 2 * samples[annotation_signal]

    first_record = int(start_s // record_duration)
    n_records = int(round(duration_s / record_duration))
    excerpt_start = first_record * record_duration
    excerpt_end = excerpt_start + n_records * record_duration
    inside = [a for a in annotations if excerpt_start <= a.onset_s < excerpt_end]

    # Each annotation goes into the record it falls in, or the next one with room (an EDF+ TAL may sit in any
    # record; readers take the onset from the TAL, not from the record carrying it).
    pending = [(a.onset_s - excerpt_start, a.text) for a in inside]
    blocks = []
    for record in range(n_records):
        block = _tal(record * record_duration)
        while pending and pending[0][0] < (record + 1) * record_duration:
            entry = _tal(*pending[0])
            if len(block) + len(entry) > annotation_size:
                break
            block += entry
            pending.pop(0)
        blocks.append(block.ljust(annotation_size, b"\x00"))
    if pending:
        sys.exit(f"{len(pending)} annotations do not fit in the excerpt's annotation signal")

    header = bytearray(raw[:header_bytes])
    new_start = start_time + timedelta(seconds=excerpt_start)
    header[176:184] = _field(8, new_start.strftime("%H.%M.%S"))
    header[168:176] = _field(8, new_start.strftime("%d.%m.%y"))
    recording_field = raw[88:168].decode("ascii")
    header[88:168] = _field(
        80, recording_field.replace(start_time.strftime("%d-%b-%Y").upper(), new_start.strftime("%d-%b-%Y").upper()).strip()
    )
    header[236:244] = _field(8, str(n_records))
    header[192:236] = _field(44, "EDF+C")

    body = bytearray()
    for index, record in enumerate(range(first_record, first_record + n_records)):
        source_record = raw[header_bytes + record * record_bytes : header_bytes + (record + 1) * record_bytes]
        body += source_record[:annotation_offset] + blocks[index] + source_record[annotation_offset + annotation_size :]
    out.write_bytes(bytes(header) + bytes(body))
    print(
        f"{out}: {n_records} s from {excerpt_start:g} s of {source.name}, {len(inside)} annotations, "
        f"{out.stat().st_size:,} bytes"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="eeghdf_absence_epilepsy.edf (see examples/README.md)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "absence_excerpt.edf")
    parser.add_argument("--start", type=float, default=None, help="start second (default: 10 s before the first seizure)")
    parser.add_argument("--duration", type=float, default=180.0, help="length in seconds (default 180)")
    args = parser.parse_args()
    make_excerpt(args.source, args.out, args.start, args.duration)


if __name__ == "__main__":
    main()
