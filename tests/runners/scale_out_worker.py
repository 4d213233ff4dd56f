"""Worker of tests/runners/test_scale_out.py, run alone or under torchrun: segments a folder with a small seeded
network and records which inputs this process segmented (``<out>/.processed-<rank>-<pid>.txt``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from monai_rurnet.inferers import FastInferer
from monai_rurnet.networks import build_network
from monai_rurnet.runners import FolderSegmentationRunner, GeoTiffSegmentationRunner, ImageFolderDataset


def build(kind: str, src: str, out: str, **kw):
    torch.manual_seed(0)
    net = build_network("dru", features=(4, 8, 16, 32, 64), steps=2).eval()
    if kind == "raster":
        cls, extra = GeoTiffSegmentationRunner, {"roi_size": 32, "window": 64, "sw_batch_size": 4}
        data = ImageFolderDataset(src, suffixes=(".tif",))
        inferer = FastInferer(backend="eager")
    else:
        from monai.inferers import SlidingWindowInferer
        from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd

        from monai_rurnet.data.writers import PngMaskWriter

        cls, extra = FolderSegmentationRunner, {"writer": PngMaskWriter(overlay=False)}
        data = ImageFolderDataset(
            src,
            Compose(
                [LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), ScaleIntensityd("image")]
            ),
        )
        inferer = FastInferer(SlidingWindowInferer((32, 32), 4), backend="eager")
    runner = cls(net, data, inferer, out, progress=False, reuse_memory=False, **extra, **kw)
    process = runner.process

    def recorded(index: int) -> None:
        process(index)
        log = Path(out) / f".processed-{os.environ.get('RANK', 'x')}-{os.getpid()}.txt"
        with open(log, "a") as f:
            f.write(runner.dataset.data[index]["image"] + "\n")

    runner.process = recorded
    return runner


if __name__ == "__main__":
    torch.set_num_threads(1)
    kind, src, out = sys.argv[1:4]
    kw = dict(arg.split("=", 1) for arg in sys.argv[4:])
    build(kind, src, out, **kw).run()
