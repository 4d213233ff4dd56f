"""Lower bound on DRU(4) T=3's CPU time from its convolutions alone, beside one MONAI BasicUNet pass.

Issue 7 asks for DRU(4) with T=3 steps to take no longer than ONE eval-mode forward pass of MONAI
``BasicUNet(features=(8, 16, 32, 64, 128, 8))`` at 224x304 and 576x576 (2 threads). This script asks whether
that is possible at all with PyTorch's CPU convolutions (oneDNN): it records every convolution a DRU(4) T=3
forward runs (module, input shape), times each one **alone** (same weights, channels-last as our fast path
runs them, warm caches: an optimistic figure) and sums them. The sum is what DRU(4) would cost if every
normalisation, activation, pooling, concatenation and copy were free. In the same run it times one
BasicUNet eager pass, our full fast path, and a dense 3x3-conv ceiling, and prints the ratios.

Usage::

    python benchmarks/conv_bound.py | tee benchmarks/results/conv_bound.txt
    python benchmarks/conv_bound.py --sizes 224x304 --threads 1 --precision float32 bfloat16
"""

from __future__ import annotations

import argparse
import copy
from collections import Counter, defaultdict

import torch
from _common import environment, median_time, table
from speed import PEER, conv_ceiling, count_flops, parse_size

from monai_rurnet.inferers import TorchFastPredictor, reuse_freed_memory
from monai_rurnet.networks import build_network

_CONVS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)


def record_convs(net: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.nn.Module, torch.Size]]:
    """Every convolution module called by ``net(x)``, in call order, with its input shape."""
    calls: list[tuple[torch.nn.Module, torch.Size]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: calls.append((mod, args[0].shape)))
        for m in net.modules()
        if isinstance(m, _CONVS)
    ]
    try:
        with torch.inference_mode():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


def time_convs_alone(
    calls: list[tuple[torch.nn.Module, torch.Size]], dtype: torch.dtype, repeats: int
) -> tuple[float, dict[int, float]]:
    """Sum of the median times (s) of each distinct (conv, shape) run alone, times its number of calls; and
    the same split by output channels."""
    counts = Counter((id(m), shape) for m, shape in calls)
    modules = {id(m): m for m, _ in calls}
    total, by_width = 0.0, defaultdict(float)
    for (mid, shape), n in counts.items():
        conv = modules[mid]
        c = copy.deepcopy(conv).to(dtype=dtype, memory_format=torch.channels_last).eval()
        inp = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            med, _ = median_time(lambda: c(inp), repeats, warmup=3)  # noqa: B023 (called right here)
        total += n * med
        by_width[conv.out_channels] += n * med
    return total, dict(by_width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["224x304", "576x576"])
    ap.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    ap.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print(environment())
    reuse_freed_memory()
    dru = build_network("dru", level=4, steps=3).eval()
    peer = build_network("monai_basic_unet").eval()
    rows, split_rows = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ceiling, ceiling_name, _ = conv_ceiling(threads, 5, quick=False)
        print(f"3x3-conv ceiling, {threads} thread(s): {ceiling:.1f} GFLOP/s ({ceiling_name})")
        fast = TorchFastPredictor(dru)
        for size in args.sizes:
            h, w = parse_size(size)
            x = torch.randn(1, 3, h, w)
            calls = record_convs(dru, x)
            flops = sum(count_flops(m, torch.zeros(s)) for m, s in calls)
            coverage = flops / count_flops(dru, x)

            def peer_eager(x: torch.Tensor = x) -> torch.Tensor:
                with torch.inference_mode():
                    return peer(x)

            t_peer, _ = median_time(peer_eager, args.repeats, warmup=3)
            t_fast, _ = median_time(lambda x=x, f=fast: f(x), args.repeats, warmup=3)
            for precision in args.precision:
                dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
                bound, split = time_convs_alone(calls, dtype, args.repeats)
                rows.append(
                    [
                        threads,
                        size,
                        precision,
                        len(calls),
                        f"{coverage:.1%}",
                        bound * 1e3,
                        t_fast * 1e3,
                        t_peer * 1e3,
                        bound / t_peer,
                        flops / (ceiling * 1e9) / t_peer,
                    ]
                )
                split_rows.append((threads, size, precision, bound, split))
    print()
    print(
        table(
            [
                "threads",
                "size",
                "conv precision",
                "conv calls",
                "conv share of FLOPs",
                "DRU(4) T=3 convs alone ms (bound)",
                "DRU(4) T=3 fast path ms (float32)",
                f"{PEER} eager ms (float32)",
                f"bound / {PEER}",
                f"at-ceiling bound / {PEER}",
            ],
            rows,
        )
    )
    print()
    widths = sorted({c for *_, split in split_rows for c in split})
    print("Time of the convolutions alone (bound) by output channels, ms (share):")
    print(
        table(
            ["threads", "size", "conv precision"] + [f"{c} ch" for c in widths],
            [
                [threads, size, precision]
                + [f"{split.get(c, 0.0) * 1e3:.2f} ({split.get(c, 0.0) / bound:.0%})" for c in widths]
                for threads, size, precision, bound, split in split_rows
            ],
        )
    )


if __name__ == "__main__":
    main()
