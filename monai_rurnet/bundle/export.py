"""``python -m monai_rurnet.bundle export BUNDLE_DIR OUT_DIR``: a self-contained copy of a bundle.

The bundles of this repository share one trainer: their ``train.json`` (and ``evaluate.json``,
``multi_gpu_train.json``) only hold what differs from ``configs/train_base.json`` (``evaluate_base.json``,
``multi_gpu_train_base.json``) and are run merged with it. An exported copy holds the merged configs, so that
it runs on its own (``python -m monai.bundle run --config_file OUT/configs/train.json``, evaluation with
``"['OUT/configs/train.json','OUT/configs/evaluate.json']"``) and tools that read a bundle's own
``configs/train.json`` (e.g. MONAI Label's ``BundleTrainTask``) find the trainer in it:

* ``configs/train.json``: the shared trainer merged with the bundle's ``train.json`` (every key explicit), with
  the copy's own folders (:func:`label_train_config`: the best weights replace the copy's ``models/model.pt``,
  each run checkpoints in a new ``runs/<date-time>/``);
* ``configs/evaluate.json`` / ``configs/multi_gpu_train.json``: what the shared and the bundle's fragments change
  on top of that ``train.json`` (top-level keys; multi-GPU training with the copy's folders too);
* ``configs/inference.json``: the bundle's, plus the keys MONAI Label's stock ``BundleInferTask`` reads
  (:func:`label_inference_config`), so that its ``monaibundle`` app returns the runner's label;
* everything else (metadata, logging config, docs, license, sample data) copied, and ``models/model.pt`` copied
  byte for byte (same weights).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SHARED_CONFIGS",
    "TRAIN_PROPERTIES",
    "merged_config",
    "shared_configs_dir",
    "missing_train_properties",
    "label_inference_config",
    "label_train_config",
    "export_bundle",
    "main",
]

#: bundle config -> the shared fragment it is merged with (``configs/`` of this repository).
SHARED_CONFIGS = {
    "train.json": "train_base.json",
    "evaluate.json": "evaluate_base.json",
    "multi_gpu_train.json": "multi_gpu_train_base.json",
}
#: config ids of MONAI's required train workflow properties (``monai.bundle.properties.TrainProperties``) and
#: the ones MONAI Label's ``BundleTrainTask`` overrides.
TRAIN_PROPERTIES = (
    "bundle_root",
    "device",
    "dataset_dir",
    "network_def",
    "max_epochs",
    "train#trainer",
    "train#trainer#max_epochs",
    "train#dataset",
    "train#dataset#data",
    "train#inferer",
    "train#handlers",
    "validate#dataset#data",
)
IGNORED = ("checkpoint.pt", "runs", "outputs", "eval", "__pycache__", ".*")


def shared_configs_dir(bundle_dir: str | os.PathLike) -> Path:
    """The shared trainer fragments of a bundle in this repository's layout: ``<repo>/configs`` beside
    ``<repo>/bundles/<name>``."""
    return Path(bundle_dir).resolve().parents[1] / "configs"


def merged_config(files: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The config of ``files`` merged as ``python -m monai.bundle run --config_file "[...]"`` merges them."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    return {k: v for k, v in parser.config.items() if k != "_meta_"}  # type: ignore[union-attr]


def missing_train_properties(config: dict[str, Any]) -> list[str]:
    """The ids of :data:`TRAIN_PROPERTIES` that ``config`` does not define."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(config)
    return [p for p in TRAIN_PROPERTIES if p not in parser]


