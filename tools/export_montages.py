"""One-off exporter of the electrode-position tables in ``montages/`` (run by a maintainer, not at runtime).

lumamba ships plain TSV tables instead of calling MNE at run time, so that the positions a model sees never
change behind the user's back when MNE changes (``standard_1005`` is deprecated in MNE 1.13 and renamed
``colin27_1005`` in 1.14). ``tests/test_montage.py`` re-derives the tables with the installed MNE and fails on any
difference above 1e-9 m, so a silent upstream change is caught.

Head frame, exactly as upstream's ``get_channel_locations`` obtains it: an ``Info`` holding the montage's names,
``set_montage(make_standard_montage("standard_1005"))``, then ``info.get_montage().get_positions()["ch_pos"]``.
The second route (``transform_to_head`` on the montage, i.e. the fiducial-based head transform alone) is computed
too and must agree to 1e-12 m; the exporter refuses to write otherwise.

GSN-HydroCel-129 is written in the montage's own (raw, MRI/fsaverage) frame, as upstream's MODMA loader uses
``make_standard_montage("GSN-HydroCel-129").get_positions()["ch_pos"]`` without any transform (spec §3.1, Q9).

Usage: python tools/export_montages.py [--out montages]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from pathlib import Path

import numpy as np

HEAD_FILE = "standard_1005_head.tsv"
GSN_FILE = "GSN-HydroCel-129_raw.tsv"
CHECKSUM_FILE = "checksums.sha256"
# Files whose checksum is pinned; layouts and aliases are hand-written and reviewed as text.
PINNED = (HEAD_FILE, GSN_FILE, "aliases.tsv")


def standard_1005_head_positions() -> dict[str, np.ndarray]:
    """Positions of every standard_1005 name in MNE head coordinates, the way upstream reads them."""
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the standard_1005 → colin27_1005 rename notice
        montage = mne.channels.make_standard_montage("standard_1005")
    info = mne.create_info(montage.ch_names, sfreq=256.0, ch_types="eeg")
    info.set_montage(montage, match_case=False)
    via_info = info.get_montage().get_positions()
    if via_info["coord_frame"] != "head":
        raise RuntimeError(f"expected head frame from Info, got {via_info['coord_frame']}")

    from mne.channels.montage import transform_to_head

    via_fiducials = transform_to_head(montage.copy()).get_positions()
    worst = max(float(np.abs(via_info["ch_pos"][n] - via_fiducials["ch_pos"][n]).max()) for n in montage.ch_names)
    if worst > 1e-12:
        raise RuntimeError(f"Info route and fiducial route disagree by {worst:g} m")
    return {name: np.asarray(via_info["ch_pos"][name], dtype=np.float64) for name in montage.ch_names}


def gsn_hydrocel_129_raw_positions() -> dict[str, np.ndarray]:
    import mne

    montage = mne.channels.make_standard_montage("GSN-HydroCel-129")
    ch_pos = montage.get_positions()["ch_pos"]
    return {name: np.asarray(ch_pos[name], dtype=np.float64) for name in montage.ch_names}


def format_table(positions: dict[str, np.ndarray]) -> str:
    # repr-exact floats: the stored value is the float64 MNE computed, bit for bit.
    lines = ["name\tx_m\ty_m\tz_m"]
    for name, xyz in positions.items():
        lines.append(f"{name}\t{float(xyz[0])!r}\t{float(xyz[1])!r}\t{float(xyz[2])!r}")
    return "\n".join(lines) + "\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(out: Path) -> str:
    lines = [f"{sha256(out / name)}  {name}" for name in PINNED if (out / name).exists()]
    text = "\n".join(lines) + "\n"
    (out / CHECKSUM_FILE).write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "montages")
    parser.add_argument("--checksums-only", action="store_true", help="only rewrite checksums.sha256")
    args = parser.parse_args(argv)
    import mne

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.checksums_only:
        (out / HEAD_FILE).write_text(format_table(standard_1005_head_positions()))
        (out / GSN_FILE).write_text(format_table(gsn_hydrocel_129_raw_positions()))
    print(f"MNE {mne.__version__}, numpy {np.__version__}")
    print(write_checksums(out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
