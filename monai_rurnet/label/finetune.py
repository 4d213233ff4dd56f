"""Fine-tune a bundle from annotated images with the one shared trainer (``configs/train_base.json`` merged with
the bundle's ``configs/train.json``, as ``python -m monai.bundle run`` does). Needs torch/MONAI only.

Used by MONAI Label's ``POST /train/<model>`` (:mod:`monai_rurnet.label.train`): the datastore's ``final`` labels
(label indices, any positive value is foreground) become 0/255 PNGs in a scratch folder, every other file key the
bundle's training transforms load (e.g. retina's FOV ``mask``) gets an all-valid image, and the network starts
from the current weights. The result is written atomically to ``model_file``; nothing else outside the scratch
folder is written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from monai_rurnet.bundle.export import shared_configs_dir
from monai_rurnet.utils import as_bool, atomic_torch_save, atomic_write

__all__ = [
    "OPTIONS",
    "check_options",
    "train_config_files",
    "loaded_keys",
    "prepare_datalist",
    "finetune",
]

logger = logging.getLogger(__name__)

#: request options a client may set, with their types.
OPTIONS: dict[str, type] = {"max_epochs": int, "learning_rate": float, "batch_size": int, "bundle_data": bool}


def train_config_files(bundle_dir: str | os.PathLike) -> list[str]:
    """``[bundle inference.json (the network), shared trainer, bundle train.json]``, as the README's training
    command merges them, or the bundle's ``train.json`` alone when it holds the trainer itself (an exported
    bundle, see ``python -m monai_rurnet.bundle export``)."""
    own = Path(bundle_dir) / "configs" / "train.json"
    if not own.is_file():
        raise FileNotFoundError(f"{own}: the bundle has no training config.")
    if "train" in json.loads(own.read_text()):
        return [str(own)]
    shared = shared_configs_dir(bundle_dir) / "train_base.json"
    if not shared.is_file():
        raise FileNotFoundError(f"{shared}: the shared trainer config is missing (source checkout?).")
    return [str(Path(bundle_dir) / "configs" / "inference.json"), str(shared), str(own)]


def loaded_keys(transform: Any) -> list[str]:
    """Keys that the ``LoadImaged`` steps of a ``Compose`` (nested or not) read from files, in order."""
    from monai.transforms import Compose, LoadImaged

    keys: list[str] = []
    steps = transform.transforms if isinstance(transform, Compose) else [transform]
    for t in steps:
        if isinstance(t, Compose):
            keys += [k for k in loaded_keys(t) if k not in keys]
        elif isinstance(t, LoadImaged):
            keys += [str(k) for k in t.keys if k not in keys]
    return keys


def _read_label(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except OSError:
        import rasterio

        with rasterio.open(path) as src:
            a = src.read(1)
    a = np.squeeze(a)
    if a.ndim == 3:  # an RGB(A) label: foreground where any channel is set
        a = a.max(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"{path}: a label must be a 2D image, got shape {a.shape}")
    return a


def prepare_datalist(
    items: Sequence[Mapping[str, str]], out_dir: str | os.PathLike, extra_keys: Sequence[str] = ()
) -> list[dict[str, str]]:
    """``[{"image", "label"}]`` with labels as label indices -> the bundle's file convention under ``out_dir``:
    ``label`` a 0/255 PNG, each of ``extra_keys`` an all-255 PNG of the label's size."""
    out_dir = Path(out_dir)
    out: list[dict[str, str]] = []
    for item in items:
        image, label = Path(item["image"]), Path(item["label"])
        try:
            lab = _read_label(label)
        except OSError as e:
            raise ValueError(f"{label}: cannot read the label of {image.name} ({e})") from e
        with Image.open(image) as im:
            if (im.height, im.width) != lab.shape:
                raise ValueError(
                    f"{label}: label {lab.shape} and image {image.name} {(im.height, im.width)} differ"
                )
        entry = {"image": str(image)}
        for key, array in [("label", (lab > 0).astype(np.uint8) * 255)] + [
            (k, np.full(lab.shape, 255, np.uint8)) for k in extra_keys
        ]:
            path = out_dir / key / f"{image.stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp, a=array: Image.fromarray(a).save(tmp, format="PNG"))
            entry[key] = str(path)
        out.append(entry)
    return out


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`OPTIONS` found in ``options``, converted to their types; ``ValueError`` names a bad one."""
    out: dict[str, Any] = {}
    for key, kind in OPTIONS.items():
        if key not in options or options[key] is None:
            continue
        value = options[key]
        try:
            value = as_bool(value, key) if kind is bool else kind(value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"train option {key}={value!r} is not a {kind.__name__}") from e
        if kind in (int, float) and value <= 0:
            raise ValueError(f"train option {key}={value!r} must be positive")
        out[key] = value
    return out


def finetune(
    bundle_dir: str | os.PathLike,
    datalist: Sequence[Mapping[str, str]],
    model_file: str | os.PathLike,
    work_dir: str | os.PathLike,
    init_weights: str | os.PathLike | None = None,
    options: Mapping[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Fine-tune ``bundle_dir``'s network on ``datalist`` (``[{"image", "label"}]``, label indices) and write the
    new weights atomically to ``model_file``.

    Args:
        init_weights: weights to start from (default ``model_file``).
        options: ``max_epochs`` (default 1), ``learning_rate``, ``batch_size`` (default: the bundle's),
            ``bundle_data`` (also train on the bundle's own ``train_datalist``; default false).
        device: ``"cpu"``/``"cuda"`` (default: the trainer's choice).

    Returns ``{"images", "epochs", "seconds", "model_file"}``. Raises ``ValueError`` when there is nothing to
    train on.
    """
    from monai.bundle import ConfigWorkflow

    bundle_dir, work_dir, model_file = Path(bundle_dir).resolve(), Path(work_dir), Path(model_file)
    opts = {"max_epochs": 1, **check_options(options or {})}
    use_bundle_data = bool(opts.pop("bundle_data", False))
    init = Path(init_weights or model_file)
    overrides: dict[str, Any] = {
        "bundle_root": str(bundle_dir),
        "ckpt_dir": str(work_dir / "ckpt"),
        "output_dir": str(work_dir / "runs"),
        "init_weights": str(init),
        "show_progress": False,
        "num_workers": 0,
        **opts,
    }
    if device:
        overrides["device"] = f"$torch.device({device!r})"
    wf = ConfigWorkflow(
        config_file=train_config_files(bundle_dir),
        meta_file=str(bundle_dir / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **overrides,
    )
    parser = wf.parser
    extra = [
        k
        for k in loaded_keys(parser.get_parsed_content("train#preprocessing"))
        if k not in ("image", "label")
    ]
    data = prepare_datalist(datalist, work_dir / "data", extra)
    if use_bundle_data:
        data += list(parser.get_parsed_content("train_datalist"))
    if not data:
        raise ValueError(f"{bundle_dir.name}: no images with a final label to train on")
    # validation only scores: the weights written are the last epoch's, so validate never (one cached image)
    parser.update({"train_datalist": data, "val_datalist": data[:1], "val_interval": opts["max_epochs"] + 1})
    start = time.perf_counter()
    wf.initialize()
    wf.run()
    wf.finalize()
    network: torch.nn.Module = parser.get_parsed_content("network")
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    atomic_torch_save(state, model_file)
    seconds = time.perf_counter() - start
    logger.info(
        f"{bundle_dir.name}: trained {opts['max_epochs']} epoch(s) on {len(data)} images in {seconds:.1f} s"
    )
    return {
        "images": len(data),
        "epochs": opts["max_epochs"],
        "seconds": round(seconds, 1),
        "model_file": str(model_file),
    }
