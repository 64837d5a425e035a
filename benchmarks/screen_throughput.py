"""Throughput and memory of ``lumamba screen --task tuab`` on long TUH-style recordings (prints figures only).

What it does, all on this machine, in one run:

1. writes a 1-hour (and, unless ``--no-long``, an 8-hour) 22-channel EDF at 250 Hz with TUH labels
   (``EEG FP1-REF`` … plus ``EEG EKG1-REF``), by tiling the 21 scalp channels of the real absence recording
   (``../shared/data/eeghdf_absence_epilepsy.edf``, resampled 200 → 250 Hz) or, when it is absent, synthetic
   EEG-like noise (1/f plus an alpha rhythm);
2. builds a TUAB head from the deterministic formula weights (not trained weights: timing only);
3. times the stages of lumamba's pipeline one by one (read / preprocess / model / write) in a fresh process;
4. runs the real CLI end to end (``python -m lumamba_cli screen FILE --task tuab --head H``) for 1 h and 8 h,
   each in its own subprocess, and polls each child's own peak RSS (VmHWM);
5. runs the upstream TUAB recipe as written with MNE (``read_raw_edf(preload=True)``, whole-recording
   ``filter``, ``notch_filter``, ``resample``) on the same 1-hour file, also in its own subprocess;
6. runs the upstream pipeline as written end to end on that hour (those MNE calls, bipolar rows, windows, z-score,
   then the model with the textbook sequential scan, as upstream has no CPU kernel) and prints the ratio.

Usage: ``python benchmarks/screen_throughput.py [--workdir DIR] [--no-long] [--smoke]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lumamba_cli import DISCLAIMER

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUMAMBA_SHARED", REPO.parent / "shared"))
TUH_ELECTRODES = ["FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5", "T6",
                  "A1", "A2", "FZ", "CZ", "PZ"]
RATE = 250


# ------------------------------------------------------------------------------------------------ inputs


def _source_signals(seconds: float) -> tuple[np.ndarray, str]:
    """(21, n) µV at 250 Hz: the real recording's scalp channels tiled, or synthetic EEG-like noise."""
    from scipy.signal import resample_poly

    real = SHARED / "data" / "eeghdf_absence_epilepsy.edf"
    if real.exists():
        import pyedflib

        with pyedflib.EdfReader(str(real)) as reader:
            labels = [label.strip() for label in reader.getSignalLabels()]
            rows = []
            for name in TUH_ELECTRODES:
                wanted = {"EEG " + name.upper()}
                index = next(i for i, label in enumerate(labels) if label.upper() in wanted)
                rows.append(reader.readSignal(index) * (1000.0 if reader.getPhysicalDimension(index).strip() == "mV"
                                                        else 1.0))
        data = resample_poly(np.vstack(rows), 5, 4, axis=1)  # 200 → 250 Hz
        origin = f"tiled from {real.name} (real EEG, resampled 200→250 Hz)"
    else:
        rng = np.random.default_rng(0)
        n = int(600 * RATE)
        white = rng.standard_normal((21, n))
        spectrum = np.fft.rfft(white, axis=1)
        freqs = np.fft.rfftfreq(n, 1 / RATE)
        spectrum /= np.maximum(freqs, 0.5)  # 1/f amplitude
        data = np.fft.irfft(spectrum, n=n, axis=1)
        data = 20 * data / data.std(axis=1, keepdims=True)
        data += 10 * np.sin(2 * np.pi * 10 * np.arange(n) / RATE)
        origin = "synthetic 1/f noise + 10 Hz alpha (real recording absent)"
    return data, origin


def write_tuh_edf(path: Path, hours: float) -> str:
    """Write the recording in 60-s pieces so that even 8 hours never sit in memory at once."""
    import pyedflib

    source, origin = _source_signals(hours * 3600)
    labels = [f"EEG {name}-REF" for name in TUH_ELECTRODES] + ["EEG EKG1-REF"]
    headers = [{"label": label, "dimension": "uV", "sample_frequency": RATE, "physical_max": 3000.0,
                "physical_min": -3000.0, "digital_max": 32767, "digital_min": -32768, "transducer": "",
                "prefilter": ""} for label in labels]
    total = int(hours * 3600 * RATE)
    piece = 60 * RATE
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        ecg_phase = 0
        for first in range(0, total, piece):
            offset = first % (source.shape[1] - piece)
            block = np.clip(source[:, offset:offset + piece], -2999, 2999)
            t = (np.arange(piece) + ecg_phase) / RATE
            ecg = 300 * np.exp(-((t % 0.9) - 0.45) ** 2 / 0.0005)
            ecg_phase += piece
            writer.writeSamples([np.ascontiguousarray(row) for row in block] + [ecg])
    finally:
        writer.close()
    return origin


