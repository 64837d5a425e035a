"""How far chunked (bounded-memory) preprocessing is from whole-segment processing, on a real recording.

Prints, per recipe, max and median |chunked − whole| in units of each window's std (ddof=1, per channel), before
and after the z-score, plus wall times. The figures are quoted in lumamba_cli.preprocess.CHUNKED_DEVIATION.

    python benchmarks/preprocess_chunked_deviation.py [RECORDING.edf] [--chunk-s 60] [--tasks tuab,mumtaz]
    python benchmarks/preprocess_chunked_deviation.py --long-hours 6     # peak memory, whole vs chunked

Default recording: ../shared/data/eeghdf_absence_epilepsy.edf (30 min, 200 Hz, resampled to 256 Hz).
``--long-hours H`` writes a temporary H-hour EDF (the recording's 19 10-20 channels tiled, 0.1 µV resolution) and
runs the Mumtaz recipe on it in fresh processes, printing peak resident memory for whole and chunked mode.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lumamba_cli.montage import load_registry
from lumamba_cli.preprocess import PreprocessPolicy, collect, iter_windows, zscore
from lumamba_cli.recipes import load_recipe
from lumamba_cli.recording import open_recording

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "eeghdf_absence_epilepsy.edf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recording", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--chunk-s", type=float, default=60.0, help="chunk length forced in chunked mode")
    parser.add_argument("--tasks", default="tuab,mumtaz", help="comma-separated recipe ids")
    parser.add_argument("--long-hours", type=float, default=0.0, help="measure peak memory on an H-hour file")
    parser.add_argument("--smoke", action="store_true",
                        help="the bundled 3-min excerpt, one task, plus a 3-minute memory run: checks that it runs")
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "EDF"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.recording = Path(__file__).resolve().parents[1] / "examples" / "absence_excerpt.edf"
        args.tasks, args.chunk_s = "tuab", 40.0
        _long_recording(args.recording, 0.05)
    if args.measure:
        _measure(*args.measure)
        return
    if args.long_hours:
        _long_recording(args.recording, args.long_hours)
        return

    registry = load_registry()
    with open_recording(args.recording) as rec:
        print(f"{args.recording.name}: {rec.duration_s:.0f} s, {len(rec.segments)} segment(s)")
        for task in args.tasks.split(","):
            recipe = load_recipe(task)
            derivation = registry.resolve(rec, recipe.layout, on_missing="raise").derivation
            t0 = time.perf_counter()
            whole = collect(iter_windows(rec, recipe, derivation, policy=PreprocessPolicy("whole")))
            t1 = time.perf_counter()
            chunked = collect(iter_windows(rec, recipe, derivation,
                                           policy=PreprocessPolicy("chunked", chunk_s=args.chunk_s)))
            t2 = time.perf_counter()
            assert whole is not None and chunked is not None
            assert whole.data.shape == chunked.data.shape, (whole.data.shape, chunked.data.shape)
            assert np.allclose(whole.start_s, chunked.start_s)
            # compare in float64 from a float64 run would be tighter, but blocks are float32 (what the model sees)
            w64, c64 = whole.data.astype(np.float64), chunked.data.astype(np.float64)
            std = w64.std(axis=-1, ddof=1, keepdims=True)
            rel = np.abs(c64 - w64) / std
            dz = np.abs(zscore(chunked.data, whole.eps) - zscore(whole.data, whole.eps))
            print(
                f"  {task:8s} windows={whole.data.shape} chunk_s={args.chunk_s:g}  "
                f"|Δ|/std max={rel.max():.2e} median={np.median(rel):.2e} "
                f"(first/last window max {rel[0].max():.2e}/{rel[-1].max():.2e})  "
                f"|Δz| max={dz.max():.2e} median={np.median(dz):.2e}  "
                f"whole {t1 - t0:.2f} s, chunked {t2 - t1:.2f} s"
            )


def _measure(mode: str, path: str) -> None:
    recipe = load_recipe("mumtaz")
    t0 = time.perf_counter()
    with open_recording(path) as rec:
        derivation = load_registry().resolve(rec, recipe.layout).derivation
        n = 0
        used = None
        for block in iter_windows(rec, recipe, derivation, policy=PreprocessPolicy(mode)):  # type: ignore[arg-type]
            n += len(block)
            used = block.mode
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  mode={used:8s} windows={n} peak RSS={peak_mb:.0f} MB  wall {time.perf_counter() - t0:.1f} s")


def _long_recording(source: Path, hours: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from edf_factory import SignalSpec, write_edf

    with open_recording(source) as rec:
        derivation = load_registry().resolve(rec, "mumtaz19").derivation
        data = rec.read(derivation.file_channels)
        sfreq = int(rec.channels[derivation.file_channels[0]].sfreq)
    digital = np.clip(np.round(data * 10), -32768, 32767).astype(np.int16)  # 0.1 µV per step
    n_records = int(hours * 3600)
    specs = [SignalSpec(label=name, samples_per_record=sfreq) for name in derivation.channel_names]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.edf"

        def record(k: int) -> list[np.ndarray]:
            first = (k * sfreq) % (digital.shape[1] - sfreq)
            return [row[first : first + sfreq] for row in digital]

        write_edf(path, specs, n_records, 1.0, record)
        print(f"{hours:g} h, {len(specs)} channels at {sfreq} Hz ({path.stat().st_size / 1e6:.0f} MB EDF), recipe mumtaz:")
        for mode in ("whole", "chunked"):
            subprocess.run([sys.executable, __file__, "--measure", mode, str(path)], check=True)


if __name__ == "__main__":
    main()
