"""Folder inference used by the bundles' ``inference.json``: robust, resumable, atomic, with a summary."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from monai_rurnet.utils import atomic_write, load_state_dict_file

__all__ = [
    "IMAGE_SUFFIXES",
    "find_images",
    "PngMaskWriter",
    "FolderSegmentationRunner",
    "overlay_image",
    "root_cause",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".ppm", ".gif")
logger = logging.getLogger(__name__)


def find_images(folder: str | Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Sorted images with one of ``suffixes`` (case-insensitive) in ``folder``; errors name the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder does not exist.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{folder}: no input images ({', '.join(suffixes)}) found.")
    return files


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause of an error (MONAI's ``Compose`` wraps transform errors in ``RuntimeError``)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def overlay_image(rgb: np.ndarray, seg: np.ndarray, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Blend a binary mask (H, W) in ``color`` over an RGB uint8 image (H, W, 3)."""
    out = rgb.astype(np.float32).copy()
    m = seg.astype(bool)
    out[m] = 0.45 * out[m] + 0.55 * np.asarray(color, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def _save_png(array: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


class PngMaskWriter:
    """Writes ``<stem>_seg.png`` (0/255), ``<stem>_prob.png`` (probability x 255) and an overlay PNG."""

    def __init__(self, threshold: float = 0.5, overlay: bool = True, prob: bool = True) -> None:
        self.threshold = threshold
        self.overlay = overlay
        self.prob = prob

    def outputs(self, src: Path, out_dir: Path) -> list[Path]:
        names = [f"{src.stem}_seg.png"]
        if self.prob:
            names.append(f"{src.stem}_prob.png")
        if self.overlay:
            names.append(f"{src.stem}_overlay.png")
        return [out_dir / n for n in names]

    def write(self, src: Path, out_dir: Path, prob: np.ndarray, display: np.ndarray | None) -> None:
        """``prob`` (H, W) in [0, 1]; ``display`` (H, W, 3) uint8 or None. The seg file is written last, so
        its presence marks a finished image."""
        seg = (prob >= self.threshold).astype(np.uint8) * 255
        paths = self.outputs(src, out_dir)
        if self.overlay and display is not None:
            _save_png(overlay_image(display, seg > 0), paths[-1])
        if self.prob:
            _save_png(np.round(prob * 255.0).clip(0, 255).astype(np.uint8), paths[1])
        _save_png(seg, paths[0])


class FolderSegmentationRunner:
    """Segment every image in ``dataset_dir`` into ``output_dir``; one bad file never stops the others.

    Args:
        network: the segmentation network (weights loaded from ``weights`` with ``weights_only=True``).
        preprocessing: MONAI transform taking ``{"image": path}`` and returning a channel-first ``"image"``
            tensor in the input's grid (``(C, H, W)``); an optional ``"display"`` key (``(3, H, W)`` in [0, 1])
            is used for the overlay.
        inferer: MONAI inferer, called as ``inferer(batch, network)``; returns logits ``(1, K, H, W)``.
        writer: writes the outputs of one image (default :class:`PngMaskWriter`).
        overwrite: redo images whose outputs exist (default: skip them, so an interrupted run resumes).
        foreground: class index whose softmax probability is written.
        exit_on_failure: raise ``SystemExit(1)`` at the end when any image failed.
        rescaler: optional :class:`~monai_rurnet.transforms.FOVRescaler`: resample each image so its field of
            view matches the training data's, segment, and resample the probabilities back to the input grid.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        preprocessing: Callable[[dict], dict],
        inferer: Callable[..., torch.Tensor],
        dataset_dir: str | Path,
        output_dir: str | Path,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        writer: Any = None,
        suffixes: Sequence[str] = IMAGE_SUFFIXES,
        overwrite: bool = False,
        foreground: int = 1,
        progress: bool = True,
        exit_on_failure: bool = True,
        rescaler: Any = None,
    ) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        if weights is not None:
            load_state_dict_file(weights, self.network)
        self.preprocessing = preprocessing
        self.inferer = inferer
        self.dataset_dir = Path(dataset_dir)
        self.output_dir = Path(output_dir)
        self.writer = writer if writer is not None else PngMaskWriter()
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.overwrite = bool(overwrite)
        self.foreground = foreground
        self.progress = progress
        self.exit_on_failure = exit_on_failure
        self.rescaler = rescaler

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """Foreground probability ``(*S)`` of one preprocessed image ``(C, *S)``."""
        with torch.inference_mode():
            logits = self.inferer(image.unsqueeze(0).to(self.device), self.network)
            if logits.shape[1] == 1:
                return torch.sigmoid(logits)[0, 0].float().cpu()
            return torch.softmax(logits.float(), dim=1)[0, self.foreground].cpu()

    def predict(self, path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
        """Foreground probability ``(H, W)`` of one image file in its own grid, and its display RGB (uint8)."""
        data = self.preprocessing({"image": str(path)})
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

    def process(self, path: Path) -> None:
        prob, display = self.predict(path)
        self.writer.write(path, self.output_dir, prob, display)

    def run(self) -> dict[str, Any]:
        files = find_images(self.dataset_dir, self.suffixes)
        if self.output_dir.resolve() == self.dataset_dir.resolve():
            ours = {o.name for f in files for o in self.writer.outputs(f, self.output_dir)}
            files = [f for f in files if f.name not in ours]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.output_dir.glob(".*.tmp*"):  # temp files of a killed run (outputs are renamed in)
            stale.unlink(missing_ok=True)
        done, skipped, failed = 0, 0, []
        start = time.perf_counter()
        for path in tqdm(files, desc="segmenting", unit="img", disable=not self.progress, file=sys.stderr):
            if not self.overwrite and all(p.exists() for p in self.writer.outputs(path, self.output_dir)):
                skipped += 1
                continue
            try:
                self.process(path)
                done += 1
            except Exception as e:  # one bad file must not stop the others
                cause = root_cause(e)
                failed.append(str(path))
                logger.error(f"FAILED {path}: {type(cause).__name__}: {cause}")
                print(f"FAILED {path}: {type(cause).__name__}: {cause}", file=sys.stderr)
        seconds = time.perf_counter() - start
        summary = {"done": done, "skipped": skipped, "failed": len(failed), "seconds": round(seconds, 2)}
        print(
            f"Summary: {done} images segmented, {skipped} skipped (outputs exist), {len(failed)} failed, "
            f"{seconds:.1f} s -> {self.output_dir}",
            flush=True,
        )
        if failed and self.exit_on_failure:
            raise SystemExit(1)
        return summary