def write_formula_head(path: Path) -> None:
    """A TUAB head whose weights come from the parity formula (deterministic, untrained)."""
    from lumamba_cli.model.formula import save_formula_head

    save_formula_head("tuab", path)


# ---------------------------------------------------------------------------------------------- children

_STAGES = r"""
import json, os, sys, time
t0 = time.perf_counter()
from pathlib import Path
import numpy as np
from lumamba_cli.recording import open_recording
from lumamba_cli.montage import load_registry, get_layout
from lumamba_cli.recipes import load_recipe
from lumamba_cli.preprocess import PreprocessPolicy, iter_windows, zscore
from lumamba_cli.inference import Scorer
from lumamba_cli.model.checkpoint import load_head
from lumamba_cli.fileio import sha256_file
from lumamba_cli.report import WindowRow, build_report, summarise, write_csv, write_report, input_summary
path, head, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
recipe = load_recipe("tuab")
model, meta = load_head(head)
scorer = Scorer(model, classification_type="bc", labels=recipe.labels, device="cpu")
scorer.score(np.zeros((2, 22, 1280), np.float32), np.zeros((22, 3), np.float32) + np.arange(3) * 0.01)  # warm-up
t_setup = time.perf_counter() - t0
times = {"read": 0.0, "preprocess": 0.0, "model": 0.0, "write": 0.0}
t = time.perf_counter()
rec = open_recording(path)
registry = load_registry()
report = registry.resolve(rec, get_layout(recipe.layout, registry=registry))
channels = report.derivation.file_channels
for _ in rec.iter_chunks(channels, 300.0):
    pass
times["read"] = time.perf_counter() - t
rows = []
mode = None
blocks = iter_windows(rec, recipe, report.derivation, policy=PreprocessPolicy("auto"))
while True:
    t = time.perf_counter()
    block = next(blocks, None)
    times["preprocess"] += time.perf_counter() - t
    if block is None:
        break
    mode = block.mode
    t = time.perf_counter()
    scores = scorer.score(zscore(block.data, eps=block.eps), block.positions, block.channel_names)
    times["model"] += time.perf_counter() - t
    for k, start in enumerate(block.start_s):
        rows.append(WindowRow(index=len(rows), start_s=float(start), end_s=float(start) + 5.0,
                              probabilities=scores.probabilities[k], predicted=scores.predicted[k]))
# iter_windows reads the file itself: its time includes a second read, which is subtracted here.
times["preprocess"] = max(0.0, times["preprocess"] - times["read"])
t = time.perf_counter()
info = input_summary(rec, sha256_file(path))
summary = summarise(rows, recipe.labels, positive_label=recipe.labels[1])
doc = build_report(task="tuab", input_info=info, rows=rows, labels=recipe.labels, summary=summary)
write_csv(out / "bench.tuab.windows.csv", rows, recipe.labels)
write_report(out / "bench.tuab.json", doc)
times["write"] = time.perf_counter() - t
print(json.dumps({"setup": t_setup, "windows": len(rows), "mode": mode, "load_avg_1min": os.getloadavg()[0], **times}))
"""

_MNE_RECIPE = r"""
import json, sys, time
import mne
mne.set_log_level("ERROR")
path = sys.argv[1]
names = [f"EEG {n}-REF" for n in %r]
times = {}
t = time.perf_counter(); raw = mne.io.read_raw_edf(path, preload=True); times["read"] = time.perf_counter() - t
raw.pick(names)
t = time.perf_counter(); raw.filter(l_freq=0.1, h_freq=75.0); times["filter"] = time.perf_counter() - t
t = time.perf_counter(); raw.notch_filter(60); times["notch"] = time.perf_counter() - t
t = time.perf_counter(); raw.resample(256, npad="auto"); times["resample"] = time.perf_counter() - t
t = time.perf_counter(); data = raw.get_data(units="uV"); times["get_data"] = time.perf_counter() - t
print(json.dumps(times))
""" % (TUH_ELECTRODES,)


