"""Throughput of LuMamba-tiny inference: windows per second, peak memory, scaling with window length.

Prints figures; asserts nothing. Weights are the deterministic parity formula (no download needed).

    python benchmarks/model_throughput.py                 # CPU, default sizes
    python benchmarks/model_throughput.py --device cuda   # adds bf16 autocast and mamba-ssm vs torch

Measured on the device it runs on, with whatever else that machine is doing: compare figures only from
the same machine and load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch

from lumamba_cli import DISCLAIMER
from lumamba_cli.model import LuMamba, LuMambaConfig
from lumamba_cli.model.formula import formula_state_dict
from lumamba_cli.model.mamba import mamba_ssm_status, reference_scan, using_scan


def build_model(head: str, device: torch.device) -> LuMamba:
    options = {"luna": None, "mamba": "mamba", "linear": "linear"}
    config = LuMambaConfig.tiny(num_classes=2, classifier_option=options[head])
    model = LuMamba(config).eval()
    weights = formula_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()})
    model.load_state_dict({k: torch.from_numpy(v).float() for k, v in weights.items()})
    return model.to(device)


def inputs(batch: int, channels: int, samples: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, samples, generator=g)
    locations = torch.rand(1, channels, 3, generator=g).expand(batch, -1, -1).contiguous()
    return x.to(device), locations.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


CPU_SECONDS: list[float] = []  # process CPU time of the last time_call's timed runs, per run


def time_call(fn, device, repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(median seconds, fastest seconds) of ``fn()`` after ``warmup`` untimed calls.

    Also records the process CPU time per run: on a shared machine wall time includes waiting for cores
    that other programs hold, CPU time much less so.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    CPU_SECONDS.clear()
    for _ in range(repeats):
        cpu_start, start = time.process_time(), time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        CPU_SECONDS.append(time.process_time() - cpu_start)
    return statistics.median(times), min(times)


def cpu_note(batch: int) -> str:
    per_window = statistics.median(CPU_SECONDS) / batch
    return f"{per_window * 1e3:.2f} CPU-ms/window"


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=64, help="windows per batch")
    parser.add_argument("--channels", type=int, default=22)
    parser.add_argument("--samples", type=int, default=1280, help="samples per window (multiple of 40)")
    parser.add_argument("--long-samples", type=int, default=46_080, help="one long window (3 min at 256 Hz)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head", choices=["luna", "mamba", "linear"], default="luna")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave the default)")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the textbook scan")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the benchmark runs")
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.samples, args.long_samples, args.repeats = 2, 200, 400, 1

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(DISCLAIMER)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"head {args.head}, float32, eval, inference_mode")
    if hasattr(os, "getloadavg"):
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              "(other programs running make the wall-clock figures pessimistic)")
    # with more runnable threads than cores, OpenMP's default spin-waiting burns the cores others need
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    model = build_model(args.head, device)
    x, locations = inputs(args.batch, args.channels, args.samples, device)
    n_patches = args.samples // model.config.patch_size

    with torch.inference_mode():
        median, best = time_call(lambda: model(x, locations), device, args.repeats)
        default_rate = args.batch / median
        print(f"backend {model.backend:9s} B={args.batch} C={args.channels} T={args.samples}: "
              f"{default_rate:8.1f} windows/s (median of {args.repeats}; best {args.batch / best:.1f}; "
              f"{cpu_note(args.batch)})")
        if not args.skip_reference:
            with using_scan(reference_scan):
                ref_median, ref_best = time_call(lambda: model(x, locations), device, max(2, args.repeats // 2))
            print(f"reference scan    B={args.batch} C={args.channels} T={args.samples}: "
                  f"{args.batch / ref_median:8.1f} windows/s (best {args.batch / ref_best:.1f}; "
                  f"{cpu_note(args.batch)}); default is {ref_median / median:.2f}x faster")
        print(f"peak RSS so far: {peak_rss_mib():.0f} MiB")
        if device.type == "cuda":
            print(f"CUDA max allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")

        # linear scaling: time per patch, one window of each length
        short_x, short_loc = inputs(1, args.channels, args.samples, device)
        long_x, long_loc = inputs(1, args.channels, args.long_samples, device)
        short_t, _ = time_call(lambda: model(short_x, short_loc), device, args.repeats)
        long_t, _ = time_call(lambda: model(long_x, long_loc), device, max(2, args.repeats // 2))
        long_patches = args.long_samples // model.config.patch_size
        print(f"one window of {args.samples} samples ({n_patches} patches): {short_t * 1e3:.1f} ms, "
              f"{short_t / n_patches * 1e6:.0f} µs/patch")
        print(f"one window of {args.long_samples} samples ({long_patches} patches): {long_t * 1e3:.1f} ms, "
              f"{long_t / long_patches * 1e6:.0f} µs/patch")
        print(f"peak RSS: {peak_rss_mib():.0f} MiB")

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf_median, _ = time_call(lambda: model(x, locations), device, args.repeats)
            print(f"bf16 autocast ({model.backend}): {args.batch / bf_median:.1f} windows/s, "
                  f"CUDA max allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
            available, reason = mamba_ssm_status()
            if available:
                model.set_backend("torch")
                torch_out = model.encode(x, locations)
                torch_median, _ = time_call(lambda: model(x, locations), device, args.repeats)
                model.set_backend("mamba-ssm")
                fused_out = model.encode(x, locations)
                fused_median, _ = time_call(lambda: model(x, locations), device, args.repeats)
                diff = float((fused_out - torch_out).abs().max() / torch_out.abs().max())
                print(f"torch backend on CUDA: {args.batch / torch_median:.1f} windows/s; mamba-ssm: "
                      f"{args.batch / fused_median:.1f} windows/s; encode max normalised difference {diff:.2e}")
            else:
                print(reason)


if __name__ == "__main__":
    main()
