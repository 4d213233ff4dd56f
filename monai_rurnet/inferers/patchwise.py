"""Sliding-window inference whose every batch of patches goes through another inferer (e.g. flip ensembling per
patch, as the GeoTIFF runner does), for pipelines that hold the whole image in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["PatchwiseInferer"]


class PatchwiseInferer(Inferer):
    """Run ``sliding`` (e.g. MONAI's ``SlidingWindowInferer``) over the input, each batch of patches through
    ``inferer(patches, network)`` instead of ``network(patches)``.

    Wrapping the other way round (``FlipEnsembleInferer(SlidingWindowInferer)``) mirrors the whole image, whose
    patch grid then differs; this order mirrors each patch, as
    :func:`~monai_rurnet.runners.geotiff.segment_raster` does.

    Shapes:
        ``inputs (B, C, *S) -> (B, K, *S)``.
    """

    def __init__(self, sliding: Inferer, inferer: Inferer) -> None:
        super().__init__()
        self.sliding = sliding
        self.inferer = inferer

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        return self.sliding(inputs, lambda patches: self.inferer(patches, network, *args, **kwargs))
