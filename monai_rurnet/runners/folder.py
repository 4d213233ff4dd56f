"""The folder runner of the retina and hand bundles: every image of a folder to PNG mask, probability, overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_rurnet.data.writers import PngMaskWriter
from monai_rurnet.runners.base import SegmentationRunner

__all__ = ["FolderSegmentationRunner"]


class FolderSegmentationRunner(SegmentationRunner):
    """Segment every image of ``dataset`` into ``output_dir`` (see :class:`SegmentationRunner`).

    Args:
        dataset: items ``{"image": path}`` whose transform returns a channel-first ``"image"`` tensor in the input's
            grid (``(C, H, W)``) and optionally ``"display"`` (``(3, H, W)`` in [0, 1], for the overlay).
        writer: writes the outputs of one image (default :class:`~monai_rurnet.data.writers.PngMaskWriter`).
        rescaler: optional :class:`~monai_rurnet.transforms.FOVRescaler`: resample each image so its field of
            view matches the training data's, segment, and resample the probabilities back to the input grid.
        Other arguments: see :class:`SegmentationRunner`.
    """

    def __init__(self, *args: Any, writer: Any = None, rescaler: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, writer=writer if writer is not None else PngMaskWriter(), **kwargs)
        self.rescaler = rescaler

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """Foreground probability ``(*S)`` of one preprocessed image ``(C, *S)``."""
        with torch.inference_mode():
            logits = self.inferer(image.unsqueeze(0).to(self.device), self.network)
            if logits.shape[1] == 1:
                return torch.sigmoid(logits)[0, 0].float().cpu()
            return torch.softmax(logits.float(), dim=1)[0, self.foreground].cpu()

    def predict(self, data: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Foreground probability ``(H, W)`` of one preprocessed item in its own grid, and its display RGB."""
        image, display = data["image"], data.get("display")
        if self.rescaler is None:
            prob = self.probability(image).numpy()
        else:
            factor = self.rescaler.factor(display if display is not None else image)
            prob_t = self.probability(self.rescaler.resize(image, factor))
            prob = self.rescaler.restore(prob_t, tuple(image.shape[1:])).numpy()
        if display is not None:
            display = (np.asarray(display)[:3].transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8)
        return prob, display

    def process(self, index: int) -> None:
        prob, display = self.predict(self.dataset[index])
        self.writer.write(Path(self.dataset.data[index]["image"]), self.output_dir, prob, display)
