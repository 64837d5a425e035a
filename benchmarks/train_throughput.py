"""The three ways to a head, timed on this machine in one run: windows per second of inference, full fine-tuning,
frozen-encoder training with and without the encoder-output cache, and probe fitting, each beside inference.

Everything runs through lumamba's own training code (``train.prepare_data``, ``fit``, ``build_features``,
``probes.fit_probe``) on synthetic TUAB-layout recordings (``tests/synthetic_eeg.py``) with the deterministic
formula weights in the official encoder layout: timing only, the scores mean nothing. Threads and the OpenMP wait
policy are chosen by ``lumamba_cli.threads.configure`` before torch loads, exactly as the CLI chooses them.
Last, a training step is timed in fresh processes on an idle machine and beside one busy process.

    python benchmarks/train_throughput.py [--subjects 24] [--duration 60] [--batch-size 32] [--smoke]

Prints figures; asserts nothing.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from lumamba_cli import DISCLAIMER, threads  # noqa: E402

USER_ENV = dict(os.environ)  # the child processes choose for themselves, as a fresh `lumamba` would
PLAN = threads.configure()  # before torch is imported, as the CLI does

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lumamba_cli.datasets import Dataset  # noqa: E402
from lumamba_cli.feature_cache import build_features  # noqa: E402
from lumamba_cli.inference import predict  # noqa: E402
from lumamba_cli.model.formula import save_formula_encoder  # noqa: E402
from lumamba_cli.probes import ProbeKind, fit_probe  # noqa: E402
from lumamba_cli.recipes import load_recipe  # noqa: E402
from lumamba_cli.train import (  # noqa: E402
    HeadOption,
    TrainOptions,
    build_model,
    build_optimiser,
    feature_inputs,
    fit,
    model_config,
    prepare_data,
    resolve_encoder,
    window_inputs,
)

_STEP = r"""
import json, sys, time
from lumamba_cli import threads
plan = threads.configure()
import torch
torch.manual_seed(0)
from lumamba_cli.model import LuMamba, LuMambaConfig
model = LuMamba(LuMambaConfig.tiny(num_classes=2)).train()
optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
x, pos = torch.randn(int(sys.argv[1]), 22, 1280), torch.rand(1, 22, 3).expand(int(sys.argv[1]), -1, -1)
y = torch.randint(0, 2, (int(sys.argv[1]),))
def step():
    loss = torch.nn.functional.cross_entropy(model(x, pos, location_jitter=True), y)
    optimiser.zero_grad(); loss.backward(); optimiser.step()
