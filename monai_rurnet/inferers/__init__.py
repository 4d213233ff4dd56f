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
from monai_rurnet.inferers.geotiff_runner import (
    GEO_SUFFIXES,
    GeoTiffOutputs,
    GeoTiffSegmentationRunner,
    segment_raster,
)

__all__ += ["GEO_SUFFIXES", "GeoTiffOutputs", "GeoTiffSegmentationRunner", "segment_raster"]
from monai_rurnet.inferers.autocast import AutocastInferer  # noqa: E402
from monai_rurnet.inferers.ensemble import FlipEnsembleInferer  # noqa: E402
from monai_rurnet.inferers.fast import (  # noqa: E402
    PRECISIONS,
    FastInferer,
    OnnxRuntimePredictor,
    TorchFastPredictor,
    export_step_onnx,
    optimize_for_inference,
)
from monai_rurnet.inferers.memory import freed_memory_reused, reuse_freed_memory  # noqa: E402
from monai_rurnet.inferers.norms import TwoPassGroupNorm  # noqa: E402

__all__ += [
    "AutocastInferer",
    "PRECISIONS",
    "FastInferer",
    "OnnxRuntimePredictor",
    "TorchFastPredictor",
    "export_step_onnx",
    "optimize_for_inference",
    "reuse_freed_memory",
    "FlipEnsembleInferer",
    "freed_memory_reused",
    "TwoPassGroupNorm",
]
