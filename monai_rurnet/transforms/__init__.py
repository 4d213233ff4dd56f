"""Transforms shared by the pipelines (input checks, intensity range)."""

from monai_rurnet.transforms.appearance import RandHueSaturationd, RandJPEGd
from monai_rurnet.transforms.fov import DRIVE_FOV_DIAMETER, FOVRescaler, fov_width
from monai_rurnet.transforms.intensity import (
    EnsureChannelsd,
    InvalidImageError,
    ToUnitRanged,
    pil_standard_mode,
)

__all__ = [
    "RandHueSaturationd",
    "RandJPEGd",
    "DRIVE_FOV_DIAMETER",
    "FOVRescaler",
    "fov_width",
    "EnsureChannelsd",
    "InvalidImageError",
    "ToUnitRanged",
    "pil_standard_mode",
]
from monai_rurnet.transforms.checks import CheckSameSized  # noqa: E402
from monai_rurnet.transforms.label import ForegroundLabeld, FOVResized  # noqa: E402

__all__ += ["CheckSameSized", "FOVResized", "ForegroundLabeld"]
