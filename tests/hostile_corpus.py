"""A corpus of hostile inputs: malformed recordings derived from the real files in ``../shared/data/`` (and from
``edf_factory``), odd file-system objects, and hostile side files (alias tables, head files).

Each :class:`Case` has a name, a builder that writes its input into a folder, and the outcome a user must get:
a refusal with a documented exit code, or acceptance (possibly with a warning). The expectations were written from
the EDF/BDF specification and the issue's list, not read off lumamba's behaviour. ``tests/test_hostile_corpus.py``
runs every case through ``info``, ``montage check`` and ``screen``.

Run as a script to write the corpus into a folder: ``python tests/hostile_corpus.py OUT``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edf_factory import (  # noqa: E402 - the path insert above makes the sibling importable as a script
    SIGNAL_FIELD_WIDTHS,
    edf_to_bdf,
    make_discontinuous,
    records_of,
    tal_block,
)

# the real recordings live in ../shared/data (as for conftest.py); LUMAMBA_SHARED points elsewhere
DATA = Path(os.environ.get("LUMAMBA_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"

# The real recordings the cases are cut from: small, different formats, with and without annotations.
CHB = "epilepsy2bids_chb01_01_sample.edf"  # EDF+C, 23 bipolar EEG + annotations, 256 Hz, 2 × 1 s
SEIZEIT = "epilepsy2bids_P_ID10_r5_sample.edf"  # EDF+C, 26 monopolar + annotations, 250 Hz, 2 × 1 s
SUBSECOND = "pyedflib_test_subsecond.edf"  # EDF+C, Fp1 + annotations, 128 Hz, 698 × 1 s
BDF = "pyedflib_test_generator.bdf"  # BDF+C, 24-bit, five rates, 30 × 1 s
SPKIT = "spkit_EEG16SecData.edf"  # plain EDF, 14 channels, 128 Hz, 16 s


class Kind(str, Enum):
    RECORDING = "recording"  # the case is the recording given to info / montage check / screen
    ALIASES = "aliases"  # the case is an --aliases file used with a good recording
    HEAD = "head"  # the case is a --head file used with a good recording


class Outcome(str, Enum):
    REFUSED = "refused"  # one line naming the file, exit ``code``
    ACCEPTED = "accepted"  # read (info exit 0), possibly with a warning line
    EITHER = "either"  # refused or accepted are both honest (e.g. screen may find nothing usable): no exit 1


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the input into the folder given, returns its path
    outcome: Outcome
    code: int = 3  # the exit code of a refusal
    kind: Kind = Kind.RECORDING
    tags: tuple[str, ...] = field(default=())  # "tuab": also screened with a formula-weight tuab head


# ------------------------------------------------------------------------------------------------ byte helpers

# offsets of the fixed header's fields (EDF specification)
VERSION, PATIENT, RECORDING, STARTDATE, STARTTIME, HEADER_BYTES, RESERVED, N_RECORDS, DURATION, NS = (
    (0, 8), (8, 80), (88, 80), (168, 8), (176, 8), (184, 8), (192, 44), (236, 8), (244, 8), (252, 4))
LABEL, TRANSDUCER, UNIT, PHYS_MIN, PHYS_MAX, DIG_MIN, DIG_MAX, PREFILTER, SPR, SIG_RESERVED = range(10)


def source(name: str) -> bytes:
    return (DATA / name).read_bytes()


def fixed(data: bytes, where: tuple[int, int], value: bytes | str) -> bytes:
    """``data`` with one fixed-header field replaced (padded with spaces, or cut to the field's width)."""
    offset, width = where
    raw = value.encode("latin-1") if isinstance(value, str) else value
    out = bytearray(data)
    out[offset:offset + width] = raw[:width].ljust(width, b" ")
    return bytes(out)


def signal_field_offset(data: bytes, which: int, signal: int) -> tuple[int, int]:
    ns = int(data[252:256])
    offset = 256 + sum(SIGNAL_FIELD_WIDTHS[:which]) * ns
    width = SIGNAL_FIELD_WIDTHS[which]
    return offset + signal * width, width


def sig(data: bytes, which: int, value: bytes | str, signals: list[int] | None = None) -> bytes:
    """``data`` with a per-signal header field replaced for ``signals`` (default: signal 0)."""
    for signal in signals if signals is not None else [0]:
        data = fixed(data, signal_field_offset(data, which, signal), value)
    return data


def header_length(data: bytes) -> int:
    return 256 * (int(data[252:256]) + 1)


def from_bytes(name: str, make: Callable[[], bytes], suffix: str = ".edf") -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / f"{name}{suffix}"
        path.write_bytes(make())
        return path
    return build


def set_tals(src: str, onsets: list[float | str], extra: dict[int, bytes] | None = None) -> bytes:
    """A real EDF+ with each record's time-keeping TAL replaced: ``onsets[k]`` (a number, or raw text written as
    is), or the raw annotation bytes ``extra[k]``."""
    header, records = records_of(DATA / src)
    annotation = header.annotation_signal()
    assert annotation is not None
    offset = header.signal_offsets()[annotation]
    size = header.samples_per_record[annotation] * header.bytes_per_sample
    out = bytearray(header.to_bytes())
    for index, record in enumerate(records):
        if extra and index in extra:
            block = extra[index][:size].ljust(size, b"\x00")
        else:
            onset = onsets[index % len(onsets)]
            if isinstance(onset, str):
                block = (onset.encode("latin-1") + b"\x14\x14\x00")[:size].ljust(size, b"\x00")
            else:
                block = tal_block(onset, [], size)
        out += record[:offset] + block + record[offset + size:]
    return bytes(out)


def with_annotation(src: str, record: int, text: bytes) -> bytes:
    """A real EDF+ with raw TAL bytes ``text`` appended after record ``record``'s time-keeping TAL."""
    header, records = records_of(DATA / src)
    annotation = header.annotation_signal()
    assert annotation is not None
    offset = header.signal_offsets()[annotation]
    size = header.samples_per_record[annotation] * header.bytes_per_sample
    out = bytearray(header.to_bytes())
    for index, rec in enumerate(records):
        block = rec[offset:offset + size]
        if index == record:
            keep = block[:block.index(b"\x00") + 1] if b"\x00" in block else b"+0\x14\x14\x00"
            block = (keep + text)[:size].ljust(size, b"\x00")
        out += rec[:offset] + block + rec[offset + size:]
    return bytes(out)


# ------------------------------------------------------------------------------------------------ the cases


def _recording_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, make: Callable[[], bytes], outcome: Outcome, code: int = 3, suffix: str = ".edf",
            tags: tuple[str, ...] = ()) -> None:
        cases.append(Case(name, from_bytes(name, make, suffix), outcome, code, Kind.RECORDING, tags))

    chb, seizeit, spkit = source(CHB), source(SEIZEIT), source(SPKIT)

    # -- truncation at every level
    add("empty_file", lambda: b"", Outcome.REFUSED)
    for cut in (1, 8, 100, 184, 255):
        add(f"trunc_fixed_header_{cut}", lambda cut=cut: chb[:cut], Outcome.REFUSED)
    for fraction in (0.1, 0.5, 0.99):
        add(f"trunc_signal_headers_{int(fraction * 100)}",
            lambda f=fraction: chb[:256 + int((header_length(chb) - 256) * f)], Outcome.REFUSED)
    add("header_only_zero_records_claimed_two", lambda: chb[:header_length(chb)], Outcome.REFUSED)
    add("zero_records", lambda: fixed(chb[:header_length(chb)], N_RECORDS, "0"), Outcome.EITHER)
    add("trunc_mid_record", lambda: chb[:len(chb) - 1000], Outcome.EITHER, tags=("tuab",))
    add("trunc_one_byte", lambda: chb[:-1], Outcome.EITHER)
    add("trunc_mid_first_record", lambda: chb[:header_length(chb) + 100], Outcome.EITHER)
    add("trunc_bdf_mid_record", lambda: source(BDF)[:-5000], Outcome.EITHER, suffix=".bdf")
    add("trailing_garbage", lambda: chb + b"\x00" * 777, Outcome.EITHER)

    # -- lying fixed headers
    for value in ("-1", "99999999", "1", "3", "100", "abc", "", "1.5", "-5", "1e3", "0x10"):
        add(f"n_records_{value or 'blank'}", lambda v=value: fixed(chb, N_RECORDS, v), Outcome.EITHER, tags=("tuab",)
            if value == "1" else ())
    for value in ("0", "255", "1024", "99999999", "-256", "abc", "6400.5"):
        add(f"header_bytes_{value}", lambda v=value: fixed(chb, HEADER_BYTES, v), Outcome.EITHER)
    for value in ("0", "-1", "9999", "abc", "", "1.5", "1000"):
        add(f"ns_{value or 'blank'}", lambda v=value: fixed(chb, NS, v), Outcome.REFUSED)
    for value in ("0", "-1", "1e-300", "NaN", "nan", "inf", "-inf", "garbage", "", "1e300", "0.000001", "1e-7"):
        add(f"duration_{value or 'blank'}", lambda v=value: fixed(chb, DURATION, v), Outcome.EITHER, tags=(
            ("tuab",) if value in ("1e-300", "0.000001") else ()))
    add("version_garbage", lambda: fixed(chb, VERSION, "\x1b[31mX"), Outcome.EITHER)
    add("reserved_edfplus_d_without_tals", lambda: fixed(spkit, RESERVED, "EDF+D"), Outcome.EITHER)
    add("reserved_garbage", lambda: fixed(chb, RESERVED, "\x1b]0;pwned\x07 [bold]x[/bold]"), Outcome.ACCEPTED)

    # -- per-signal header lies
    for value in ("0", "-1", "-256", "99999999", "abc", "", "1.5", "1e9"):
        add(f"spr_{value or 'blank'}", lambda v=value: sig(chb, SPR, v), Outcome.EITHER)
    add("spr_all_zero", lambda: sig(chb, SPR, "0", list(range(23))), Outcome.EITHER)
    add("spr_1_all_eeg", lambda: sig(chb, SPR, "1", list(range(23))), Outcome.EITHER, tags=("tuab",))
    for name, lo, hi in (("pm_huge", "-1e307", "1e307"), ("pm_equal", "100", "100"), ("pm_inf", "-inf", "inf"),
                         ("pm_nan", "nan", "nan"), ("pm_garbage", "abc", "def"), ("pm_blank", "", ""),
                         ("pm_tiny", "-1e-300", "1e-300"), ("pm_1e30", "-1e30", "1e30"),
                         ("pm_huge_neg", "-1e307", "-1e306")):
        add(f"{name}_one", lambda lo=lo, hi=hi: sig(sig(chb, PHYS_MIN, lo), PHYS_MAX, hi), Outcome.EITHER)
        add(f"{name}_all", lambda lo=lo, hi=hi: sig(sig(chb, PHYS_MIN, lo, list(range(23))), PHYS_MAX, hi,
                                                     list(range(23))), Outcome.EITHER,
            tags=("tuab",) if name in ("pm_huge", "pm_1e30", "pm_tiny") else ())
    for name, lo, hi in (("dm_equal", "0", "0"), ("dm_reversed", "2047", "-2048"), ("dm_huge", "-99999999",
                         "99999999"), ("dm_garbage", "x", "y"), ("dm_float", "-2048.5", "2047.5"),
                         ("dm_blank", "", "")):
        add(f"{name}_one", lambda lo=lo, hi=hi: sig(sig(chb, DIG_MIN, lo), DIG_MAX, hi), Outcome.EITHER)
        add(f"{name}_all", lambda lo=lo, hi=hi: sig(sig(chb, DIG_MIN, lo, list(range(23))), DIG_MAX, hi,
                                                     list(range(23))), Outcome.EITHER)
    add("bdf_dm_beyond_24bit", lambda: sig(sig(source(BDF), DIG_MIN, "-99999999"), DIG_MAX, "99999999"),
        Outcome.EITHER, suffix=".bdf")

    # -- text fields: non-ASCII, control characters, escape sequences, rich markup
    hostile_texts = {
        "esc": "\x1b[2J\x1b[31mFp1",
        "markup": "[bold red]Fp1[/]",
        "markup_unclosed": "[link=file:///etc/passwd]",
        "nul": "Fp1\x00\x00",
        "latin1": "F\xe9p1 \xb5V",
        "c1": "\x9b31mFp1",
        "bell_backspace": "Fp1\x07\x08\x08\x08",
    }
    for name, text in hostile_texts.items():
        add(f"label_{name}", lambda t=text: sig(chb, LABEL, t), Outcome.ACCEPTED)
        add(f"patient_{name}", lambda t=text: fixed(chb, PATIENT, t * 3), Outcome.ACCEPTED)
        add(f"recording_{name}", lambda t=text: fixed(chb, RECORDING, "Startdate " + t * 3), Outcome.ACCEPTED)
    add("label_utf8_bytes", lambda: sig(chb, LABEL, "Fp1 µV ✓".encode()), Outcome.ACCEPTED)
    add("label_invalid_utf8", lambda: sig(chb, LABEL, b"\xff\xfe\xc3(\x80"), Outcome.ACCEPTED)
    add("label_blank_all", lambda: sig(chb, LABEL, "", list(range(23))), Outcome.EITHER)
    add("labels_all_duplicate", lambda: sig(chb, LABEL, "Cz", list(range(23))), Outcome.EITHER)
    add("labels_duplicate_monopolar", lambda: sig(seizeit, LABEL, "Fp1", [1]), Outcome.EITHER, tags=("tuab",))
    add("unit_esc", lambda: sig(chb, UNIT, "\x1b[5m"), Outcome.EITHER)
    add("unit_markup", lambda: sig(chb, UNIT, "[red]uV", list(range(23))), Outcome.EITHER)
    add("unit_garbage_all", lambda: sig(chb, UNIT, "furlong", list(range(23))), Outcome.EITHER)
    add("transducer_esc", lambda: sig(chb, TRANSDUCER, "\x1b[1mAgAgCl[/]"), Outcome.ACCEPTED)
    add("prefilter_markup", lambda: sig(chb, PREFILTER, "[blink]HP:0.1Hz"), Outcome.ACCEPTED)
    add("annotation_label_only", lambda: sig(chb, LABEL, "EDF Annotations", list(range(23))), Outcome.EITHER)

    # -- start date and time
    for name, date, time in (("month13", "06.13.76", "11.42.54"), ("hour25", "06.11.76", "25.42.54"),
                             ("day00", "00.11.76", "11.42.54"), ("feb30", "30.02.76", "11.42.54"),
                             ("garbage", "xx.yy.zz", "aa:bb:cc"), ("blank", "", ""), ("minute99", "06.11.76",
                             "11.99.54"), ("colons", "06:11:76", "11:42:54"), ("negative", "-1.-1.-1",
                             "-1.-1.-1"), ("esc", "\x1b[31m", "\x1b[0m")):
        add(f"start_{name}", lambda d=date, t=time: fixed(fixed(chb, STARTDATE, d), STARTTIME, t),
            Outcome.ACCEPTED, tags=("tuab",) if name == "month13" else ())
    add("start_year_9999_tal_past", lambda: fixed(fixed(
        set_tals(CHB, [4e8, 4e8 + 1]), RECORDING, "Startdate 31-DEC-9999 X X X"), STARTDATE, "31.12.99"),
        Outcome.EITHER)
    add("start_recording_field_year_9999", lambda: fixed(chb, RECORDING, "Startdate 31-DEC-9999 X X X"),
        Outcome.ACCEPTED)
    add("start_recording_field_garbage", lambda: fixed(chb, RECORDING, "Startdate 99-FOO-0000 X X X"),
        Outcome.ACCEPTED)

    # -- TALs (EDF+)
    add("tal_huge_onset_1e20", lambda: set_tals(CHB, [1e20, 1e20 + 1]), Outcome.EITHER, tags=("tuab",))
    add("tal_onset_1e300", lambda: set_tals(CHB, ["+1e300", "+1e300"]), Outcome.EITHER)
    add("tal_onset_inf", lambda: set_tals(CHB, ["+inf", "+inf"]), Outcome.EITHER)
    add("tal_onset_nan", lambda: set_tals(CHB, ["+nan", "+nan"]), Outcome.EITHER)
    add("tal_negative_onsets", lambda: set_tals(CHB, [-5.0, -4.0]), Outcome.EITHER)
    add("tal_first_huge_only", lambda: set_tals(CHB, [1e15, 1.0]), Outcome.EITHER)
    add("tal_garbage_bytes", lambda: set_tals(CHB, [0.0], extra={0: bytes(range(256)) * 3,
                                                                1: b"\xff" * 200}), Outcome.EITHER)
    add("tal_no_terminator", lambda: set_tals(CHB, [0.0], extra={1: b"+1\x14\x14" + b"x" * 5000}), Outcome.EITHER)
    add("tal_no_sign", lambda: set_tals(CHB, ["0", "1"]), Outcome.EITHER)
    add("tal_empty_all", lambda: set_tals(CHB, [0.0], extra={0: b"", 1: b""}), Outcome.EITHER)
    add("tal_annotation_inf_duration", lambda: with_annotation(CHB, 0, b"+0.5\x15inf\x14boom\x14\x00"),
        Outcome.EITHER)
    add("tal_annotation_nan_duration", lambda: with_annotation(CHB, 0, b"+0.5\x15nan\x14boom\x14\x00"),
        Outcome.EITHER)
    add("tal_annotation_negative_duration", lambda: with_annotation(CHB, 0, b"+0.5\x15-3\x14x\x14\x00"),
        Outcome.EITHER)
    add("tal_annotation_huge_onset", lambda: with_annotation(CHB, 0, b"+1e20\x1510\x14far\x14\x00"),
        Outcome.EITHER)
    add("tal_annotation_esc_text", lambda: with_annotation(CHB, 0, b"+0.5\x14\x1b[2J[bold]x[/]\x14\x00"),
        Outcome.ACCEPTED)
    add("tal_annotation_invalid_utf8", lambda: with_annotation(CHB, 1, b"+1.5\x14\xff\xfe\xfd\x14\x00"),
        Outcome.ACCEPTED)
    add("edfd_unordered", lambda: fixed(set_tals(SUBSECOND, [float((698 - k) % 698) for k in range(698)]),
                                        RESERVED, "EDF+D"), Outcome.EITHER)
    add("edfd_overlapping", lambda: fixed(set_tals(SUBSECOND, [k * 0.5 for k in range(698)]), RESERVED, "EDF+D"),
        Outcome.EITHER)
    add("edfd_all_same_onset", lambda: fixed(set_tals(SUBSECOND, [7.0]), RESERVED, "EDF+D"), Outcome.EITHER)
    add("edfd_huge_gap", lambda: fixed(set_tals(SUBSECOND, [0.0] + [1e9 + k for k in range(697)]), RESERVED,
                                       "EDF+D"), Outcome.EITHER, tags=("tuab",))
    add("edfd_negative_onsets", lambda: fixed(set_tals(SUBSECOND, [float(k) - 1e6 for k in range(698)]), RESERVED,
                                              "EDF+D"), Outcome.EITHER)
    add("edfc_with_gaps", lambda: set_tals(SUBSECOND, [2.0 * k for k in range(698)]), Outcome.EITHER)

    # -- BDF oddities
    bdf = source(BDF)
    add("bdf_as_edf_suffix", lambda: bdf, Outcome.EITHER)
    add("bdf_version_edf", lambda: fixed(bdf, VERSION, "0"), Outcome.EITHER, suffix=".bdf")
    add("edf_version_bdf", lambda: fixed(chb, VERSION, b"\xffBIOSEMI"), Outcome.EITHER, suffix=".bdf")
    add("bdf_reserved_edfplus", lambda: fixed(bdf, RESERVED, "EDF+C"), Outcome.EITHER, suffix=".bdf")
    add("bdf_odd_annotation_bytes", lambda: sig(bdf, SPR, "1", [5]), Outcome.EITHER, suffix=".bdf")
    add("bdf_rates_huge", lambda: sig(bdf, SPR, "9999999", [0, 1]), Outcome.EITHER, suffix=".bdf")
    add("bdf_truncated_header", lambda: bdf[:1000], Outcome.REFUSED, suffix=".bdf")
    add("bdf_letter_case_suffix", lambda: bdf, Outcome.EITHER, suffix=".BDF")

    # -- physics: rates
    add("rate_100khz_plus", lambda: fixed(sig(chb, SPR, "256", list(range(23))), DURATION, "0.001"),
        Outcome.EITHER)
    add("rate_1_per_hour", lambda: fixed(sig(chb, SPR, "1", list(range(24))), DURATION, "3600"), Outcome.EITHER)
    add("rate_very_low", lambda: fixed(sig(chb, SPR, "1", list(range(23))), DURATION, "99999999"), Outcome.EITHER)

    # -- edf_factory derived
    def bdf_from_edf() -> bytes:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            return edf_to_bdf(DATA / CHB, Path(tmp) / "x.bdf").read_bytes()
    add("bdf_from_edf_factory_ok", bdf_from_edf, Outcome.ACCEPTED, suffix=".bdf")

    def discontinuous() -> bytes:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = make_discontinuous(DATA / SUBSECOND, Path(tmp) / "d.edf", {100: 1e6, 200: -5e5})
            return path.read_bytes()
    add("edfd_factory_backwards_gap", discontinuous, Outcome.EITHER)
    return cases


