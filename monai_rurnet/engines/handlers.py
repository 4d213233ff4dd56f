"""Ignite handlers of the shared trainer: gradient clipping, resumable checkpoints, NaN guard, best model."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from monai_rurnet.utils import atomic_json_dump, atomic_torch_save

__all__ = [
    "GradientClipHandler",
    "ResumableCheckpoint",
    "NaNLossGuard",
    "BestModelSaver",
    "MetricsJsonWriter",
    "OverlaySaver",
]

CHECKPOINT_FORMAT = "monai_rurnet.checkpoint/1"


def _logger() -> logging.Logger:
    """This module's logger, re-enabled: ``logging.config.fileConfig`` (a bundle's logging.conf) disables the
    loggers that exist when it runs."""
    log = logging.getLogger(__name__)
    log.disabled = False
    return log


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain network inside ``DistributedDataParallel``/``DataParallel`` (saved weights carry no prefix)."""
    return getattr(network, "module", network)


class GradientClipHandler:
    """Clip the gradient norm to ``max_norm`` between backward and optimizer step (paper: 10)."""

    def __init__(self, max_norm: float = 10.0) -> None:
        self.max_norm = float(max_norm)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:
            scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)


class NaNLossGuard:
    """Stop training with a clear error when the loss is NaN/Inf; the last checkpoint on disk stays intact."""

    def __init__(self, checkpoint: str | os.PathLike | None = None) -> None:
        self.checkpoint = checkpoint

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        out = engine.state.output
        item = out[0] if isinstance(out, list) else out
        loss = item.get("loss") if isinstance(item, dict) else None
        if loss is not None and not math.isfinite(float(loss)):
            where = f"epoch {engine.state.epoch}, iteration {engine.state.iteration}"
            keep = f" The last good checkpoint is kept at {self.checkpoint}." if self.checkpoint else ""
            raise FloatingPointError(
                f"Training loss became {float(loss)} at {where}; stopping.{keep} Lower the learning rate or check "
                "the inputs for NaN/Inf."
            )


class ResumableCheckpoint:
    """Save network, optimizer, scheduler and engine progress atomically every ``interval`` epochs, and
    resume from that file at start when it exists (so rerunning a killed command continues where it was).

    Args:
        path: checkpoint file (e.g. ``<bundle>/models/checkpoint.pt``).
        network, optimizer, lr_scheduler: the objects to save/restore.
        evaluator: optional; its ``best_metric`` is saved so best-model selection survives a restart.
        interval: save every this many epochs.
        averaged: optional :class:`~monai_rurnet.engines.WeightAverage` whose average is saved and restored too.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
        evaluator: Engine | None = None,
        interval: int = 1,
        averaged: Any = None,
    ) -> None:
        self.path = Path(path)
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.evaluator = evaluator
        self.interval = max(1, int(interval))
        self.averaged = averaged

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def state(self, engine: Engine) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "network": _unwrap(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
        }
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        if self.evaluator is not None and getattr(self.evaluator.state, "best_metric", None) is not None:
            state["best_metric"] = float(self.evaluator.state.best_metric)
            state["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        return state

    def save(self, engine: Engine) -> None:
        if (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_rank()
        ):
            return  # rank 0 writes for everyone
        atomic_torch_save(self.state(engine), self.path)

    def load(self, engine: Engine) -> None:
        if not self.path.is_file():
            return
        try:
            ckpt = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{self.path}: cannot resume, the checkpoint is unreadable ({e}).") from e
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{self.path}: not a monai_rurnet training checkpoint; move it away to start afresh."
            )
        _unwrap(self.network).load_state_dict(ckpt["network"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.lr_scheduler is not None and "lr_scheduler" in ckpt:
            self.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(ckpt.get("averaged", {}))
        engine.state.epoch = int(ckpt["epoch"])
        engine.state.iteration = int(ckpt["iteration"])
        if self.evaluator is not None and "best_metric" in ckpt:
            self.evaluator.state.best_metric = ckpt["best_metric"]
            self.evaluator.state.best_metric_epoch = ckpt["best_metric_epoch"]
        _logger().info(
            f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration} "
            "(delete it, or pass another --ckpt_dir, to start afresh)."
        )


class BestModelSaver:
    """Save the network's ``state_dict`` atomically to ``path`` whenever the evaluator's key metric improves.

    Attach to the evaluator; it relies on MONAI's ``best_metric`` bookkeeping of ``key_val_metric``.
    """

    def __init__(self, network: torch.nn.Module, path: str | os.PathLike) -> None:
        self.network = network
        self.path = Path(path)
        self._last_saved_epoch = -1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        best_epoch = getattr(engine.state, "best_metric_epoch", -1)
        trainer_epoch = engine.state.epoch
        if best_epoch == trainer_epoch and best_epoch != self._last_saved_epoch:
            atomic_torch_save(_unwrap(self.network).state_dict(), self.path)
            self._last_saved_epoch = best_epoch
            _logger().info(
                f"Saved best model ({engine.state.best_metric:.4f} at epoch {best_epoch}) to {self.path}."
            )


class MetricsJsonWriter:
    """Write the engine's metrics (and best metric) to a JSON file atomically when the engine completes.

    Fails (``ValueError``, nothing written) when no metric is a finite number: e.g. every label or mask was
    empty, so a set of NaNs must not pass for a result.
    """

    def __init__(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.extra = extra or {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        metrics = {k: _to_jsonable(v) for k, v in engine.state.metrics.items()}
        scalars = [v for v in metrics.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if scalars and not any(math.isfinite(v) for v in scalars):
            raise ValueError(
                f"No metric could be computed (all NaN) for {self.path}: the labels hold no foreground or the "
                "masks select no pixel. Check the evaluation data; nothing was written."
            )
        atomic_json_dump({"metrics": metrics, **self.extra}, self.path)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() > 1 else float(value)
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


class OverlaySaver:
    """Write an overlay PNG per evaluated image: true positives white, false positives red, false negatives
    blue over the darkened input; pixels with label 255 (ignored) are left as the input.

    Reads ``pred`` (foreground probability channel ``foreground``), ``label`` and the image meta's file name
    from the evaluator's decollated output. Spatial axes are ``(W, H)``, as MONAI's ``PILReader`` reads 2D files
    (``monai_rurnet.data.transforms``): the overlay is written back in the file's own orientation.
    """

    def __init__(self, output_dir: str | os.PathLike, threshold: float = 0.5, foreground: int = 1) -> None:
        self.output_dir = Path(output_dir)
        self.threshold = threshold
        self.foreground = foreground

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        import numpy as np
        from PIL import Image

        from monai_rurnet.utils import atomic_write

        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batches = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        for out, batch in zip(outputs, batches):
            pred = out["pred"]
            prob = pred[self.foreground if pred.shape[0] > 1 else 0].detach().float().cpu().numpy().T
            label = out["label"][0].detach().cpu().numpy().T
            image = batch["image"]
            name = Path(
                str(getattr(image, "meta", {}).get("filename_or_obj", f"case_{engine.state.iteration}"))
            )
            img = image.detach().float().cpu().numpy()[:3]
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
            rgb = np.ascontiguousarray((img.transpose(2, 1, 0) * 160).astype(np.uint8))
            p, y = prob >= self.threshold, label == 1
            valid = label != 255
            rgb[p & y & valid] = (255, 255, 255)
            rgb[p & ~y & valid] = (255, 40, 40)
            rgb[~p & y & valid] = (40, 120, 255)
            path = self.output_dir / f"{name.stem}_overlay.png"
            atomic_write(path, lambda tmp, a=rgb: Image.fromarray(a).save(tmp, format="PNG"))
