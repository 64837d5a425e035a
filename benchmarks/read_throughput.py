"""Read throughput and peak memory: lumamba's chunked reader vs ``mne.io.read_raw_edf(preload=True)``.

    python benchmarks/read_throughput.py [--hours 24] [--channels 22] [--sfreq 256] [--chunk-s 300] [--smoke]

Writes a synthetic EDF+C (int16, 1-s records, a time-stamp TAL per record) record by record into a temporary
folder (about 1.9 GB for 24 h × 22 channels × 256 Hz), then reads the whole file twice, each in its own process
so that peak RSS belongs to one reader only:

- ``pyedflib`` and ``native``: ``open_recording(reader=...)`` + ``Recording.iter_chunks`` over every channel,
  ``--chunk-s`` seconds at a time (pyedflib reads one channel per pass, native all channels in one pass);
- ``mne``: ``read_raw_edf(preload=True)`` (what upstream preprocessing does), which holds all samples as float64.

Both read a file the writer has just put in the page cache, so the figures compare decoding, not the disk.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_long_edf(path: Path, hours: float, channels: int, sfreq: int) -> Path:
    from edf_factory import SignalSpec, header_bytes, tal_block

    n_records = int(round(hours * 3600))
    signals = [SignalSpec(f"EEG {i + 1:02d}", sfreq) for i in range(channels)]
    annotation_samples = 30
    signals.append(
        SignalSpec("EDF Annotations", annotation_samples, unit="", physical_min=-1, physical_max=1)
    )
    rng = np.random.default_rng(20260101)
    # A pool of distinct records, cycled: realistic bytes without paying for 0.5 G random numbers.
    pool = [
        rng.normal(0, 1500, size=(channels, sfreq)).clip(-32768, 32767).astype("<i2").tobytes() for _ in range(97)
    ]
    with open(path, "wb") as handle:
        handle.write(header_bytes(signals, n_records, 1.0, reserved="EDF+C"))
        for record in range(n_records):
            handle.write(pool[record % len(pool)])
            handle.write(tal_block(float(record), (), annotation_samples * 2))
    return path


def worker(which: str, path: Path, chunk_s: float) -> None:
    started = time.perf_counter()
    checksum = 0.0
    samples = 0
    if which != "mne":
        from lumamba_cli.recording import open_recording

        with open_recording(path, reader=which) as rec:
            picks = [c.index for c in rec.channels]
            opened = time.perf_counter() - started
            for _, block in rec.iter_chunks(picks, chunk_s):
                checksum += float(block.sum())
                samples += block.size
    else:
        import mne

        raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
        opened = 0.0
        data = raw._data  # the preloaded float64 array, in volts
        checksum = float(data.sum() * 1e6)
        samples = data.size
    elapsed = time.perf_counter() - started
    print(json.dumps({"reader": which, "seconds": elapsed, "open_seconds": opened, "peak_rss_mb": peak_rss_mb(),
                      "samples": samples, "checksum_uv": checksum}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="recording length (default 24 h)")
    parser.add_argument("--channels", type=int, default=22)
    parser.add_argument("--sfreq", type=int, default=256)
    parser.add_argument("--chunk-s", type=float, default=300.0, help="seconds per chunk for our reader")
    parser.add_argument("--skip-mne", action="store_true", help="only measure our reader")
    parser.add_argument("--smoke", action="store_true", help="a 2-minute file: checks that the benchmark runs")
    parser.add_argument("--worker", choices=["pyedflib", "native", "mne"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.hours, args.chunk_s = 2 / 60, 30.0
    if args.worker:
        worker(args.worker, args.file, args.chunk_s)
        return

    folder = Path(tempfile.mkdtemp(prefix="lumamba-bench-"))
    try:
        path = folder / "long.edf"
        started = time.perf_counter()
        write_long_edf(path, args.hours, args.channels, args.sfreq)
        size_mb = path.stat().st_size / 1e6
        print(f"wrote {path.name}: {args.hours:g} h, {args.channels} ch @ {args.sfreq} Hz, {size_mb:,.0f} MB "
              f"in {time.perf_counter() - started:.1f} s")
        results = []
        for which in ["pyedflib", "native"] + ([] if args.skip_mne else ["mne"]):
            done = subprocess.run(
                [sys.executable, __file__, "--worker", which, "--file", str(path), "--chunk-s", str(args.chunk_s)],
                capture_output=True, text=True, check=True,
            )
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{'reader':<36}{'seconds':>9}{'MB/s':>9}{'peak RSS MB':>13}{'open s':>8}{'sum of µV':>18}")
        for result in results:
            label = ("mne read_raw_edf(preload=True)" if result["reader"] == "mne"
                     else f"lumamba {result['reader']}, {args.chunk_s:g}-s chunks")
            print(f"{label:<36}{result['seconds']:>9.1f}{size_mb / result['seconds']:>9.0f}"
                  f"{result['peak_rss_mb']:>13,.0f}{result['open_seconds']:>8.2f}{result['checksum_uv']:>18.10g}")
        print("(seconds include opening; 'open s' is lumamba's header parse + TAL scan of every record)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
