"""Training throughput of `lumamba train`: windows per second on CPU (and CUDA when present), and the cost of
the first (decoding + preprocessing) epoch against epochs served from the window cache.

Prints figures; asserts nothing. Synthetic TUAB-layout EDF files (tests/synthetic_eeg.py) stand in for data.

    python benchmarks/train_throughput.py [--subjects 6] [--duration 60] [--batch-size 32] [--steps 6] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from synthetic_eeg import make_tuab_tree  # noqa: E402

from lumamba_cli import datasets, window_cache  # noqa: E402
from lumamba_cli.recipes import load_recipe  # noqa: E402
from lumamba_cli.train import HeadOption, build_model, model_config  # noqa: E402

CONFIGS = {
    "tiny (released size, LUNA head)": ("tiny", "luna"),
    "tiny, Mamba head": ("tiny", "mamba"),
    "small test model (1 block, Q=2, E=32)": ("num_blocks=1,num_queries=2,embed_dim=32", "luna"),
}


def time_steps(recipe, split, config: str, head: str, device: torch.device, batch_size: int, steps: int,
               freeze: bool = False) -> tuple[float, float]:
    """(train windows/s, inference windows/s), after one warm-up step."""
    torch.manual_seed(0)
    model = build_model(recipe, model_config(recipe, config, HeadOption(head)), None)
    model.to(device).train()
    if freeze:
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("classifier."))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.05)
    rng = np.random.default_rng(0)
    use_bf16 = device.type == "cuda"

    def batch():
        idx = rng.choice(len(split), size=batch_size, replace=len(split) < batch_size)
        x, pos, y = split.batch(idx)
        return torch.from_numpy(x).to(device), torch.from_numpy(pos).to(device), torch.from_numpy(y).to(device)

    def step():
        x, pos, y = batch()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x, pos, location_jitter=True)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_rate = steps * batch_size / (time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        x, pos, _ = batch()
        model(x, pos)
        start = time.perf_counter()
        for _ in range(steps):
            x, pos, _ = batch()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                model(x, pos)
        if device.type == "cuda":
            torch.cuda.synchronize()
        infer_rate = steps * batch_size / (time.perf_counter() - start)
    return train_rate, infer_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=6, help="synthetic subjects per class")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per recording")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed optimisation steps per configuration")
    parser.add_argument("--smoke", action="store_true", help="tiny data and one step: checks that it runs")
    args = parser.parse_args()
    if args.smoke:
        args.subjects, args.duration, args.batch_size, args.steps = 1, 10.0, 2, 1

    recipe = load_recipe("tuab")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tuab_tree(tmp / "tuab", n_train_per_class=args.subjects, n_eval_per_class=0, duration_s=args.duration)
        index = datasets.discover("tuab", tmp / "tuab", recipe.labels)
        hours = len(index.sources) * args.duration / 3600
        cache = tmp / "cache"

        start = time.perf_counter()
        split = window_cache.build_split(index, index.sources, recipe, cache_dir=cache)
        first = time.perf_counter() - start
        start = time.perf_counter()
        split = window_cache.build_split(index, index.sources, recipe, cache_dir=cache)
        x_all = [split.batch(np.arange(i, min(i + 256, len(split))))[0] for i in range(0, len(split), 256)]
        cached = time.perf_counter() - start
        del x_all
        print(f"\ndata: {len(index.sources)} recordings, {hours * 60:.1f} min of 21-channel EEG at 250 Hz, "
              f"{len(split)} windows of 22 x 1280")
        print(f"first pass (decode EDF, filter, resample, cache): {first:.2f} s = {len(split) / first:.0f} windows/s "
              f"= {hours * 3600 / first:.0f}x real time")
        print(f"cached pass (memmap read + z-score of every window): {cached:.2f} s = {len(split) / cached:.0f} "
              "windows/s")

        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        for device in devices:
            print(f"\n{device.type.upper()} (batch {args.batch_size}, {args.steps} timed steps)")
            print(f"{'model':42s} {'train w/s':>10s} {'infer w/s':>10s}")
            for label, (config, head) in CONFIGS.items():
                train_rate, infer_rate = time_steps(recipe, split, config, head, device, args.batch_size, args.steps)
                print(f"{label:42s} {train_rate:10.1f} {infer_rate:10.1f}")
            train_rate, _ = time_steps(recipe, split, "tiny", "luna", device, args.batch_size, args.steps, True)
            print(f"{'tiny, --freeze-encoder (head only)':42s} {train_rate:10.1f}")


if __name__ == "__main__":
    main()