def _filesystem_cases() -> list[Case]:
    def fifo(folder: Path) -> Path:
        path = folder / "fifo.edf"
        os.mkfifo(path)
        return path

    def directory(folder: Path) -> Path:
        path = folder / "directory.edf"
        path.mkdir()
        return path

    def loop(folder: Path) -> Path:
        path = folder / "loop.edf"
        os.symlink(path.name, path)
        return path

    def broken(folder: Path) -> Path:
        path = folder / "broken.edf"
        os.symlink("does-not-exist.edf", path)
        return path

    def escaping(folder: Path) -> Path:
        """A folder with one link to a (good) recording outside it: the folder is the input."""
        outside = folder / "outside"
        outside.mkdir()
        target = outside / "real.edf"
        target.write_bytes(source(CHB))
        walked = folder / "walked"
        walked.mkdir()
        os.symlink(target, walked / "link.edf")
        return walked

    def folder_with_loop(folder: Path) -> Path:
        walked = folder / "walked_loop"
        walked.mkdir()
        (walked / "good.edf").write_bytes(source(CHB))
        os.symlink("self.edf", walked / "self.edf")
        os.symlink(".", walked / "sub")
        return walked

    def long_name(folder: Path) -> Path:
        path = folder / ("n" * 231 + ".edf")  # 235 characters: the longest names a file system allows, nearly
        path.write_bytes(source(CHB))
        return path

    def unreadable(folder: Path) -> Path:
        path = folder / "unreadable.edf"
        path.write_bytes(source(CHB))
        path.chmod(0)
        return path

    def missing(folder: Path) -> Path:
        return folder / "missing.edf"

    return [
        Case("fifo", fifo, Outcome.REFUSED),
        Case("directory_named_edf", directory, Outcome.EITHER),
        Case("symlink_loop", loop, Outcome.REFUSED),
        Case("broken_symlink", broken, Outcome.REFUSED),
        Case("folder_link_leaving_it", escaping, Outcome.EITHER),
        Case("folder_with_symlink_loops", folder_with_loop, Outcome.EITHER),
        Case("name_235_characters", long_name, Outcome.ACCEPTED),
        Case("unreadable_permissions", unreadable, Outcome.EITHER),
        Case("missing_file", missing, Outcome.REFUSED),
    ]


