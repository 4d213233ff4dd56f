"""A 3D Recurrent U-Net inside a plain MONAI pipeline on a NIfTI volume (issue 3, item 5).

The script writes a synthetic volume (spheres and a tube) with nibabel, then runs::

    LoadImage -> EnsureChannelFirst -> ScaleIntensity -> sliding_window_inference(3D DRU(4)) -> argmax -> SaveImage

and writes ``<out_dir>/synthetic_seg.nii.gz`` with the input's shape and affine. The network is **untrained**
(random He initialisation): the labels it writes are meaningless; the example shows the API, i.e. that the
network drops into MONAI's 3D tooling unchanged (``spatial_dims=3``, any volume size through sliding windows).

Run::

    python examples/nifti_3d_pipeline.py [OUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import AsDiscrete, Compose, EnsureChannelFirst, LoadImage, SaveImage, ScaleIntensity

from monai_rurnet.networks import build_network

__all__ = ["write_synthetic_volume", "main"]


def write_synthetic_volume(
    path: str | Path, shape: tuple[int, int, int] = (48, 48, 40), seed: int = 0
) -> Path:
    """Write a float32 NIfTI volume with a few bright spheres and a tube on a noisy background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).astype(np.float32)
    vol = rng.normal(0.0, 0.1, size=shape).astype(np.float32)
    for _ in range(3):
        centre = rng.uniform(8, np.array(shape) - 8)
        radius = rng.uniform(4, 8)
        vol[np.linalg.norm(grid - centre, axis=-1) < radius] += 1.0
    # a tube along the last axis
    vol[np.linalg.norm(grid[..., :2] - np.array([shape[0] / 2, shape[1] / 3]), axis=-1) < 3] += 0.8
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = [-30.0, 10.0, 5.0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return path


def main(out_dir: str | Path = "outputs/nifti_3d", roi_size: tuple[int, int, int] = (32, 32, 32)) -> Path:
    """Write the synthetic volume to ``out_dir``, segment it and return the path of the saved segmentation."""
    out_dir = Path(out_dir)
    image_file = write_synthetic_volume(out_dir / "synthetic.nii.gz")
    torch.manual_seed(0)
    # untrained: random weights, the output only demonstrates shapes, metadata and the API
    net = build_network(
        "dru", spatial_dims=3, in_channels=1, out_channels=2, features=(8, 16, 32, 64, 128), level=4, steps=3
    ).eval()

    preprocessing = Compose([LoadImage(image_only=True), EnsureChannelFirst(), ScaleIntensity()])
    image = preprocessing(str(image_file))  # MetaTensor (1, H, W, D) carrying the affine
    with torch.no_grad():
        # windows of 32^3 (divisible by 16); the volume itself may have any size
        logits = sliding_window_inference(image[None], roi_size, sw_batch_size=2, predictor=net, overlap=0.25)
    seg = AsDiscrete(argmax=True)(logits[0])  # (1, H, W, D), keeps the input's metadata
    seg = seg.to(torch.uint8)
    saver = SaveImage(
        output_dir=str(out_dir),
        output_postfix="seg",
        output_ext=".nii.gz",
        output_dtype=np.uint8,
        separate_folder=False,
        print_log=False,
    )
    saver(seg)
    return out_dir / "synthetic_seg.nii.gz"


if __name__ == "__main__":
    print(main(*sys.argv[1:2]))