def _geotiff_runner_preprocessing() -> list[dict[str, Any]]:
    """Load, 3 channels in [0, 1] (kept as ``display``), ImageNet normalisation: what the GeoTIFF runner does to
    each window (:func:`~monai_rurnet.data.geotiff.normalize_bands`), for a whole image in memory."""
    from monai_rurnet.runners.geotiff import IMAGENET_MEAN, IMAGENET_STD

    reader = {"_target_": "monai_rurnet.data.readers.TiffFallbackPILReader", "reverse_indexing": False,
              "converter": {"_target_": "monai_rurnet.transforms.pil_standard_mode", "_mode_": "callable"}}  # fmt: skip
    return [
        {"_target_": "LoadImaged", "keys": "image", "reader": reader, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "monai_rurnet.transforms.EnsureChannelsd", "keys": "image", "channels": 3},
        {"_target_": "monai_rurnet.transforms.ToUnitRanged", "keys": "image"},
        {"_target_": "CopyItemsd", "keys": "image", "names": "display"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "subtrahend": list(IMAGENET_MEAN),
         "divisor": list(IMAGENET_STD), "channel_wise": True},
    ]  # fmt: skip


def label_inference_config(inference: dict[str, Any]) -> dict[str, Any]:
    """``inference`` (a bundle's ``inference.json``) with the keys MONAI Label's stock ``BundleInferTask`` reads.

    ``BundleInferTask`` runs ``pre_transforms`` (it prefers them to ``preprocessing``), ``inferer`` and
    ``post_transforms`` (preferred to ``postprocessing``) and writes ``pred`` with ITK, with the request's
    options merged over ``displayable_configs``. Added:

    * ``pre_transforms``: the bundle's ``preprocessing`` (the GeoTIFF runner's normalisation for a bundle without
      one), then :class:`~monai_rurnet.transforms.FOVResized` when the runner rescales by the field of view;
    * ``post_transforms``: :class:`~monai_rurnet.transforms.ForegroundLabeld` (probabilities back to the input
      grid, ``>= threshold``, void pixels for the GeoTIFF runner): a 2D uint8 0/1 label of the image's size;
    * ``displayable_configs``: ``result_extension`` ``.png`` (lossless whatever the study's format);
    * for the GeoTIFF runner, whose ``inferer`` runs each batch of patches: that inferer becomes
      ``patch_inferer`` (the runner's, unchanged) and ``inferer`` the same global sliding window
      (:class:`~monai_rurnet.inferers.PatchwiseInferer`) over the whole image.

    The runner (``evaluator``) is built from the same values: ``python -m monai.bundle run`` on the copy writes
    what it writes on the bundle.
    """
    config = json.loads(json.dumps(inference))
    evaluator = config.get("evaluator", {})
    geotiff = str(evaluator.get("_target_", "")).endswith("GeoTiffSegmentationRunner")
    if geotiff:
        config["patch_inferer"] = config["inferer"]
        evaluator["inferer"] = "@patch_inferer"
        sliding = {"_target_": "SlidingWindowInferer", "roi_size": "@roi_size", "sw_batch_size": "@sw_batch_size",
                   "overlap": "@sw_overlap", "mode": "gaussian"}  # fmt: skip
        config["inferer"] = {"_target_": "monai_rurnet.inferers.PatchwiseInferer", "sliding": sliding,
                             "inferer": "@patch_inferer"}  # fmt: skip
        config["pre_transforms"] = _geotiff_runner_preprocessing()
    elif "preprocessing" in config:
        fov = " + [@fov_resize]" if "rescaler" in config else ""
        if fov:
            config["fov_resize"] = {"_target_": "monai_rurnet.transforms.FOVResized", "keys": "image",
                                    "rescaler": "@rescaler"}  # fmt: skip
        config["pre_transforms"] = f"$list(@preprocessing.transforms){fov}"
    else:
        raise ValueError("the inference config has no preprocessing and no GeoTIFF runner")
    label = {
        "_target_": "monai_rurnet.transforms.ForegroundLabeld",
        "keys": "pred",
        "threshold": "@threshold",
    }
    if geotiff:
        label["void_value"] = 1.0  # white (255) in all bands, as the runner's void_value
    config["post_transforms"] = [label]
    config["displayable_configs"] = {"result_extension": ".png"}
    return config