# The upstream TUAB pipeline as written, rebuilt from the spec (§ recipes): MNE preload preprocessing as above, the
# TCP bipolar rows, 5-s windows, the per-window z-score (unbiased std + 1e-8), then the model in batches of 64 with
# the textbook sequential scan standing in for mamba-ssm's CUDA kernel (upstream has no CPU path) and torch's
# default threads (upstream chooses none). Same weights as lumamba's run: the formula head.
_UPSTREAM = r"""
import json, sys, time
t0 = time.perf_counter()
import mne, numpy as np, torch
from lumamba_cli.recording import open_recording
from lumamba_cli.montage import load_registry, get_layout
from lumamba_cli.recipes import load_recipe
from lumamba_cli.preprocess import zscore
from lumamba_cli.model.checkpoint import load_head
from lumamba_cli.model.mamba import reference_scan, using_scan
mne.set_log_level("ERROR")
path, head = sys.argv[1], sys.argv[2]
recipe = load_recipe("tuab")
registry = load_registry()
recording = open_recording(path)
derivation = registry.resolve(recording, get_layout(recipe.layout, registry=registry)).derivation
model, _ = load_head(head)
times = {"setup": time.perf_counter() - t0}
t = time.perf_counter(); raw = mne.io.read_raw_edf(path, preload=True); times["read"] = time.perf_counter() - t
t = time.perf_counter()
raw.filter(l_freq=0.1, h_freq=75.0); raw.notch_filter(60); raw.resample(256, npad="auto")
# MNE keeps the file's signal order (a plain EDF: no annotation signal to drop), so file indices carry over.
assert [raw.ch_names[i] for i in derivation.file_channels] == [recording.channels[i].label
                                                               for i in derivation.file_channels]
data = raw.get_data(picks=list(range(len(raw.ch_names))), units="uV")
bipolar = derivation.apply(data[derivation.file_channels])
n = bipolar.shape[1] // 1280
windows = zscore(bipolar[:, : n * 1280].reshape(len(bipolar), n, 1280).transpose(1, 0, 2))
times["preprocess"] = time.perf_counter() - t
t = time.perf_counter()
positions = torch.as_tensor(derivation.positions, dtype=torch.float32)
with torch.no_grad(), using_scan(reference_scan):
    for start in range(0, n, 64):
        x = torch.from_numpy(np.ascontiguousarray(windows[start : start + 64]))
        model(x, positions.expand(len(x), -1, -1)).softmax(-1)
times["model"] = time.perf_counter() - t
times["windows"] = n
times["torch_threads"] = torch.get_num_threads()
print(json.dumps(times))
"""