step()
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": sorted(times)[len(times) // 2], "plan": plan.describe()}))
"""


def timed_fit(model, data, inputs, recipe, options, device, out: Path) -> float:
    """Seconds of one training epoch (steps, validation and the per-epoch checkpoint), as `lumamba train` runs it."""
    optimiser = build_optimiser(model, options)
    started = time.perf_counter()
    fit(model, optimiser, data, inputs, recipe, options, device, out / "checkpoint.pt")
    return time.perf_counter() - started


def step_in_child(batch: int, steps: int, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", _STEP, str(batch), str(steps)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=24, help="synthetic subjects per class")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per recording")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cached-epochs", type=int, default=10, help="epochs timed from the encoder-output cache")
    parser.add_argument("--probe-windows", type=int, default=100_000, help="pooled embeddings a probe is fitted on")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on CUDA)")
    parser.add_argument("--smoke", action="store_true", help="tiny data, one step each: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.subjects, args.duration, args.batch_size, args.cached_epochs, args.probe_windows = 2, 10.0, 2, 1, 500
    from synthetic_eeg import make_tuab_tree

    device = torch.device(args.device)
    print(DISCLAIMER)
    print(f"torch {torch.__version__}; {PLAN.describe()}; load {threads.other_load():.1f}")
    recipe = load_recipe("tuab")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tuab_tree(tmp / "tuab", n_train_per_class=args.subjects, n_eval_per_class=0, duration_s=args.duration)
        encoder_file = save_formula_encoder(tmp / "LuMamba_formula.safetensors")
        options = TrainOptions(task="tuab", data=tmp / "tuab", dataset=Dataset.tuab, encoder=str(encoder_file),
                               epochs=1, batch_size=args.batch_size, warmup_epochs=0, cache_dir=tmp / "cache")
        started = time.perf_counter()
        data = prepare_data(options, recipe, tmp / "out")
        decode_s = time.perf_counter() - started
        n_all = len(data.train) + len(data.val)
        print(f"\ndata: {len(data.index.sources)} recordings of {args.duration:g} s, {len(data.train)} train + "
              f"{len(data.val)} val windows of 22 × 1280; first pass (decode, filter, resample, cache): "
              f"{n_all / decode_s:.0f} windows/s")

        config = model_config(recipe, "tiny", HeadOption.luna)
        encoder = resolve_encoder(str(encoder_file), recipe, config)
        rows: list[tuple[str, float]] = []

        model = build_model(recipe, config, encoder)
        started = time.perf_counter()
        predict(model, data.val.batches(64), device)
        infer = len(data.val) / (time.perf_counter() - started)
        rows.append(("inference (eval, B=64)", infer))

        model = build_model(recipe, config, encoder)
        seconds = timed_fit(model, data, window_inputs(model, data, device, args.batch_size), recipe, options,
                            device, tmp / "out")
        rows.append(("full fine-tuning epoch (LUNA head)", len(data.train) / seconds))

        frozen = TrainOptions(**{**options.__dict__, "freeze_encoder": True})
        model = build_model(recipe, config, encoder)
        seconds = timed_fit(model, data, window_inputs(model, data, device, args.batch_size), recipe, frozen,
                            device, tmp / "out")
        rows.append(("frozen encoder, no feature cache (epoch)", len(data.train) / seconds))

        model = build_model(recipe, config, encoder)
        started = time.perf_counter()
        features = [build_features(split, model, encoder.sha256, cache_dir=tmp / "features", device=device,
                                   pooled=False, batch_size=64) for split in (data.train, data.val)]
        rows.append(("encoder outputs into the cache (once)", n_all / (time.perf_counter() - started)))
        many = TrainOptions(**{**frozen.__dict__, "epochs": args.cached_epochs})
        seconds = timed_fit(model, data, feature_inputs(model, *features, device, args.batch_size), recipe, many,
                            device, tmp / "out")
        rows.append((f"frozen encoder from the cache ({args.cached_epochs} epochs)",
                     args.cached_epochs * len(data.train) / seconds))

        pooled = [f.pooled_matrix() for f in features]
        rng = np.random.default_rng(0)
        pick = rng.integers(0, len(pooled[0]), args.probe_windows)
        noise = 0.1 * pooled[0].std(axis=0)
        x_train = pooled[0][pick] + noise * rng.standard_normal((args.probe_windows, pooled[0].shape[1]))
        y_train = data.train.labels[pick]
        for kind in ProbeKind:
            started = time.perf_counter()
            fit_probe(kind, x_train, y_train, pooled[1], data.val.labels, 2)
            seconds = time.perf_counter() - started
            rows.append((f"{kind} probe fit on {args.probe_windows:,} pooled embeddings ({seconds:.1f} s)",
                         args.probe_windows / seconds))

    print(f"\n{device.type.upper() + ', batch ' + str(args.batch_size):56s} {'windows/s':>11s} {'× inference':>12s}")
    for label, rate in rows:
        print(f"{label:56s} {rate:11.1f} {rate / infer:12.2f}")
    if device.type != "cpu":
        return  # the competing-process check is about CPU threads

    steps = 1 if args.smoke else 4
    quiet = step_in_child(args.batch_size, steps, USER_ENV)
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        busy = step_in_child(args.batch_size, steps, USER_ENV)
        spinning = None if args.smoke else step_in_child(args.batch_size, 2, {**USER_ENV, "OMP_WAIT_POLICY": "ACTIVE"})
    finally:
        competitor.kill()
    print(f"\ntraining step, B={args.batch_size}, fresh process: idle {quiet['median_s']:.2f} s [{quiet['plan']}]")
    print(f"  beside one busy process: {busy['median_s']:.2f} s = {busy['median_s'] / quiet['median_s']:.2f}× the idle "
          f"step [{busy['plan']}]")
    if spinning is not None:
        print(f"  beside one busy process with spinning OpenMP threads (OMP_WAIT_POLICY=ACTIVE forced): "
              f"{spinning['median_s']:.2f} s = {spinning['median_s'] / quiet['median_s']:.1f}×")


if __name__ == "__main__":
    main()