def label_train_config(train: dict[str, Any]) -> dict[str, Any]:
    """``train`` (a merged train config) as a self-contained copy trains, e.g. from MONAI Label's stock app.

    * ``model_file``: ``<copy>/models/model.pt``: the best weights by validation replace the copy's, which its
      inference (and MONAI Label's, which reloads them) uses. The repository trains into ``runs/`` instead.
    * ``ckpt_dir``: a new ``<copy>/runs/<date-time>/`` per run (resume checkpoint, TensorBoard logs), so that a
      second training starts from the current weights instead of resuming the finished first one (resume a
      killed run with ``--ckpt_dir`` that folder).
    * ``val_interval`` through ``displayable_configs`` (default the bundle's), an option of MONAI Label's
      ``POST /train/<model>``: weights are only saved when a validation runs.
    """
    config = json.loads(json.dumps(train))
    imports = config.setdefault("imports", [])
    if "$import time" not in imports:
        imports.append("$import time")
    config["ckpt_dir"] = "$os.path.join(@bundle_root, 'runs', time.strftime('%Y%m%d-%H%M%S'))"
    config["model_file"] = "$@bundle_root + '/models/model.pt'"
    config["displayable_configs"] = {"val_interval": config["val_interval"]}
    config["val_interval"] = "@displayable_configs#val_interval"
    return config


def _write_json(obj: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(obj, indent=4) + "\n")


def export_bundle(
    bundle_dir: str | os.PathLike, out_dir: str | os.PathLike, shared_dir: str | os.PathLike | None = None
) -> Path:
    """Write a self-contained copy of ``bundle_dir`` to ``out_dir`` (which must not exist); returns it.

    Raises ``FileExistsError``, ``FileNotFoundError`` (naming the missing file) or ``ValueError`` (a train
    property missing from the merged ``train.json``).
    """
    src, out = Path(bundle_dir).resolve(), Path(out_dir)
    shared = Path(shared_dir) if shared_dir is not None else shared_configs_dir(src)
    if out.exists():
        raise FileExistsError(f"{out} exists: export into a new folder.")
    for f in ("configs/train.json", "configs/inference.json", "configs/metadata.json", "models/model.pt"):
        if not (src / f).is_file():
            raise FileNotFoundError(f"{src / f}: not found (is {src} a bundle?).")
    base_train = shared / SHARED_CONFIGS["train.json"]
    if not base_train.is_file():
        raise FileNotFoundError(f"{base_train}: the shared trainer config is missing.")
    # the network is defined once, in inference.json, which training reads first (see the README)
    train_files = [src / "configs" / "inference.json", base_train, src / "configs" / "train.json"]
    train = merged_config(train_files)
    missing = missing_train_properties(train)
    if missing:
        raise ValueError(f"{src}: the merged train config lacks {missing}")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*IGNORED))
        copy_train = label_train_config(train)
        _write_json(copy_train, tmp / "configs" / "train.json")
        inference = json.loads((src / "configs" / "inference.json").read_text())
        _write_json(label_inference_config(inference), tmp / "configs" / "inference.json")
        for name in ("evaluate.json", "multi_gpu_train.json"):
            own = src / "configs" / name
            if not own.is_file():
                continue
            full = merged_config([*train_files, shared / SHARED_CONFIGS[name], own])
            if name == "multi_gpu_train.json":
                full = label_train_config(full)
            diff = {k: v for k, v in full.items() if copy_train.get(k) != v}
            _write_json(diff, tmp / "configs" / name)
        shutil.copyfile(src / "models" / "model.pt", tmp / "models" / "model.pt")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """The ``export`` command."""
    p = argparse.ArgumentParser(
        prog="python -m monai_rurnet.bundle export", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("bundle", help="bundle folder, e.g. bundles/retina_drive")
    p.add_argument("out", help="new folder for the self-contained copy")
    args = p.parse_args(argv)
    try:
        out = export_bundle(args.bundle, args.out)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"export failed: {e}")
        return 1
    print(f"exported {args.bundle} -> {out}")
    return 0
