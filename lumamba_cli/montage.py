"""Electrode names → 3-D positions, named layouts, and how a recording's channels feed a layout.

The model needs, for every input channel, an electrode position in metres. Upstream (LUNA/LuMamba) gets them from
MNE's ``standard_1005`` montage in *head* coordinates, bipolar channels at the midpoint of their two electrodes, and
MODMA from the GSN-HydroCel-129 montage in its *raw* frame (spec §3.1). Those tables are stored as plain TSV files in
``montages/`` (exported once by ``tools/export_montages.py``, checked against live MNE by the tests), so positions
cannot drift when MNE changes.

Label matching (what :meth:`Registry.canonical` accepts), in this order:

1. the label is cleaned by :func:`lumamba_cli.channels.normalise_label`: whitespace and trailing dots, an ``EEG``
   prefix and a reference suffix (``-REF``, ``-LE``, ``-AVG``, ``-CAR`` …, remembered) are removed;
2. the rest is matched case-insensitively against the positions table, then the alias table (``montages/aliases.tsv``
   plus the user's ``--aliases`` file); an alias wins over a same-named table entry, so ``T3`` is reported as ``T7``;
3. otherwise, a name ``A-B`` whose two halves both match is a bipolar channel placed at their midpoint.

Anything else is "unknown" and never gets a guessed position.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lumamba_cli.channels import kind_from_label, normalise_label
from lumamba_cli.errors import BadInputError, MontageError, UsageError
from lumamba_cli.recording import RecordingLike
from lumamba_cli.resources import data_dir

HEAD_TABLE = "standard_1005_head.tsv"
RAW_TABLES = {"GSN-HydroCel-129": "GSN-HydroCel-129_raw.tsv"}
ALIASES_TABLE = "aliases.tsv"

Source = Literal["direct", "alias", "bipolar", "unknown"]
OnMissing = Literal["raise", "warn", "ignore"]

# A position farther than this from the head origin is not a scalp electrode in metres (millimetres, most likely).
_MAX_PLAUSIBLE_M = 0.3


@dataclass(frozen=True)
class NameMatch:
    """What a channel label means: the canonical electrode (or bipolar pair) and how it was found."""

    label: str
    normalised: str
    canonical: str | None
    source: Source
    anode: str | None = None
    cathode: str | None = None
    reference: str | None = None  # the stripped reference suffix ("REF", "LE", …), upper case
    frame: str | None = None  # "head" or "raw" for known names
    note: str = ""

    @property
    def known(self) -> bool:
        return self.source != "unknown"


def _read_table(path: Path) -> dict[str, np.ndarray]:
    positions: dict[str, np.ndarray] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            positions[row["name"]] = np.array([float(row["x_m"]), float(row["y_m"]), float(row["z_m"])])
    if not positions:
        raise FileNotFoundError(f"{path}: empty electrode table (the installation is incomplete)")
    return positions


@dataclass
class _Entry:
    canonical: str
    source: Source
    frame: str
    note: str = ""


class Registry:
    """Electrode positions (head frame, plus raw-frame tables such as GSN-HydroCel-129) and name aliases."""

    def __init__(
        self,
        head: dict[str, np.ndarray],
        raw: dict[str, dict[str, np.ndarray]],
        aliases: dict[str, tuple[str, str]],
        *,
        overrides: Path | None = None,
    ):
        self.head = head
        self.raw = raw
        self.aliases = aliases  # alias → (canonical, note)
        self.overrides = overrides
        self._lookup: dict[str, _Entry] = {}
        # Raw tables first so that a head-frame name (GSN's "Cz") wins the case-insensitive key.
        for table_name, table in raw.items():
            for name in table:
                self._lookup[name.lower()] = _Entry(name, "direct", "raw", f"{table_name} raw frame")
        for name in head:
            self._lookup[name.lower()] = _Entry(name, "direct", "head")
        for alias, (target, note) in aliases.items():
            entry = self._lookup.get(target.lower())
            if entry is None:
                # A user file is bad input; a bad bundled table would be an installation bug, reported the same way.
                raise BadInputError(f"alias {alias!r} points to unknown electrode {target!r}", path=overrides)
            self._lookup[alias.lower()] = _Entry(entry.canonical, "alias", entry.frame, note)

    # -- names ---------------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name.lower() in self._lookup

    def _single(self, name: str) -> _Entry | None:
        return self._lookup.get(name.strip().lower())

    def canonical(self, label: str) -> NameMatch:
        """Resolve a channel label (see the module docstring for the rules)."""
        name, reference = normalise_label(label)
        entry = self._single(name) if name else None
        if entry is not None:
            return NameMatch(label, name, entry.canonical, entry.source, reference=reference, frame=entry.frame,
                             note=entry.note or (f"alias of {entry.canonical}" if entry.source == "alias" else ""))
        parts = name.split("-")
        if len(parts) == 2 and all(p.strip() for p in parts):
            first, second = (self._single(p) for p in parts)
            if first is not None and second is not None:
                if first.frame != second.frame:
                    return NameMatch(label, name, None, "unknown", reference=reference,
                                     note="bipolar pair mixes coordinate frames")
                if first.canonical == second.canonical:
                    return NameMatch(label, name, None, "unknown", reference=reference,
                                     note="bipolar pair of one electrode with itself")
                return NameMatch(
                    label, name, f"{first.canonical}-{second.canonical}", "bipolar", first.canonical,
                    second.canonical, reference, first.frame,
                    note=f"midpoint of {first.canonical} and {second.canonical}",
                )
            missing = [p for p, e in zip(parts, (first, second)) if e is None]
            return NameMatch(label, name, None, "unknown", reference=reference,
                             note=f"bipolar label with unknown electrode {', '.join(missing)}")
        return NameMatch(label, name, None, "unknown", reference=reference, note="unknown name: no position")

    def position(self, canonical: str, frame: str | None = None) -> np.ndarray:
        """Position (3,) in metres of an electrode, or the midpoint of a bipolar ``A-B`` pair.

        ``frame`` None takes the frame the name lives in (head for 10-05 names, raw for GSN ``E1`` …);
        asking for a name in a frame that does not hold it raises ``KeyError``.
        """
        table = self._table_for(canonical, frame)
        if table is not None:
            return table[canonical].copy()
        match = self.canonical(canonical)
        if match.source == "unknown" or match.canonical is None:
            raise KeyError(f"no position for {canonical!r}")
        if match.source == "bipolar":
            return (self.position(match.anode, frame) + self.position(match.cathode, frame)) / 2.0
        return self.position(match.canonical, frame)

    def _table_for(self, name: str, frame: str | None) -> dict[str, np.ndarray] | None:
        if frame in (None, "head") and name in self.head:
            return self.head
        if frame in (None, "raw"):
            for table in self.raw.values():
                if name in table:
                    return table
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "head_frame_electrodes": len(self.head),
            "raw_frame_tables": {name: len(table) for name, table in self.raw.items()},
            "aliases": len(self.aliases),
            "overrides": str(self.overrides) if self.overrides else None,
        }

    # -- recordings ----------------------------------------------------------------------------------------
    def resolve(
        self,
        recording_or_labels: RecordingLike | Sequence[str],
        layout: Layout | str | None = None,
        on_missing: OnMissing = "raise",
        *,
        kinds: Sequence[str] | None = None,
        sfreqs: Sequence[float | None] | None = None,
    ) -> MontageReport:
        """Match a recording's channels (a ``Recording`` or a list of labels) to positions, and to ``layout``.

        With a layout, each layout channel is *present* (a file channel is it), *derivable* (a bipolar channel built
        from two referential ones, or a reversed bipolar pair negated) or *missing*. ``on_missing`` decides what a
        missing layout channel (or, with no layout, an EEG channel with no position) does: raise ``MontageError``,
        warn, or pass silently; in every case the report says so and ``usable`` is False when a layout channel is
        missing. Channels feeding one layout must share a sampling rate.
        """
        if on_missing not in ("raise", "warn", "ignore"):
            raise ValueError(f"on_missing must be 'raise', 'warn' or 'ignore', not {on_missing!r}")
        channels, path = _channels_of(recording_or_labels, kinds, sfreqs)
        if isinstance(layout, str):
            layout = get_layout(layout, registry=self)
        rows = [self._row(ch) for ch in channels]
        promoted = [r.label for r in rows if r.promoted]
        if layout is None:
            report = self._resolve_plain(rows, path)
        else:
            report = self._resolve_layout(rows, layout, path)
        if promoted:
            what = "this channel is" if len(promoted) == 1 else "these channels are"
            report.warnings.insert(0, (
                f"{', '.join(promoted)}: the file does not say what {what}; "
                "treated as EEG because the name is a known electrode"
            ))
        _act_on_missing(report, on_missing)
        return report

    def _row(self, ch: _Channel) -> MontageRow:
        match = self.canonical(ch.label)
        row = MontageRow(index=ch.index, label=ch.label, kind=ch.kind, sfreq=ch.sfreq, match=match, bad=ch.bad)
        if ch.bad is not None:
            row.reason = f"marked bad: {ch.bad}"
            return row
        if ch.kind == "misc" and match.known:
            # "misc" means the reader could not tell; a label naming a known electrode (often through the user's
            # --aliases file) is EEG. Physiological and marker kinds are never promoted.
            row.kind, row.promoted = "eeg", True
        if row.kind != "eeg":
            row.reason = f"{ch.kind.upper()} channel" if ch.kind in ("ecg", "eog", "emg") else f"not EEG ({ch.kind})"
        elif not match.known:
            row.reason = match.note or "unknown name: no position"
        else:
            row.position = self.position(match.canonical, match.frame)
        return row

    def _resolve_plain(self, rows: list[MontageRow], path: str | None) -> MontageReport:
        report = MontageReport(rows=rows, layout=None, path=path)
        candidates = [r for r in rows if r.position is not None]
        frames = Counter(r.match.frame for r in candidates)
        if len(frames) > 1:
            report.warnings.append(
                "channels resolve to different coordinate frames (" + ", ".join(f"{n} {f}" for f, n in frames.items())
                + "); only head-frame channels are used"
            )
            for r in candidates:
                if r.match.frame != "head":
                    r.reason = f"{r.match.frame}-frame position cannot be mixed with head-frame channels"
            candidates = [r for r in candidates if r.match.frame == "head"]
        candidates = self._drop_duplicates(candidates)
        candidates = _common_rate(candidates, report)
        for r in candidates:
            r.used = True
            r.reason = ""
            r.feeds = [r.match.canonical]
        report.unknown_eeg = [r.label for r in rows if r.kind == "eeg" and not r.match.known]
        # Channels a reader could not classify ("misc", e.g. "Channel 1") are named too when nothing matched.
        unmatched = report.unknown_eeg or [r.label for r in rows if r.kind == "misc" and not r.match.known]
        if candidates:
            frame = candidates[0].match.frame or "head"
            report.derivation = Derivation(
                channel_names=[r.match.canonical for r in candidates],
                positions=np.stack([r.position for r in candidates]),
                terms=[[(r.index, 1.0)] for r in candidates],
                sfreq=candidates[0].sfreq,
                frame=frame,
                layout=None,
            )
            report.usable = True
            report.verdict = (
                f"usable: {len(candidates)} EEG channel(s) with positions"
                + (f"; {len(report.unknown_eeg)} EEG channel(s) without a position" if report.unknown_eeg else "")
            )
        else:
            report.usable = False
            report.verdict = "not usable: no EEG channel matches a known electrode name" + (
                f" (unmatched: {', '.join(unmatched[:8])}{'…' if len(unmatched) > 8 else ''})" if unmatched else ""
            )
        return report

    @staticmethod
    def _drop_duplicates(rows: list[MontageRow]) -> list[MontageRow]:
        first: dict[str, MontageRow] = {}
        kept = []
        for r in rows:
            key = r.match.canonical
            if key in first:
                r.reason = f"duplicate of channel {first[key].index} ({first[key].label!r})"
                continue
            first[key] = r
            kept.append(r)
        return kept

    def _resolve_layout(self, rows: list[MontageRow], layout: Layout, path: str | None) -> MontageReport:
        report = MontageReport(rows=rows, layout=layout.name, path=path)
        eligible = [r for r in rows if r.position is not None and r.match.frame == layout.frame]
        for r in rows:
            if r.position is not None and r.match.frame != layout.frame:
                r.reason = f"{r.match.frame}-frame electrode; layout {layout.name} is {layout.frame}-frame"
        eligible = self._drop_duplicates(eligible)
        referential = {r.match.canonical: r for r in eligible if r.match.source != "bipolar"}
        bad = {r.match.canonical: r for r in rows if r.bad is not None and r.match.canonical is not None}

        def absent(electrode: str | None) -> str:
            if electrode in bad:
                return f"{bad[electrode].label!r} is marked bad ({bad[electrode].bad})"
            return f"no channel for electrode {_display(electrode)}"

        bipolar = {(r.match.anode, r.match.cathode): r for r in eligible if r.match.source == "bipolar"}

        terms: list[list[tuple[int, float]]] = []
        for channel in layout.channels:
            need = self.canonical(channel)
            required = RequiredChannel(name=channel, canonical=need.canonical)
            report.required.append(required)
            feeders: list[tuple[MontageRow, float]] = []
            if layout.kind == "bipolar":
                pair = (need.anode, need.cathode)
                if pair in bipolar:
                    feeders = [(bipolar[pair], 1.0)]
                    required.status, required.how = "present", f"file channel {bipolar[pair].label!r}"
                elif pair[::-1] in bipolar:
                    feeders = [(bipolar[pair[::-1]], -1.0)]
                    required.status, required.how = "derivable", f"− {bipolar[pair[::-1]].label!r} (reversed pair)"
                elif need.anode in referential and need.cathode in referential:
                    a, b = referential[need.anode], referential[need.cathode]
                    feeders = [(a, 1.0), (b, -1.0)]
                    required.status, required.how = "derivable", f"{a.label} − {b.label}"
                    if a.match.reference != b.match.reference:
                        report.warnings.append(
                            f"{channel}: {a.label!r} and {b.label!r} name different references; their difference "
                            "is a true bipolar signal only if both share one reference"
                        )
                else:
                    required.how = "; ".join(absent(e) for e in (need.anode, need.cathode) if e not in referential)
                    required.bad = any(e in bad for e in (need.anode, need.cathode))
            else:
                if need.canonical in referential:
                    feeders = [(referential[need.canonical], 1.0)]
                    required.status, required.how = "present", f"file channel {referential[need.canonical].label!r}"
                else:
                    required.how = (absent(need.canonical) if need.canonical in bad
                                    else f"no referential channel for {_display(need.canonical)}")
                    required.bad = need.canonical in bad
            required.file_channels = [r.index for r, _ in feeders]
            for r, _ in feeders:
                r.used = True
                r.reason = ""
                r.feeds.append(channel)
            terms.append([(r.index, w) for r, w in feeders])

        for r in rows:
            if not r.used and not r.reason:
                if layout.kind == "referential" and r.match.source == "bipolar":
                    r.reason = f"bipolar channel; layout {layout.name} is referential"
                else:
                    r.reason = f"not in layout {layout.name}"

        missing = [q for q in report.required if q.status == "missing"]
        used = [r for r in rows if r.used]
        if layout.kind == "referential":
            # A referential layout assumes one common reference; channels against different references (some
            # "-LE", some "-REF") are not comparable and the model would see them as if they were.
            references = sorted({r.match.reference or "unstated" for r in used if r.match.source != "bipolar"})
            if len(references) > 1:
                by_reference = {
                    ref: [r.label for r in used if (r.match.reference or "unstated") == ref] for ref in references
                }
                report.warnings.append(
                    "channels feeding " + layout.name + " name different references ("
                    + "; ".join(f"{ref}: {', '.join(labels[:4])}{'…' if len(labels) > 4 else ''}"
                                for ref, labels in by_reference.items())
                    + "); a referential layout needs one common reference"
                )
        rates = sorted({r.sfreq for r in used if r.sfreq is not None})
        if missing:
            report.usable = False
            report.verdict = (
                f"not usable for {layout.name}: {len(missing)} of {len(layout.channels)} channels missing "
                f"({', '.join(q.name for q in missing[:8])}{'…' if len(missing) > 8 else ''})"
            )
            bad_ones = [q for q in missing if q.bad]
            if bad_ones:
                report.verdict += f"; {bad_ones[0].name}: {bad_ones[0].how}"
        elif len(rates) > 1:
            report.usable = False
            report.verdict = (
                f"not usable for {layout.name}: the channels it needs have different sampling rates "
                f"({', '.join(f'{x:g}' for x in rates)} Hz)"
            )
        else:
            report.usable = True
            derived = sum(q.status == "derivable" for q in report.required)
            report.verdict = f"usable for {layout.name}: all {len(layout.channels)} channels " + (
                f"({derived} derived)" if derived else "present"
            )
            report.derivation = Derivation(
                channel_names=list(layout.channels),
                positions=layout.positions(dtype=np.float64),
                terms=terms,
                sfreq=rates[0] if rates else None,
                frame=layout.frame,
                layout=layout.name,
            )
        return report


def _display(name: str | None) -> str:
    return name if name is not None else "?"


def _act_on_missing(report: MontageReport, on_missing: OnMissing) -> None:
    where = report.path
    hint = "add an alias with --aliases FILE if the file names them differently"
    if report.layout is not None:
        missing = [q.name for q in report.required if q.status == "missing"]
        if not missing:
            if not report.usable and on_missing == "raise":
                raise MontageError(report.verdict, path=where)
            return
        message = (
            f"layout {report.layout} needs {', '.join(missing)} but the recording has no channel for "
            f"{'it' if len(missing) == 1 else 'them'}"
        )
    else:
        if not report.unknown_eeg and report.usable:
            return
        if not report.usable:
            message = report.verdict
        else:
            message = f"no electrode position for EEG channel(s) {', '.join(report.unknown_eeg)}"
    if on_missing == "raise":
        raise MontageError(message, path=where, hint=hint)
    if on_missing == "warn":
        warnings.warn(f"{where + ': ' if where else ''}{message} ({hint})", RuntimeWarning, stacklevel=3)
        report.warnings.append(message)


@dataclass
class _Channel:
    index: int
    label: str
    kind: str
    sfreq: float | None
    bad: str | None = None  # why the recording's source marked it bad


def _channels_of(source: RecordingLike | Sequence[str], kinds: Sequence[str] | None,
                 sfreqs: Sequence[float | None] | None) -> tuple[list[_Channel], str | None]:
    if not isinstance(source, Sequence):
        channels = [_Channel(c.index, c.label, c.kind, c.sfreq, source.bad_channels.get(c.index))
                    for c in source.channels]
        return channels, str(source.path)
    if isinstance(source, (str, bytes)):
        raise TypeError("resolve() takes a Recording or a list of channel labels")
    labels = [str(x) for x in source]
    if kinds is not None and len(kinds) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(kinds)} kinds")
    if sfreqs is not None and len(sfreqs) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(sfreqs)} sampling rates")
    channels = [
        _Channel(i, label, kinds[i] if kinds is not None else kind_from_label(label),
                 float(sfreqs[i]) if sfreqs is not None and sfreqs[i] is not None else None)
        for i, label in enumerate(labels)
    ]
    return channels, None


def _common_rate(rows: list[MontageRow], report: MontageReport) -> list[MontageRow]:
    rates = Counter(r.sfreq for r in rows if r.sfreq is not None)
    if len(rates) <= 1:
        return rows
    # Most channels win; ties go to the higher rate (more information, and deterministic).
    keep = max(rates.items(), key=lambda kv: (kv[1], kv[0]))[0]
    report.warnings.append(
        f"EEG channels have different sampling rates ({', '.join(f'{x:g}' for x in sorted(rates))} Hz); "
        f"using the {rates[keep]} channel(s) at {keep:g} Hz"
    )
    kept = []
    for r in rows:
        if r.sfreq is not None and r.sfreq != keep:
            r.reason = f"sampling rate {r.sfreq:g} Hz differs from the {keep:g} Hz of the other EEG channels"
        else:
            kept.append(r)
    return kept


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class MontageRow:
    """One file channel: raw label → canonical name → position source → used or dropped (and why)."""

    index: int
    label: str
    kind: str
    sfreq: float | None
    match: NameMatch
    position: np.ndarray | None = None
    used: bool = False
    reason: str = ""
    feeds: list[str] = field(default_factory=list)  # output channels built from this file channel
    promoted: bool = False  # the file's kind was "misc" and the name is a known electrode
    bad: str | None = None  # marked bad by the recording's source (never used)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "kind": self.kind,
            "sfreq": self.sfreq,
            "normalised": self.match.normalised,
            "canonical": self.match.canonical,
            "source": self.match.source if self.kind == "eeg" else "non-eeg",
            "reference": self.match.reference,
            "frame": self.match.frame if self.position is not None else None,
            "position_m": None if self.position is None else [round(float(v), 9) for v in self.position],
            "used": self.used,
            "reason": self.reason,
            "feeds": self.feeds,
            "kind_from_name": self.promoted,
            "bad": self.bad,
        }


@dataclass
class RequiredChannel:
    name: str
    canonical: str | None
    status: Literal["present", "derivable", "missing"] = "missing"
    how: str = ""
    file_channels: list[int] = field(default_factory=list)
    bad: bool = False  # missing because a channel it needs is marked bad (no alias can fix that)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "canonical": self.canonical, "status": self.status, "how": self.how,
                "file_channels": self.file_channels, "bad": self.bad}


@dataclass
class Derivation:
    """How each model input channel is built from file channels: ``out[c] = Σ w · file[i]`` over ``terms[c]``."""

    channel_names: list[str]
    positions: np.ndarray  # (C, 3) metres, float64 (cast to float32 for the model, as upstream does)
    terms: list[list[tuple[int, float]]]
    sfreq: float | None
    frame: str = "head"
    layout: str | None = None

    @property
    def file_channels(self) -> list[int]:
        """Sorted file-channel indices the derivation reads (read exactly these from the recording)."""
        return sorted({i for term in self.terms for i, _ in term})

    def apply(self, data: np.ndarray, rows: Sequence[int] | None = None) -> np.ndarray:
        """The (C, n) model channels from (len(rows), n) file-channel data: row k of ``data`` is file channel
        ``rows[k]`` (default :attr:`file_channels`, i.e. ``recording.read(derivation.file_channels)``). The only
        place a derivation is computed; bipolar rows are ``a − b`` exactly as upstream computes them."""
        data = np.asarray(data)
        rows = self.file_channels if rows is None else list(rows)
        if data.ndim != 2 or data.shape[0] != len(rows):
            raise ValueError(f"expected a ({len(rows)}, samples) array, got shape {data.shape}")
        row_of = {channel: k for k, channel in enumerate(rows)}
        dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
        out = np.empty((len(self.terms), data.shape[-1]), dtype=dtype)
        for c, term in enumerate(self.terms):
            (i0, w0), rest = term[0], term[1:]
            first = data[row_of[i0]]
            out[c] = first if w0 == 1.0 else (-first if w0 == -1.0 else w0 * first)
            for i, w in rest:
                if w == 1.0:
                    out[c] += data[row_of[i]]
                elif w == -1.0:
                    out[c] -= data[row_of[i]]
                else:
                    out[c] += w * data[row_of[i]]
        return out

    def reordered(self, names: Sequence[str]) -> Derivation:
        """The same channels with their data rows in the order ``names``; positions stay in layout order. Only
        upstream's TUH row order (``tuh_row_order: script``) uses this, to reproduce its row/position mismatch."""
        index = {name.upper(): k for k, name in enumerate(self.channel_names)}
        order = [index[name.upper()] for name in names]
        return Derivation([self.channel_names[k] for k in order], self.positions, [self.terms[k] for k in order],
                          self.sfreq, self.frame, self.layout)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "frame": self.frame,
            "sfreq": self.sfreq,
            "channels": [
                {"name": n, "position_m": [round(float(v), 9) for v in p], "terms": [[i, w] for i, w in t]}
                for n, p, t in zip(self.channel_names, self.positions, self.terms)
            ],
        }


