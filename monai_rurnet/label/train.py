"""The MONAI Label train task for our bundles (needs the MONAI Label environment).

``POST /train/<model>`` with a JSON body such as ``{"max_epochs": 1}`` runs this task in MONAI Label's training
subprocess: :func:`~monai_rurnet.label.finetune.finetune` on the datastore images that have a ``final`` label,
starting from the app's current weights, which it then replaces atomically (the next ``/infer`` uses them).
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

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monai_rurnet.label.finetune import OPTIONS, finetune
from monai_rurnet.label.safety import check_image_ids
from monai_rurnet.utils import atomic_json_dump

__all__ = ["RurnetTrainTask"]

logger = logging.getLogger(__name__)


class RurnetTrainTask(TrainTask):
    """Fine-tunes ``bundle_dir``'s network into ``model_file`` (the app's own copy of the weights).

    Request options (JSON body of ``POST /train/<model>``): ``max_epochs`` (default 1), ``learning_rate``,
    ``batch_size``, ``bundle_data`` (also use the bundle's own training data, when its config finds it),
    ``images`` (train on these image ids only; default every image with a ``final`` label).
    """

    def __init__(
        self, bundle_dir: str | os.PathLike, model_file: str | os.PathLike, description: str = ""
    ) -> None:
        super().__init__(description or f"Fine-tune {Path(bundle_dir).name} with the shared trainer")
        self.bundle_dir = Path(bundle_dir).resolve()
        self.model_file = Path(model_file)
        self.stats_file = self.model_file.with_name("train_stats.json")

    def config(self) -> dict[str, Any]:
        return {"max_epochs": 1, "bundle_data": False}

    def stats(self) -> dict[str, Any]:
        if not self.stats_file.is_file():
            return {}
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        options = {k: request[k] for k in OPTIONS if k in request}
        datalist = datastore.datalist()
        if request.get("images") is not None:  # only these image ids (one studies folder may mix image kinds)
            wanted = {
                os.path.realpath(datastore.get_image_uri(i)) for i in check_image_ids(request["images"])
            }
            datalist = [d for d in datalist if os.path.realpath(d["image"]) in wanted]
        if not datalist:
            raise ValueError(
                f"{self.bundle_dir.name}: no image to train on has a 'final' label; PUT labels first"
            )
        device = request.get("device")
        device = device if device in ("cpu", "cuda") else None
        work = Path(tempfile.mkdtemp(prefix=f"rurnet-train-{self.bundle_dir.name}-"))
        try:
            result = finetune(
                self.bundle_dir, datalist, self.model_file, work, options=options, device=device
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        atomic_json_dump(result, self.stats_file)
        print(
            f"monai-rurnet: new weights for {self.bundle_dir.name} written to {self.model_file}", flush=True
        )
        return result
