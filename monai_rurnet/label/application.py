"""The MONAI Label app serving monai-rurnet bundles (needs the MONAI Label environment).

Bundles are looked up in ``--conf bundle_dir DIR`` (default ``<app>/model``, as in the stock ``monaibundle``
app); nothing is ever downloaded. Conf keys: ``models`` (comma-separated bundle names, default
``retina_drive``), ``bundle_dir``, ``preload`` (``false``), ``train`` (``false``: add MONAI Label's
``BundleTrainTask`` for bundles whose ``configs/train.json`` it can run).
"""

from __future__ import annotations

import logging
import os

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.generic import strtobool

import monai_rurnet
from monai_rurnet.label.infer import RurnetBundleInferTask

__all__ = ["RurnetLabelApp", "DEFAULT_MODELS"]

logger = logging.getLogger(__name__)

DEFAULT_MODELS = "retina_drive"


class RurnetLabelApp(MONAILabelApp):
    """Serves local monai-rurnet bundles (``configs/inference.json`` + ``configs/metadata.json`` + ``models/model.pt``)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        bundle_dir = conf.get("bundle_dir") or os.path.join(app_dir, "model")
        names = [m.strip() for m in conf.get("models", DEFAULT_MODELS).split(",") if m.strip()]
        self.models: dict[str, str] = {}
        for name in names:
            path = os.path.realpath(os.path.join(bundle_dir, name))
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"Bundle {name!r} not found at {path} (this app never downloads bundles)."
                )
            self.models[name] = path
        logger.info(f"+++ monai-rurnet bundles: {self.models}")
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
        for name, path in self.models.items():
            task = RurnetBundleInferTask(path, self.conf)
            if not task.is_valid():
                raise RuntimeError(
                    f"Bundle {name!r} at {path} is not servable: it needs configs/inference.json, "
                    "configs/metadata.json and models/model.pt (see docs/monai_label.md)."
                )
            logger.info(f"+++ Adding Inferer:: {name} => {task}")
            infers[name] = task
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        trainers: dict[str, TrainTask] = {}
        if not strtobool(self.conf.get("train", "false")):
            return trainers
        from monailabel.tasks.train.bundle import BundleTrainTask

        for name, path in self.models.items():
            try:
                task = BundleTrainTask(path, self.conf)
            except Exception as e:  # a bundle whose train config MONAI Label cannot drive
                logger.warning(f"Skipping trainer for {name}: {e}")
                continue
            if task.is_valid():
                trainers[name] = task
        return trainers

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}
