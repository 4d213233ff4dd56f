"""Transforms that turn a pre/inferer/post pipeline into our runners' label (for MONAI Label's stock bundle app).

MONAI Label's ``BundleInferTask`` runs a bundle's ``preprocessing``, its ``inferer`` and its ``postprocessing``
and writes the result with ITK, which reads 2D arrays as ``(W, H)``. Our runners do two more things around the
inferer: the retina runner resamples each image so that its field of view matches DRIVE's and resamples the
probabilities back (:class:`FOVResized` before the inferer, :class:`ForegroundLabeld` after it), and every runner
thresholds the foreground probability (``>= threshold``, white void pixels of aerial tiles excluded). With these
two transforms the stock pipeline gives the runners' ``_seg`` as label indices (``0``/``1``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_rurnet.data.roads import void_mask
from monai_rurnet.inferers.probability import foreground_probability
from monai_rurnet.transforms.fov import FOVRescaler

__all__ = ["FOVResized", "ForegroundLabeld"]


class FOVResized(MapTransform):
    """Resample ``keys`` (channel-first ``(C, H, W)``) by the FOV factor of ``source`` (the RGB image in [0, 1]),
    as :class:`~monai_rurnet.runners.FolderSegmentationRunner` does with a ``rescaler``; ``rescaler=None`` (FOV
    rescaling switched off) leaves the data as it is. ``source`` keeps the input grid, which
    :class:`ForegroundLabeld` restores."""

    def __init__(
        self,
        keys: KeysCollection,
        rescaler: FOVRescaler | None,
        source: str = "display",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.rescaler = rescaler
        self.source = source

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.rescaler is None:
            return d
        factor = self.rescaler.factor(d[self.source])
        for key in self.key_iterator(d):
            d[key] = self.rescaler.resize(d[key], factor)
        return d


class ForegroundLabeld(MapTransform):
    """Logits ``(K, h, w)`` -> uint8 label ``(W, H)`` (ITK's axis order, as MONAI Label writes it): ``1`` where the
    foreground probability (softmax channel ``foreground``, or sigmoid when ``K == 1``), resampled bilinearly to
    the grid ``(H, W)`` of ``reference`` when it differs, is ``>= threshold``; ``0`` elsewhere and, with
    ``void_value``, where every channel of ``reference`` equals it (white void pixels of aerial tiles).
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference: str = "display",
        threshold: float = 0.5,
        foreground: int = 1,
        void_value: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference = reference
        self.threshold = float(threshold)
        self.foreground = int(foreground)
        self.void_value = void_value

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = d[self.reference]
        for key in self.key_iterator(d):
            prob = foreground_probability(torch.as_tensor(d[key]), self.foreground, dim=0)
            prob = FOVRescaler.restore(prob.cpu(), tuple(ref.shape[1:])).numpy()
            if self.void_value is not None:
                prob[void_mask(ref, value=self.void_value)] = 0.0
            d[key] = np.ascontiguousarray((prob >= self.threshold).astype(np.uint8).T)
        return d
