"""Runners: find the inputs, read, infer (any :mod:`monai_rurnet.inferers` inferer), write, print a summary.

The bundles' ``inference.json`` builds one as its ``evaluator`` (MONAI's standard inference properties) over a
``dataset`` of the input folder; reading and writing go through :mod:`monai_rurnet.data`.
"""

from monai_rurnet.runners.base import ImageFolderDataset, SegmentationRunner
from monai_rurnet.runners.folder import FolderSegmentationRunner
from monai_rurnet.runners.geotiff import (
    GEO_SUFFIXES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    GeoTiffSegmentationRunner,
    segment_raster,
)

__all__ = [
    "GEO_SUFFIXES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FolderSegmentationRunner",
    "GeoTiffSegmentationRunner",
    "ImageFolderDataset",
    "SegmentationRunner",
    "segment_raster",
]
