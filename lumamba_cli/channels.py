"""What a channel is: its kind (EEG, ECG, EOG, …), its unit's scale to µV, and its label cleaned for matching.

One table of kinds and one list of reference suffixes serve every reader (EDF headers, in-memory arrays, MNE
objects) and the montage registry, so a label means the same thing wherever it comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ChannelKind = Literal["eeg", "ecg", "eog", "emg", "resp", "spo2", "photic", "marker", "misc"]
CHANNEL_KINDS: tuple[str, ...] = ("eeg", "ecg", "eog", "emg", "resp", "spo2", "photic", "marker", "misc")


@dataclass(frozen=True)
class ChannelInfo:
    """One signal channel as its source describes it. ``index`` is its position in the recording's channels."""

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


# ---------------------------------------------------------------------------------------------------------- units

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
    "uv": 1.0, "µv": 1.0, "μv": 1.0, "nv": 1e-3, "v": 1e6,
    "microvolt": 1.0, "microvolts": 1.0, "millivolt": 1e3, "millivolts": 1e3, "volt": 1e6, "volts": 1e6,
}
# Units that are understood but are not a voltage: such a channel has no µV scale, and that is not a defect.
_NON_VOLTAGE_UNITS = {"%", "bpm", "mm", "mmhg", "degc", "°c", "deg", "ohm", "kohm", "cmh2o", "l/min", "ml", "l", "g", "lux"}


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


# --------------------------------------------------------------------------------------------------------- labels

# Reference names that follow a "-" and are never an electrode: "EEG FP1-REF", "T3-LE", "C3-CAR", "O1-A1A2".
# (A1, A2, M1, M2 are electrodes: "FP1-A1" stays a two-electrode name.)
REFERENCE_SUFFIXES = ("REF", "LE", "AVG", "AV", "AR", "CAR", "A1A2", "LINKED")
_EEG_PREFIX = re.compile(r"^EEG[\s\-]+", re.IGNORECASE)
_REF_SUFFIX = re.compile(r"-(" + "|".join(REFERENCE_SUFFIXES) + r")$", re.IGNORECASE)

_ELECTRODE = re.compile(
    r"(?:N|NF|FP|AF|AFF|F|FF|FFC|FFT|FC|FCC|FT|FTT|C|CC|CCP|CP|CPP|T|TT|TTP|TP|TPP|P|PP|PPO|PO|POO|O|OI|I|A|M|PG|SP)"
    r"(?:Z|\d{1,2}H?)|NZ|IZ",
    re.IGNORECASE,
)
# LOC/ROC (left/right outer canthus) and TUH's canthus leads (LUC, RLC: left upper, right lower …) are eye
# electrodes even when the label carries an "EEG" prefix and a reference suffix ("EEG RLC-LE").
_CANTHUS_LEADS = ("LOC", "ROC", "LUC", "RUC", "LLC", "RLC")


def normalise_label(label: str) -> tuple[str, str | None]:
    """(name, reference suffix) of a label: surrounding whitespace and trailing dots removed (PhysioNet pads
    labels: ``Fc5.``), an ``EEG`` prefix removed (``EEG Fp1``, ``EEG-Fp1``), a reference suffix removed and
    returned upper-cased (``EEG FP1-REF`` → ``FP1``, ``REF``)."""
    name = label.strip().rstrip(".").strip()
    name = _EEG_PREFIX.sub("", name).strip()
    reference = None
    match = _REF_SUFFIX.search(name)
    if match and match.start() > 0:
        reference = match.group(1).upper()
        name = name[: match.start()].strip()
    return name.rstrip(".").strip(), reference


def _is_electrode(token: str) -> bool:
    return bool(_ELECTRODE.fullmatch(token))


def _stated_kind(label: str, unit: str, transducer: str) -> ChannelKind | None:
    """The kind a channel's label, unit and transducer state, or None when they state none."""
    text = label.upper().strip()
    words = re.split(r"[^A-Z0-9]+", text)
    hints = (transducer.upper() + " " + text).strip()
    if text in ("MK", "STATUS", "TRIGGER") or "MARK" in text or text.startswith(("EVENT", "TRIG", "STI ")):
        return "marker"
    if any(w in ("ECG", "EKG") or w.startswith(("ECG", "EKG")) for w in words):
        return "ecg"
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
    if text in ("HR", "PULSE"):
        return "misc"  # heart rate from a pulse sensor: a known non-EEG channel without a kind of its own
    if text.startswith("EEG ") or text.startswith("EEG-"):
        return "eeg"
    voltage = unit_to_uv(unit)[0] is not None or unit.strip() == ""
    parts = normalise_label(text)[0].split("-")
    if voltage and 1 <= len(parts) <= 2 and all(_is_electrode(part.strip(". ")) for part in parts):
        return "eeg"
    if voltage and "EEG" in transducer.upper() and _is_electrode(parts[0].strip(". ")):
        return "eeg"
    return None


def classify_channel(label: str, unit: str = "", transducer: str = "") -> ChannelKind:
    """Kind of a channel from its label, then its unit and transducer. Markers and physiological channels are
    recognised before the ``EEG`` prefix, because clinical systems write e.g. ``EEG Mark1`` or ``EEG EKG-LE``.
    A voltage channel whose name is one or two electrode names (``Fp1``, ``FP1-F7``) is EEG; a channel that
    says nothing about itself is ``misc`` (the montage promotes it to EEG when its name is a known electrode)."""
    return _stated_kind(label, unit, transducer) or "misc"


def kind_from_label(label: str) -> ChannelKind:
    """Kind of a channel known only by its label (a bare label list, an array with names). Such a source says
    nothing about its channels, so a label that states no other kind is taken as EEG: an unknown name is then
    reported as an EEG channel without a position, never silently dropped."""
    return _stated_kind(label, "", "") or "eeg"


# ------------------------------------------------------------------------------------------- plausibility

# A scalp EEG amplifier must span at least a few hundred µV peak to peak or ordinary EEG (tens to a few hundred µV)
# would clip; no EEG front end spans more than a few volts. A header range outside these bounds, once scaled to µV,
# means the unit field is wrong, not the amplifier. The bounds are loose on purpose: only gross mislabels
# (V or mV written as µV, µV written as V) are flagged.
EEG_SPAN_UV_MIN = 20.0
EEG_SPAN_UV_MAX = 1e7
# Real scalp EEG swings by tens of µV within seconds; a whole recording (or scanned stretch) that stays within 1 µV
# is not EEG in µV.
EEG_SWING_UV_MIN = 1.0


def implausible_eeg_ranges(channels: list[ChannelInfo]) -> list[str]:
    """Describe EEG channels whose physical range, in µV, no real EEG amplifier has."""
    found = []
    for channel in channels:
        if channel.kind != "eeg" or channel.to_uv is None or channel.flat:
            continue
        span_uv = abs(channel.physical_max - channel.physical_min) * channel.to_uv
        if span_uv < EEG_SPAN_UV_MIN:
            guess = "volts or millivolts"
        elif span_uv > EEG_SPAN_UV_MAX:
            guess = "a smaller unit (µV or nV)"
        else:
            continue
        found.append(
            f"{channel.label!r} spans {channel.physical_min:g} to {channel.physical_max:g} {channel.unit} "
            f"({span_uv:.3g} µV peak to peak; likely {guess})"
        )
    return found