def _high_water_mib(pid: int) -> float | None:
    """The process's own peak resident set (VmHWM), or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_child(argv: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MiB, stdout) of one child process.

    The peak is the child's own VmHWM, polled every 20 ms (it only rises, so the last reading is the peak unless it
    came in the final 20 ms). Not ``os.wait4``'s ru_maxrss: Linux carries that high-water mark across fork and exec,
    so every child would report at least this parent's own size (torch and all).
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out_file, tempfile.TemporaryFile(mode="w+") as err_file:
        child = subprocess.Popen(argv, stdout=out_file, stderr=err_file, text=True,
                                 env={**os.environ, "HF_HUB_OFFLINE": "1"})
        peak = 0.0
        while child.poll() is None:
            peak = max(peak, _high_water_mib(child.pid) or 0.0)
            time.sleep(0.02)
        wall = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        out_text, err_text = out_file.read(), err_file.read()
    if child.returncode != 0:
        raise SystemExit(f"child failed ({child.returncode}): {' '.join(argv)}\n{err_text[-2000:]}")
    return wall, peak, out_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the recordings (temp dir)")
    parser.add_argument("--no-long", action="store_true", help="skip the 8-hour recording")
    parser.add_argument("--smoke", action="store_true", help="1- and 2-minute recordings: checks that it runs")
    args = parser.parse_args()
    hours = {1: 1.0, 8: 8.0} if not args.smoke else {1: 1 / 60, 8: 2 / 60}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lumamba-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    head = work / "tuab_formula_head.safetensors"
    write_formula_head(head)
    print(f"machine: {os.cpu_count()} CPU cores; torch threads default; work dir {work}")

    recordings = {1: work / f"tuh_{hours[1]:g}h.edf"}
    if not args.no_long:
        recordings[8] = work / f"tuh_{hours[8]:g}h.edf"
    for label, path in recordings.items():
        if not path.exists():
            t = time.perf_counter()
            origin = write_tuh_edf(path, hours[label])
            print(f"wrote {path.name}: {hours[label]:g} h, 22 ch @ {RATE} Hz, {path.stat().st_size / 2**20:.0f} MiB, "
                  f"{origin} ({time.perf_counter() - t:.1f} s)")

    one_hour = recordings[1]
    out = work / "stages"
    out.mkdir(exist_ok=True)
    wall, peak, text = run_child([sys.executable, "-c", _STAGES, str(one_hour), str(head), str(out)])
    stages = json.loads(text.strip().splitlines()[-1])
    busy = stages["read"] + stages["preprocess"] + stages["model"] + stages["write"]
    print("\nlumamba stages, 1 h recording, sequential (one process, model warmed up):")
    print(f"  read {stages['read']:.2f} s | preprocess {stages['preprocess']:.2f} s ({stages['mode']}) | "
          f"model {stages['model']:.2f} s | write {stages['write']:.2f} s | sum {busy:.2f} s "
          f"| {stages['windows']} windows | setup (imports, head load, warm-up) {stages['setup']:.2f} s "
          f"| machine load average {stages['load_avg_1min']:.1f}")

    print("\nlumamba screen --task tuab, end to end (CLI subprocess; includes Python start-up and imports):")
    ends: dict[int, float] = {}
    peaks: dict[int, float] = {}
    for label, path in recordings.items():
        report_dir = work / f"screen_{label}"
        wall, peak, _ = run_child([sys.executable, "-m", "lumamba_cli", "screen", str(path), "--task", "tuab",
                                   "--head", str(head), "--out", str(report_dir), "--quiet"])
        length = hours[label]
        ends[label], peaks[label] = wall, peak
        print(f"  {length:g} h: wall {wall:.1f} s = {wall / length:.1f} s per recording-hour, "
              f"{length / (wall / 60):.1f} h of EEG per minute, peak RSS {peak:.0f} MiB "
              f"(load average {os.getloadavg()[0]:.1f})")

    wall, peak, text = run_child([sys.executable, "-c", _MNE_RECIPE, str(one_hour)])
    mne_times = json.loads(text.strip().splitlines()[-1])
    print("\nupstream TUAB recipe as written with MNE (preload, whole-recording filter/notch/resample), 1 h:")
    print("  " + " | ".join(f"{k} {v:.2f} s" for k, v in mne_times.items())
          + f" | sum {sum(mne_times.values()):.2f} s | process wall {wall:.1f} s | peak RSS {peak:.0f} MiB")

    up_wall, up_peak, text = run_child([sys.executable, "-c", _UPSTREAM, str(one_hour), str(head)])
    up = json.loads(text.strip().splitlines()[-1])
    print("\nupstream pipeline as written, end to end on the same hour (MNE preload preprocessing + the model with "
          f"the reference scan, batch 64, torch's default {up['torch_threads']} threads):")
    print(f"  setup {up['setup']:.2f} s | read {up['read']:.2f} s | preprocess {up['preprocess']:.2f} s | "
          f"model {up['model']:.2f} s ({up['windows']} windows) | process wall {up_wall:.1f} s | "
          f"peak RSS {up_peak:.0f} MiB")
    print(f"  ratio, 1 h end to end: upstream {up_wall:.1f} s / lumamba {ends[1]:.1f} s = {up_wall / ends[1]:.2f}x "
          f"(target >= 4x on a quiet 2-core machine)")
    per_hour = {label: wall / hours[label] for label, wall in ends.items()}
    print("  lumamba s per recording-hour: " + ", ".join(f"{label} h {v:.1f}" for label, v in per_hour.items())
          + " (target <= 5 s incl. start-up); peak RSS " + ", ".join(f"{label} h {v:.0f} MiB"
                                                                      for label, v in peaks.items()))
    print(f"\n{DISCLAIMER}")


if __name__ == "__main__":
    main()
