"""Inferers: anytime/early-exit recurrent inference, padding, and the bundles' folder runner."""

from monai_rurnet.inferers.anytime import (
    DivisiblePadInferer,
    RecurrentPredictor,
    RecurrentSlidingWindowInferer,
)
from monai_rurnet.inferers.runner import (
    IMAGE_SUFFIXES,
    FolderSegmentationRunner,
    PngMaskWriter,
    find_images,
    overlay_image,
)

__all__ = [
    "DivisiblePadInferer",
    "RecurrentPredictor",
    "RecurrentSlidingWindowInferer",
    "IMAGE_SUFFIXES",
    "FolderSegmentationRunner",
    "PngMaskWriter",
    "find_images",
    "overlay_image",
]
