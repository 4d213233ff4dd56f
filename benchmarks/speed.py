"""CPU speed of the Recurrent U-Net variants vs MONAI baselines: latency, fps, FLOPs, GFLOP/s, peak RSS.

Everything is measured in one run: for every thread count and input size, all (model, backend) pairs are timed
round-robin (one call of each per round, so slow drifts of the shared machine hit all alike) and the median
over the rounds is reported, after warm-up. In every round each timed call directly follows an untimed call of
the same runner (``--settle``, default 1), so that what another runner leaves behind (ONNX Runtime or OpenMP
worker threads still spinning, other weights in the caches) does not land in its time. A dense 3x3-conv
"ceiling" (best GFLOP/s over a few shapes and memory formats) is measured in the same run, and the DRU(4) T=3
time is reported as a ratio to one BasicUNet(features=(8, 16, 32, 64, 128, 8)) forward pass.

Backends: ``eager`` (``net.eval()`` under ``torch.inference_mode``, NCHW), ``fast``
(:class:`monai_rurnet.inferers.TorchFastPredictor` with its defaults: channels-last, and for the recurrent
models a frozen TorchScript trace of the step), ``fast_nojit`` (the same without the trace, optional),
``fast_exact`` (``fast`` with ``exact_norms=True``: group norms with exact two-pass statistics, optional) and
``onnxruntime`` (:class:`monai_rurnet.inferers.OnnxRuntimePredictor`, CPU EP, worker threads spinning between
operators as ONNX Runtime does by default: its fastest setting when nothing else runs). Optional: ``fast_bf16``
(``fast`` with ``precision="bfloat16"``: the network in bfloat16, one-channel-per-group norms in float32; for
every model, baselines included) and ``eager_bf16`` (``eager`` under ``torch.autocast`` with bfloat16); their
"% ceiling" is against a bfloat16 3x3-conv ceiling (under autocast) measured the same way.

Allocator: the bundles' runners keep freed memory for reuse (:func:`monai_rurnet.inferers.reuse_freed_memory`,
process-wide). With ``--allocator reuse`` (default) it is switched on before anything is measured, so the
baselines, eager runs and the conv ceiling get it too (a strict comparison); ``--allocator default`` keeps
glibc's stock ``malloc`` for every model and backend.

Usage::

    python benchmarks/speed.py --quick                      # smoke run (tiny inputs, 1 thread)
    python benchmarks/speed.py | tee benchmarks/results/speed.txt
    python benchmarks/speed.py --allocator default      # stock malloc everywhere
    python benchmarks/speed.py --backends eager fast fast_bf16 eager_bf16 --models "DRU(4) T=3" BasicUNet
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import current_rss_mb, environment, median_time, peak_rss_mb, reset_peak_rss, table
from monai.networks.nets import UNet
from torch.utils.flop_counter import FlopCounterMode

from monai_rurnet.inferers import (
    OnnxRuntimePredictor,
    TorchFastPredictor,
    freed_memory_reused,
    reuse_freed_memory,
)
from monai_rurnet.networks import build_network, export_step_onnx

MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    "DRU(4) T=3": lambda: build_network("dru", level=4, steps=3),
    "SRU(0) T=3": lambda: build_network("sru", level=0, steps=3),
    "U-Net-G": lambda: build_network("unet_g"),
    "BasicUNet": lambda: build_network("monai_basic_unet"),
    "MONAI UNet": lambda: UNet(2, 3, 2, channels=(8, 16, 32, 64, 128), strides=(2, 2, 2, 2), num_res_units=2),
}
OURS = "DRU(4) T=3"
PEER = "BasicUNet"


def parse_size(s: str) -> tuple[int, int]:
    h, w = s.lower().split("x")
    return int(h), int(w)


def count_flops(net: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        net(x)
    return float(fc.get_total_flops())


BF16_BACKENDS = ("fast_bf16", "eager_bf16")


def conv_ceiling(
    threads: int, repeats: int, quick: bool, bf16: bool = False
) -> tuple[float, str, list[list[object]]]:
    """Best GFLOP/s of a dense 3x3 conv (no bias) over a few shapes, NCHW and channels-last (``bf16``: under
    ``torch.autocast`` with bfloat16, as the bfloat16 backends run)."""
    torch.set_num_threads(threads)
    shapes = [(64, 64, 256, 256), (128, 128, 128, 128), (32, 32, 512, 512), (256, 256, 64, 64)]
    if quick:
        shapes = [(64, 64, 64, 64), (128, 128, 32, 32)]
    rows, best, best_name = [], 0.0, ""
    for cin, cout, h, w in shapes:
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False).eval()
        flops = 2.0 * cin * cout * 9 * h * w
        for fmt_name, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            c = conv.to(memory_format=fmt)
            x = torch.randn(1, cin, h, w).contiguous(memory_format=fmt)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                med, _ = median_time(lambda: c(x), repeats)  # noqa: B023 (called right here)
            g = flops / med / 1e9
            name = f"{cin}->{cout} @{h}x{w} {fmt_name}" + (" bf16" if bf16 else "")
            rows.append([threads, name, g])
            if g > best:
                best, best_name = g, name
    return best, best_name, rows


def make_runner(name: str, backend: str, net: torch.nn.Module, onnx_path: Path | None, threads: int):
    if backend == "eager":

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return net(x)

        return run
    if backend == "eager_bf16":

        def run_bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x)

        return run_bf16
    if backend == "fast":
        return TorchFastPredictor(net)
    if backend == "fast_bf16":
        return TorchFastPredictor(net, precision="bfloat16")
    if backend == "fast_exact":
        return TorchFastPredictor(net, exact_norms=True)
    if backend == "fast_nojit":
        return TorchFastPredictor(net, jit=False)
    if backend == "onnxruntime":
        import onnx

        return OnnxRuntimePredictor(onnx.load(onnx_path), intra_op_threads=threads, allow_spinning=True)
    raise ValueError(f"unknown backend {backend}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["224x304", "576x576", "1024x1024"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--settle",
        type=int,
        default=1,
        help="untimed calls of the same runner right before each timed call (0: plain round-robin)",
    )
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--backends", nargs="+", default=["eager", "fast", "onnxruntime"])
    p.add_argument(
        "--allocator",
        choices=["reuse", "default"],
        default="reuse",
        help="reuse: keep freed memory for reuse (monai_rurnet.inferers.reuse_freed_memory, as the bundles' "
        "runners do) from the start, so every model and backend runs with it; default: glibc's stock "
        "malloc for all",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small inputs, 1 thread, 2 repeats")
    args = p.parse_args()
    reuse = args.allocator == "reuse"
    if reuse:
        reuse_freed_memory()
    if args.quick:
        args.sizes, args.threads, args.repeats = ["64x96", "128x128"], [1], 2
    sizes = [parse_size(s) for s in args.sizes]

    print("# Speed benchmark (benchmarks/speed.py)\n")
    print(environment())
    print(f"command: python {' '.join(sys.argv)}")
    print(
        "batch 1, float32 (fast_bf16: the network in bfloat16; eager_bf16: torch.autocast), "
        f"repeats {args.repeats} (median, round-robin over models/backends, each timed call "
        f"right after {args.settle} untimed call(s) of the same runner), "
        f"warm-up {args.warmup}; allocator: {args.allocator} (freed memory reused: {freed_memory_reused()})\n"
    )
    torch.manual_seed(0)
    nets = {m: MODELS[m]().eval() for m in args.models}
    tmp = tempfile.TemporaryDirectory(prefix="speed_onnx_")
    onnx_paths: dict[str, Path] = {}
    if "onnxruntime" in args.backends:
        for m, net in nets.items():
            t0 = time.perf_counter()
            onnx_paths[m] = Path(tmp.name) / f"{len(onnx_paths)}.onnx"
            export_step_onnx(net, onnx_paths[m])
            print(f"exported {m} to ONNX in {time.perf_counter() - t0:.1f} s")
    params = {m: sum(p.numel() for p in net.parameters()) for m, net in nets.items()}
    print(table(["model", "parameters"], [[m, f"{n:,}"] for m, n in params.items()]), "\n")

    flops: dict[tuple[str, tuple[int, int]], float] = {}
    for m, net in nets.items():
        for s in sizes:
            flops[(m, s)] = count_flops(net, torch.randn(1, 3, *s))

    headers = [
        "threads",
        "size",
        "model",
        "backend",
        "median ms",
        "fps",
        "GFLOP",
        "GFLOP/s",
        "% ceiling",
        "peak RSS MB",
        "Δ RSS MB",
    ]
    ratio_headers = [
        "threads",
        "size",
        f"{OURS} backend",
        f"{OURS} ms",
        f"/ {PEER} eager",
        f"/ {PEER} best backend",
        "FLOP ratio",
    ]
    rows, ceil_rows, ratio_rows = [], [], []
    ceilings: dict[tuple[int, bool], float] = {}
    precisions = [False] + ([True] if any(b in BF16_BACKENDS for b in args.backends) else [])
    for threads in args.threads:
        for bf16 in precisions:
            best, best_name, crow = conv_ceiling(threads, max(3, args.repeats), args.quick, bf16)
            ceilings[(threads, bf16)] = best
            ceil_rows += crow
            print(f"[{threads} thread(s)] 3x3-conv ceiling: {best:.1f} GFLOP/s ({best_name})", flush=True)
        torch.set_num_threads(threads)
        runners = {
            (m, b): make_runner(m, b, nets[m], onnx_paths.get(m), threads)
            for m in args.models
            for b in args.backends
        }
        for s in sizes:
            x = torch.randn(1, 3, *s)
            times: dict[tuple[str, str], list[float]] = {k: [] for k in runners}
            peaks: dict[tuple[str, str], float] = dict.fromkeys(runners, 0.0)
            base: dict[tuple[str, str], float] = dict.fromkeys(runners, 0.0)
            for run in runners.values():
                for _ in range(args.warmup):
                    run(x)
            for _ in range(args.repeats):
                for k, run in runners.items():
                    for _ in range(args.settle):
                        run(x)
                    reset_peak_rss()
                    before = current_rss_mb()
                    t0 = time.perf_counter()
                    run(x)
                    times[k].append(time.perf_counter() - t0)
                    if peak_rss_mb() > peaks[k]:
                        peaks[k], base[k] = peak_rss_mb(), before
            block_start, ratio_start = len(rows), len(ratio_rows)
            for (m, b), ts in times.items():
                med = statistics.median(ts)
                f = flops[(m, s)]
                g = f / med / 1e9
                rows.append(
                    [
                        threads,
                        f"{s[0]}x{s[1]}",
                        m,
                        b,
                        med * 1e3,
                        1.0 / med,
                        f / 1e9,
                        g,
                        100.0 * g / ceilings[(threads, b in BF16_BACKENDS)],
                        peaks[(m, b)],
                        peaks[(m, b)] - base[(m, b)],
                    ]
                )
            if OURS in args.models and PEER in args.models:
                peer_eager = statistics.median(times[(PEER, "eager")]) if "eager" in args.backends else None
                peer_best = min(statistics.median(times[(PEER, b)]) for b in args.backends)
                for b in args.backends:
                    ours = statistics.median(times[(OURS, b)])
                    ratio_rows.append(
                        [
                            threads,
                            f"{s[0]}x{s[1]}",
                            b,
                            ours * 1e3,
                            ours / peer_eager if peer_eager else float("nan"),
                            ours / peer_best,
                            flops[(OURS, s)] / flops[(PEER, s)],
                        ]
                    )
            # print each block as soon as it is measured (long runs on a shared machine may be cut short)
            print(f"\n[{threads} thread(s)] {s[0]}x{s[1]}\n")
            print(table(headers, rows[block_start:]))
            if len(ratio_rows) > ratio_start:
                print()
                print(table(ratio_headers, ratio_rows[ratio_start:]))
            print(flush=True)

    print("\n## Latency, throughput, FLOPs (all blocks)\n")
    print(table(headers, rows))
    print("\n## 3x3-conv ceiling (dense conv, no bias, batch 1)\n")
    print(table(["threads", "conv", "GFLOP/s"], ceil_rows))
    if ratio_rows:
        print(f"\n## {OURS} time / one {PEER} forward (same threads, size and run)\n")
        print(table(ratio_headers, ratio_rows))
    print(
        "\nGFLOP counts multiply-adds as 2 FLOPs (torch.utils.flop_counter, convolutions only). "
        "peak RSS: process VmHWM during one call (reset before each call); Δ: over the RSS before the call."
    )


if __name__ == "__main__":
    main()
