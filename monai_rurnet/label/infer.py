"""The MONAI Label infer tasks for our bundles (needs the MONAI Label environment).

Each request runs the bundle's own inference runner (:class:`~monai_rurnet.label.segment.BundleSegmenter`), so
the label is the bundle CLI's ``_seg`` pixel for pixel, as label indices (``0`` background, ``1`` foreground):
a PNG, or a GeoTIFF with the study's CRS and geotransform for TIFF studies of GeoTIFF bundles.
:class:`RurnetRefineTask` (``<bundle>_refine``) runs the same runner with the current label as the prior and the
annotator's strokes (:mod:`monai_rurnet.label.refine`): the bundle CLI's ``--prior_dir``/``--strokes_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from monai_rurnet.label.refine import refine_inputs
from monai_rurnet.label.segment import BundleSegmenter
from monai_rurnet.networks.guidance import STROKE_BACKGROUND, STROKE_FOREGROUND

__all__ = ["RurnetInferTask", "RurnetRefineTask", "bundle_labels"]

logger = logging.getLogger(__name__)


def bundle_labels(bundle_dir: str | os.PathLike) -> tuple[dict[str, int], str]:
    """``({label name: index}, description)`` from the bundle's ``configs/metadata.json`` (background left out)."""
    meta_file = Path(bundle_dir) / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    try:
        channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    except KeyError as e:
        raise ValueError(f"{meta_file}: no network_data_format.outputs.pred.channel_def") from e
    labels = {name: int(i) for i, name in channels.items() if name != "background"}
    return labels, str(meta.get("name") or meta.get("description") or Path(bundle_dir).name)


class RurnetInferTask(InferTask):
    """2D segmentation with a bundle's own runner and the app's copy of its weights (``model_file``).

    The weights are reloaded whenever ``model_file`` changes (e.g. after ``POST /train/<model>``). ``segmenter``
    shares another task's loaded runner (one per bundle).
    """

    infer_type = InferType.SEGMENTATION

    def __init__(
        self,
        bundle_dir: str | os.PathLike,
        model_file: str | os.PathLike,
        overrides: dict[str, Any] | None = None,
        segmenter: BundleSegmenter | None = None,
    ) -> None:
        labels, description = bundle_labels(bundle_dir)
        super().__init__(
            type=self.infer_type, labels=labels, dimension=2, description=self.describe(description)
        )
        self.bundle_dir = Path(bundle_dir).resolve()
        self.model_file = Path(model_file)
        self.segmenter = segmenter or BundleSegmenter(self.bundle_dir, self.model_file, overrides)

    def describe(self, description: str) -> str:
        """The task's description in ``GET /info/``."""
        return description

    def segment(self, request: dict[str, Any], out_dir: str) -> tuple[Path, dict[str, Any]]:
        """The label file of ``request`` written in ``out_dir``, and what to add to the answer's JSON."""
        return self.segmenter.segment(request["image"], out_dir), {}

    def is_valid(self) -> bool:
        return self.segmenter.config_file.is_file() and self.model_file.is_file()

    def get_path(self, validate: bool = True) -> str | None:
        return str(self.model_file) if (self.model_file.is_file() or not validate) else None

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Segment ``request["image"]`` (a path); returns a label file the server removes after sending it."""
        start = time.perf_counter()
        out_dir = tempfile.mkdtemp(prefix="rurnet-label-")
        try:
            label, extra = self.segment(request, out_dir)
            fd, result = tempfile.mkstemp(prefix="rurnet-label-", suffix=label.suffix)
            os.close(fd)
            os.replace(label, result)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        seconds = time.perf_counter() - start
        logger.info(f"{self.bundle_dir.name}: {Path(request['image']).name} segmented in {seconds:.2f} s")
        return result, {
            "label_names": self.labels,
            "latencies": {"total": round(seconds, 3)},
            "model_sha256": self.segmenter.weights_sha256,
            **extra,
        }


class RurnetRefineTask(RurnetInferTask):
    """Interactive refinement (``<bundle>_refine``): the bundle's runner from the current label with the strokes.

    The request's ``label`` (a file the server saved from the upload, or the image's newest datastore label, see
    :meth:`~monai_rurnet.label.application.RurnetLabelApp.infer`) is the prior; the strokes are its ``strokes``
    file (0/1/2) plus the ``foreground``/``background`` point lists of its params
    (:func:`~monai_rurnet.label.refine.refine_inputs`). Without a label it runs from the network's own ``s_0``.
    """

    infer_type = InferType.DEEPEDIT

    def describe(self, description: str) -> str:
        return f"{description}: refinement from the current label and foreground/background strokes"

    def segment(self, request: dict[str, Any], out_dir: str) -> tuple[Path, dict[str, Any]]:
        prior, strokes = refine_inputs(
            request["image"], request, request.get("label"), request.get("strokes")
        )
        label = self.segmenter.segment(request["image"], out_dir, prior, strokes if strokes.any() else None)
        counts = {"foreground": int((strokes == STROKE_FOREGROUND).sum()),
                  "background": int((strokes == STROKE_BACKGROUND).sum())}  # fmt: skip
        source = request.get("prior_source") or ("label" if prior is not None else "none")
        return label, {"prior": source, "stroke_pixels": counts}
