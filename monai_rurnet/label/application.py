"""The MONAI Label app serving monai-rurnet bundles (needs the MONAI Label environment).

Conf keys: ``bundles`` (comma-separated bundle folders; each model is named after its folder), or
``bundle_dir`` + ``models`` (comma-separated names of folders in ``bundle_dir``, default ``<app>/model`` and
``retina_drive``); ``train`` (``true``: a trainer per bundle). Nothing is ever downloaded. A bundle whose
inference takes a prior and strokes is also served as ``<name>_refine`` (interactive refinement, sharing its
loaded runner).

Bundles are read, never written: each model's weights live in the app's own folder,
``<app>/model/<name>/model.pt``, copied (never linked) from the bundle's ``models/model.pt`` when absent. Training
replaces that copy atomically, and inference reloads it when it changes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

import monai_rurnet
from monai_rurnet.label.app import app_model_file
from monai_rurnet.label.infer import RurnetInferTask, RurnetRefineTask
from monai_rurnet.label.refine import REFINE_SUFFIX, bundle_refines, datastore_guidance
from monai_rurnet.label.train import RurnetTrainTask

__all__ = ["RurnetLabelApp", "DEFAULT_MODELS", "bundle_folders"]

logger = logging.getLogger(__name__)

DEFAULT_MODELS = "retina_drive"


def bundle_folders(app_dir: str | os.PathLike, conf: dict[str, str]) -> dict[str, Path]:
    """``{model name: bundle folder}`` from the app conf (see the module docstring)."""
    if conf.get("bundles"):
        paths = [Path(p.strip()) for p in conf["bundles"].split(",") if p.strip()]
    else:
        root = Path(conf.get("bundle_dir") or Path(app_dir) / "model")
        paths = [root / m.strip() for m in conf.get("models", DEFAULT_MODELS).split(",") if m.strip()]
    out: dict[str, Path] = {}
    for p in paths:
        p = p.resolve()
        if not (p / "configs" / "inference.json").is_file():
            raise FileNotFoundError(
                f"{p}: not a bundle (no configs/inference.json); this app never downloads one."
            )
        if p.name in out:
            raise ValueError(f"two bundles named {p.name!r}: {out[p.name]} and {p}")
        out[p.name] = p
    return out


class RurnetLabelApp(MONAILabelApp):
    """Serves local monai-rurnet bundles with the app's own copy of their weights."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles = bundle_folders(app_dir, conf)
        self.model_files = {n: app_model_file(app_dir, n, b) for n, b in self.bundles.items()}
        logger.info(f"+++ monai-rurnet bundles: { {n: str(b) for n, b in self.bundles.items()} }")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"monai-rurnet Recurrent U-Net ({monai_rurnet.__version__})",
            description="Recurrent U-Net (Wang, Yu & Fua, ICCV 2019) bundles served from local folders",
            version=monai_rurnet.__version__,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for n, b in self.bundles.items():
            task = infers[n] = RurnetInferTask(b, self.model_files[n])
            if bundle_refines(b):
                infers[n + REFINE_SUFFIX] = RurnetRefineTask(b, self.model_files[n], segmenter=task.segmenter)
        return infers

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """MONAI Label's inference; a refinement request on an image id gets its datastore labels first
        (:func:`~monai_rurnet.label.refine.datastore_guidance`)."""
        if isinstance(self._infers.get(request.get("model")), RurnetRefineTask):
            request = datastore_guidance(request, datastore or self.datastore())
        return super().infer(request, datastore)

    def init_trainers(self) -> dict[str, TrainTask]:
        if not strtobool(self.conf.get("train", "true")):
            return {}
        return {n: RurnetTrainTask(b, self.model_files[n]) for n, b in self.bundles.items()}

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}