def _alias_cases() -> list[Case]:
    def text(name: str, content: bytes, suffix: str = ".tsv") -> Callable[[Path], Path]:
        def build(folder: Path) -> Path:
            path = folder / f"{name}{suffix}"
            path.write_bytes(content)
            return path
        return build

    nested = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"aliases": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"
    return [
        Case("aliases_binary", text("aliases_binary", bytes(range(256)) * 40), Outcome.REFUSED, 3, Kind.ALIASES),
        Case("aliases_huge", text("aliases_huge", b"name\tcanonical\n" + b"x\tCz\n" * 3_000_000), Outcome.REFUSED,
             3, Kind.ALIASES),
        Case("aliases_deep_json", text("aliases_deep", nested, ".json"), Outcome.REFUSED, 3, Kind.ALIASES),
        Case("aliases_deep_object_json", text("aliases_deep_obj", deep_object, ".json"), Outcome.REFUSED, 3,
             Kind.ALIASES),
        Case("aliases_no_header", text("aliases_noheader", b"FP1-F7\tFp1\n"), Outcome.REFUSED, 3, Kind.ALIASES),
        Case("aliases_empty", text("aliases_empty", b""), Outcome.REFUSED, 3, Kind.ALIASES),
        Case("aliases_nan_position", text("aliases_nanpos", b"name\tx\ty\tz\nQQ\tnan\tinf\t0\n"), Outcome.REFUSED,
             3, Kind.ALIASES),
        Case("aliases_json_nan", text("aliases_jnan", b'{"positions": {"QQ": [NaN, 1, 2]}}', ".json"),
             Outcome.REFUSED, 3, Kind.ALIASES),
        Case("aliases_json_list", text("aliases_jlist", b"[1, 2, 3]", ".json"), Outcome.REFUSED, 3, Kind.ALIASES),
        Case("aliases_esc_names", text("aliases_esc", b"name\tcanonical\n\x1b[31mFP1-F7\t[bold]Cz\n"),
             Outcome.EITHER, 3, Kind.ALIASES),
        Case("aliases_utf16", text("aliases_utf16", "name\tcanonical\nA\tCz\n".encode("utf-16")), Outcome.REFUSED,
             3, Kind.ALIASES),
    ]


