"""Scale normalisation of fundus images by their field of view (FOV), for cross-camera inference."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from monai_rurnet.data.retina import fov_mask_from_image

__all__ = ["DRIVE_FOV_DIAMETER", "fov_width", "FOVRescaler"]

#: Widest FOV chord of the DRIVE training images (mean over the 20 official masks, in pixels; range 536-541).
DRIVE_FOV_DIAMETER = 539.2


def fov_width(mask: np.ndarray) -> float:
    """FOV diameter in pixels as its widest horizontal chord (robust to FOVs cropped at top and bottom,
    which many fundus cameras produce), falling back to the area-equivalent diameter when larger."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return 0.0
    chord = float(mask.sum(axis=1).max())
    return max(chord, 2.0 * float(np.sqrt(mask.sum() / np.pi)))


class FOVRescaler:
    """Resample an image so its FOV diameter matches the training data's, and probabilities back again.

    Args:
        target_diameter: FOV diameter of the training data (``DRIVE_FOV_DIAMETER``).
        tolerance: no resampling when the factor is within ``1 +- tolerance``.
        min_factor, max_factor: clamp of the scale factor (a failed FOV estimate must not explode sizes).

    Usage: ``factor = r.factor(rgb_chw)``; ``small = r.resize(image, factor)``; ``prob = r.restore(p, shape)``.
    """

    def __init__(
        self,
        target_diameter: float = DRIVE_FOV_DIAMETER,
        tolerance: float = 0.05,
        min_factor: float = 0.2,
        max_factor: float = 3.0,
    ) -> None:
        self.target = float(target_diameter)
        self.tolerance = float(tolerance)
        self.min_factor = float(min_factor)
        self.max_factor = float(max_factor)

    def factor(self, image: np.ndarray | torch.Tensor, mask: np.ndarray | None = None) -> float:
        """Scale factor for a channel-first image (any intensity range); 1.0 when no FOV is found."""
        if mask is None:
            mask = fov_mask_from_image(np.asarray(image), channel_dim=0)
        width = fov_width(mask)
        if width < 16:
            return 1.0
        f = float(np.clip(self.target / width, self.min_factor, self.max_factor))
        return 1.0 if abs(f - 1.0) <= self.tolerance else f

    @staticmethod
    def resize(image: torch.Tensor, factor: float, nearest: int = 0) -> torch.Tensor:
        """Resample a channel-first ``(C, H, W)`` image by ``factor`` (bilinear, antialiased when shrinking); its
        last ``nearest`` channels (e.g. a stroke map) nearest-neighbour, so that labels stay labels."""
        if factor == 1.0:
            return image
        size = [max(16, int(round(s * factor))) for s in image.shape[1:]]
        c = image.shape[0] - nearest
        out = F.interpolate(
            image[None, :c].float(), size=size, mode="bilinear", align_corners=False, antialias=factor < 1
        )
        if nearest:
            labels = F.interpolate(image[None, c:].float(), size=size, mode="nearest-exact")
            out = torch.cat([out, labels], dim=1)
        return out[0]

    @staticmethod
    def restore(prob: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """Resample a probability map ``(H', W')`` back to the input grid ``shape`` (bilinear)."""
        if tuple(prob.shape) == tuple(shape):
            return prob
        out = F.interpolate(prob[None, None].float(), size=list(shape), mode="bilinear", align_corners=False)
        return out[0, 0].clamp(0, 1)