@dataclass
class MontageReport:
    rows: list[MontageRow]
    layout: str | None
    path: str | None = None
    required: list[RequiredChannel] = field(default_factory=list)
    usable: bool = False
    verdict: str = ""
    derivation: Derivation | None = None
    warnings: list[str] = field(default_factory=list)
    unknown_eeg: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [q.name for q in self.required if q.status == "missing"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "usable": self.usable,
            "verdict": self.verdict,
            "channels": [r.to_dict() for r in self.rows],
            "required": [q.to_dict() for q in self.required],
            "derivation": self.derivation.to_dict() if self.derivation is not None else None,
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Layout:
    """A named, ordered channel list a model was trained on."""

    name: str
    channels: list[str]
    kind: Literal["bipolar", "referential"]
    frame: Literal["head", "raw"]
    description: str = ""
    source: str = ""
    registry: Registry | None = field(default=None, repr=False, compare=False)

    def positions(self, dtype: Any = np.float32) -> np.ndarray:
        """(C, 3) positions in metres in the layout's frame; bipolar channels at their midpoints."""
        registry = self.registry or load_registry()
        out = np.empty((len(self.channels), 3), dtype=np.float64)
        for c, name in enumerate(self.channels):
            match = registry.canonical(name)
            if not match.known or match.canonical is None:
                raise MontageError(f"layout {self.name}: channel {name!r} has no position")
            out[c] = registry.position(match.canonical, self.frame)
        return out.astype(dtype)


def layouts_dir() -> Path:
    return data_dir("montages") / "layouts"


def list_layouts() -> list[str]:
    return sorted(p.stem for p in layouts_dir().glob("*.yaml"))


def get_layout(name: str, registry: Registry | None = None) -> Layout:
    """Load ``montages/layouts/<name>.yaml``; ``UsageError`` names the known layouts when it does not exist."""
    import yaml

    path = layouts_dir() / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or not path.is_file():
        raise UsageError(f"unknown layout {name!r}; known layouts: {', '.join(list_layouts())}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    kind, frame = data.get("kind"), data.get("frame")
    if kind not in ("bipolar", "referential") or frame not in ("head", "raw"):
        raise MontageError(f"layout file has bad kind {kind!r} or frame {frame!r}", path=path)
    channels = [str(c) for c in data["channels"]]
    if len(set(channels)) != len(channels):
        raise MontageError("layout lists a channel twice", path=path)
    return Layout(
        name=str(data.get("name", name)),
        channels=channels,
        kind=kind,
        frame=frame,
        description=str(data.get("description", "")),
        source=str(data.get("source", "")).strip(),
        registry=registry or load_registry(),
    )


# ---------------------------------------------------------------------------------------------------------------
def _read_aliases(path: Path) -> dict[str, tuple[str, str]]:
    aliases: dict[str, tuple[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            aliases[row["alias"].strip()] = (row["canonical"].strip(), (row.get("note") or "").strip())
    return aliases


# A site's alias table has a few hundred rows; anything this large is not one (and is not read into memory).
MAX_ALIASES_BYTES = 4 * 1024 * 1024


def _no_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a number JSON allows")


def _read_overrides(path: Path) -> tuple[dict[str, tuple[str, str]], dict[str, np.ndarray]]:
    """User file: TSV with a header row (columns ``name``, then ``canonical`` and/or ``x y z`` in metres, head frame,
    optional ``note``), or JSON ``{"aliases": {name: canonical}, "positions": {name: [x, y, z]}}``."""
    if not path.is_file():
        raise BadInputError("aliases file not found", path=path)
    size = path.stat().st_size
    if size > MAX_ALIASES_BYTES:
        raise BadInputError(f"aliases file is {size:,} bytes, more than the {MAX_ALIASES_BYTES:,} an alias table "
                            "can need", path=path)
    raw = path.read_bytes()
    if b"\x00" in raw:  # UTF-16 and binary files: a text table never holds NUL
        raise BadInputError("aliases file is not UTF-8 text (it contains NUL bytes)", path=path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"aliases file is not UTF-8 text (byte {exc.start})", path=path) from None
    aliases: dict[str, tuple[str, str]] = {}
    positions: dict[str, np.ndarray] = {}
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except RecursionError:
            raise BadInputError("aliases JSON is nested too deeply", path=path) from None
        except json.JSONDecodeError as exc:
            raise BadInputError(f"aliases file is not valid JSON ({exc.msg}, line {exc.lineno})", path=path) from None
        except ValueError as exc:
            raise BadInputError(f"aliases file is not valid JSON ({exc})", path=path) from None
        if not isinstance(data, dict):
            raise BadInputError(f"aliases JSON must be an object, not {type(data).__name__}", path=path)
        unknown_keys = set(data) - {"aliases", "positions"}
        sections = [data.get("aliases") or {}, data.get("positions") or {}]
        if unknown_keys or not all(isinstance(section, dict) for section in sections):
            raise BadInputError(
                f"aliases JSON must be an object with 'aliases' and/or 'positions' (got {sorted(unknown_keys)})",
                path=path,
            )
        for name, target in (data.get("aliases") or {}).items():
            if not isinstance(target, str):
                raise BadInputError(f"alias {name!r} must name an electrode (a string)", path=path)
            aliases[str(name)] = (target, f"user alias ({path.name})")
        for name, xyz in (data.get("positions") or {}).items():
            positions[str(name)] = _checked_xyz(name, xyz, path)
        return aliases, positions
    rows = list(csv.reader(text.splitlines(), delimiter="\t"))
    rows = [r for r in rows if r and not r[0].startswith("#")]
    if not rows:
        raise BadInputError("aliases file is empty", path=path)
    header = [h.strip().lower() for h in rows[0]]
    first = "name" if "name" in header else ("alias" if "alias" in header else None)
    has_alias, has_xyz = "canonical" in header, all(c in header for c in ("x", "y", "z"))
    if first is None or not (has_alias or has_xyz):
        raise BadInputError(
            "aliases TSV needs a tab-separated header: name, canonical (an alias) and/or x, y, z (metres, head frame)",
            path=path,
        )
    col = {h: k for k, h in enumerate(header)}
    for line_no, row in enumerate(rows[1:], start=2):
        cells = {h: (row[k].strip() if k < len(row) else "") for h, k in col.items()}
        name = cells[first]
        if not name:
            continue
        if has_alias and cells.get("canonical"):
            aliases[name] = (cells["canonical"], cells.get("note") or f"user alias ({path.name})")
        elif has_xyz and cells.get("x"):
            try:
                xyz = [float(cells[c]) for c in ("x", "y", "z")]
            except ValueError:
                raise BadInputError(f"line {line_no}: x, y, z of {name!r} are not numbers", path=path) from None
            positions[name] = _checked_xyz(name, xyz, path)
        else:
            raise BadInputError(f"line {line_no}: {name!r} has neither a canonical name nor x, y, z", path=path)
    return aliases, positions


def _checked_xyz(name: str, xyz: Any, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(xyz, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"position of {name!r} is not three numbers", path=path) from None
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise BadInputError(f"position of {name!r} is not three finite numbers", path=path)
    if float(np.linalg.norm(arr)) > _MAX_PLAUSIBLE_M:
        raise BadInputError(
            f"position of {name!r} is {np.linalg.norm(arr):.3g} from the origin: positions must be in metres "
            "(millimetres? divide by 1000)",
            path=path,
        )
    return arr


@lru_cache(maxsize=1)
def _bundled() -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], dict[str, tuple[str, str]]]:
    root = data_dir("montages")
    head = _read_table(root / HEAD_TABLE)
    raw = {name: _read_table(root / file) for name, file in RAW_TABLES.items()}
    aliases = _read_aliases(root / ALIASES_TABLE)
    return head, raw, aliases


def load_registry(overrides: Path | None = None) -> Registry:
    """The bundled registry, plus the user's aliases/positions file when given (user entries win)."""
    head, raw, aliases = _bundled()
    if overrides is None:
        return _default_registry()
    overrides = Path(overrides)
    user_aliases, user_positions = _read_overrides(overrides)
    head = dict(head)
    head.update(user_positions)
    merged = dict(aliases)
    merged.update(user_aliases)
    return Registry(head, raw, merged, overrides=overrides)


@lru_cache(maxsize=1)
def _default_registry() -> Registry:
    head, raw, aliases = _bundled()
    return Registry(head, raw, aliases)


def bundled_checksums() -> dict[str, str]:
    """``montages/checksums.sha256`` as {file name: sha256}."""
    out = {}
    for line in (data_dir("montages") / "checksums.sha256").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip()] = digest
    return out


__all__ = [
    "NameMatch", "Registry", "Layout", "MontageRow", "RequiredChannel", "Derivation", "MontageReport",
    "load_registry", "get_layout", "list_layouts", "bundled_checksums",
]