# ------------------------------------------------------------------------------------------------ head files


def write_safetensors(path: Path, tensors: dict[str, tuple[list[int], bytes]], metadata: dict[str, str] | None,
                      raw_header: bytes | None = None) -> Path:
    """A safetensors file written by hand (F32 tensors), so a test can make headers no library would write."""
    if raw_header is None:
        header: dict[str, object] = {}
        offset = 0
        for key, (shape, data) in tensors.items():
            header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
            offset += len(data)
        if metadata is not None:
            header["__metadata__"] = metadata
        raw_header = json.dumps(header).encode()
    body = b"".join(data for _, data in tensors.values())
    path.write_bytes(struct.pack("<Q", len(raw_header)) + raw_header + body)
    return path


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + length]), data[8 + length:]


def rewrite_head(src: Path, dst: Path, change: Callable[[dict], None]) -> Path:
    """A copy of head ``src`` whose ``lumamba_head`` metadata document was changed in place by ``change``."""
    header, body = read_safetensors(src)
    document = json.loads(header["__metadata__"]["lumamba_head"])
    change(document)
    header["__metadata__"]["lumamba_head"] = json.dumps(document)
    raw = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return dst


def _head_cases() -> list[Case]:
    def formula(folder: Path) -> Path:
        from lumamba_cli.model.formula import save_formula_head

        path = folder.parent / "_formula_tuab.safetensors"
        if not path.exists():
            save_formula_head("tuab", path)
        return path

    def changed(name: str, change: Callable[[dict], None]) -> Callable[[Path], Path]:
        return lambda folder: rewrite_head(formula(folder), folder / f"{name}.safetensors", change)

    def set_config(**values: object) -> Callable[[dict], None]:
        return lambda document: document["config"].update(values)

    def set_field(key: str, value: object) -> Callable[[dict], None]:
        return lambda document: document.__setitem__(key, value)

    def reverse_labels(document: dict) -> None:
        document["labels"] = list(reversed(document["labels"]))

    def nested_metadata(folder: Path) -> Path:
        deep = "[" * 50_000 + "]" * 50_000
        return write_safetensors(folder / "head_nested.safetensors", {"w": ([1], b"\x00" * 4)},
                                 {"lumamba_head": deep})

    def nested_header(folder: Path) -> Path:
        raw = b'{"a":' * 20_000 + b"1" + b"}" * 20_000
        return write_safetensors(folder / "head_nested_header.safetensors", {}, None, raw_header=raw)

    def huge_header_length(folder: Path) -> Path:
        path = folder / "head_huge_length.safetensors"
        path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
        return path

    def binary(folder: Path) -> Path:
        path = folder / "head_binary.safetensors"
        path.write_bytes(bytes(range(256)) * 64)
        return path

    def pickle_file(folder: Path) -> Path:
        path = folder / "head_pickle.safetensors"
        path.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
        return path

    def esc_metadata(document: dict) -> None:
        document["metrics"] = {"note": "\x1b[2J\x1b[31m[bold]owned[/]"}
        document["training"]["data"] = {"dataset": "\x1b]0;title\x07"}

    return [
        Case("head_num_heads_0", changed("head_num_heads_0", set_config(num_heads=0)), Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_num_heads_negative", changed("head_num_heads_negative", set_config(num_heads=-4)),
             Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_embed_dim_2p40", changed("head_embed_dim_2p40", set_config(embed_dim=2**40)), Outcome.REFUSED, 5,
             Kind.HEAD),
        Case("head_depth_huge", changed("head_depth_huge", set_config(depth=10**9)), Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_config_string", changed("head_config_string", set_config(embed_dim="lots")), Outcome.REFUSED, 5,
             Kind.HEAD),
        Case("head_config_float_nan", changed("head_config_float_nan", set_config(embed_dim=float("nan"))),
             Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_labels_reversed", changed("head_labels_reversed", reverse_labels), Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_labels_wrong", changed("head_labels_wrong", set_field("labels", ["cat", "dog"])), Outcome.REFUSED,
             5, Kind.HEAD),
        Case("head_num_classes_lie", changed("head_num_classes_lie", set_field("num_classes", 7)), Outcome.REFUSED, 5,
             Kind.HEAD),
        Case("head_recipe_hash_wrong", changed("head_recipe_hash_wrong", set_field("recipe_hash", "0" * 64)),
             Outcome.REFUSED, 5, Kind.HEAD, ("import_warns",)),
        Case("head_task_traversal", changed("head_task_traversal", set_field("task", "../../etc")), Outcome.REFUSED, 5,
             Kind.HEAD),
        Case("head_esc_metadata", changed("head_esc_metadata", esc_metadata), Outcome.EITHER, 5, Kind.HEAD),
        Case("head_nested_metadata", nested_metadata, Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_nested_header", nested_header, Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_huge_header_length", huge_header_length, Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_binary", binary, Outcome.REFUSED, 5, Kind.HEAD),
        Case("head_pickle", pickle_file, Outcome.REFUSED, 5, Kind.HEAD),
    ]


def all_cases() -> list[Case]:
    cases = _recording_cases() + _filesystem_cases() + _alias_cases() + _head_cases()
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"duplicate case names: {sorted(duplicates)}"
    return cases


def build_all(folder: Path) -> dict[str, Path]:
    """Write every case into its own sub-folder of ``folder``; return case name → input path."""
    built = {}
    for case in all_cases():
        where = folder / case.name
        where.mkdir(parents=True, exist_ok=True)
        built[case.name] = case.build(where)
    return built


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    written = build_all(out)
    print(f"{len(written)} cases written under {out}")
