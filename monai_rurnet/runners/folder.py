"""The folder runner of the retina and hand bundles: every image of a folder to PNG mask, probability, overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_rurnet.data.guidance_io import read_prior, read_strokes
from monai_rurnet.data.strokes import apply_strokes
from monai_rurnet.data.writers import PngMaskWriter
from monai_rurnet.inferers.probability import foreground_probability
from monai_rurnet.networks.guidance import pack_guidance
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
        Other arguments: see :class:`SegmentationRunner` (``prior_dir``/``strokes_dir``: interactive refinement;
        the guidance is packed after the preprocessed image's channels, so that sliding windows, flips and the
        rescaler treat it with the image, strokes as labels; stroke pixels are set to probability 1/0).
    """

    def __init__(self, *args: Any, writer: Any = None, rescaler: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, writer=writer if writer is not None else PngMaskWriter(), **kwargs)
        self.rescaler = rescaler

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """Foreground probability ``(*S)`` of one preprocessed image ``(C, *S)``."""
        with torch.inference_mode():
            logits = self.inferer(image.unsqueeze(0).to(self.device), self.network)
            return foreground_probability(logits, self.foreground)[0].cpu()

    def predict(
        self, data: dict, prior: np.ndarray | None = None, strokes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Foreground probability ``(H, W)`` of one preprocessed item in its own grid, and its display RGB.

        ``prior`` (float ``(H, W)``, [0, 1], negative for none) and ``strokes`` (uint8 ``(H, W)``, 0/1/2) refine
        the result (interactive refinement); stroke pixels get probability 1 (foreground) or 0 (background).
        """
        image, display = data["image"], data.get("display")
        shape = tuple(image.shape[1:])
        guided = prior is not None or strokes is not None
        if guided:
            image = torch.cat([image, torch.from_numpy(pack_guidance(prior, strokes, shape))])
        if self.rescaler is None:
            prob = self.probability(image).numpy()
        else:
            factor = self.rescaler.factor(display if display is not None else data["image"])
            prob_t = self.probability(self.rescaler.resize(image, factor, nearest=1 if guided else 0))
            prob = self.rescaler.restore(prob_t, shape).numpy()
        if strokes is not None:
            prob = apply_strokes(prob, strokes).astype(np.float32)
        if display is not None:
            display = (np.asarray(display)[:3].transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8)
        return prob, display

    def process(self, index: int) -> None:
        path = Path(self.dataset.data[index]["image"])
        guidance = self.guidance_files()
        prior_path, strokes_path = guidance.prior(path.stem), guidance.strokes(path.stem)
        data = self.dataset[index]
        shape = tuple(data["image"].shape[1:])
        prior = read_prior(prior_path, shape) if prior_path is not None else None
        strokes = read_strokes(strokes_path, shape) if strokes_path is not None else None
        prob, display = self.predict(data, prior, strokes)
        self.writer.write(path, self.output_dir, prob, display)
