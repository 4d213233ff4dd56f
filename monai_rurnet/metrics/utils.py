"""Shared helpers for the segmentation metrics: ignore-label convention, input preparation, JSON output.

Ignore convention: label pixels equal to :data:`IGNORE_VALUE` (255) are left out of every metric. Valid label
values are 0 (background) and 1 (foreground); labels in {0, 255}-coded image files must be binarised first
(``label > 0``) and then encoded with :func:`apply_ignore`. The metrics also accept explicit ``valid=``
(True = evaluate, e.g. a FOV mask) and ``ignore=`` (True = skip, e.g. a void mask) keyword arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "IGNORE_VALUE",
    "apply_ignore",
    "apply_fov",
    "binarize_label",
    "prepare_binary",
    "to_python",
]

IGNORE_VALUE = 255


def apply_ignore(
    y: torch.Tensor | np.ndarray, ignore: torch.Tensor | np.ndarray
) -> torch.Tensor | np.ndarray:
    """Return a copy of the binary label ``y`` with pixels where ``ignore`` is True set to 255.

    ``ignore`` must broadcast to ``y`` (e.g. ``(B, 1, H, W)`` or ``(1, H, W)``); keeps ``y``'s type.
    """
    if isinstance(y, torch.Tensor):
        ig = torch.as_tensor(ignore, device=y.device).bool()
        if y.dtype == torch.bool:
            y = y.to(torch.uint8)
        return torch.where(ig, torch.full_like(y, IGNORE_VALUE), y)
    y = np.asarray(y)
    if y.dtype == np.bool_:
        y = y.astype(np.uint8)
    return np.where(np.asarray(ignore, bool), np.asarray(IGNORE_VALUE, dtype=y.dtype), y)


def apply_fov(y: torch.Tensor | np.ndarray, fov: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Encode pixels outside the field of view ``fov`` (True = inside) as ignored, see :func:`apply_ignore`."""
    if isinstance(fov, torch.Tensor):
        return apply_ignore(y, ~fov.bool())
    return apply_ignore(y, ~np.asarray(fov, bool))


def binarize_label(
    label: np.ndarray | torch.Tensor, name: str = "label", threshold: float | None = None
) -> np.ndarray | torch.Tensor:
    """Binary foreground of a label or mask read from a file: ``label > 0`` (so 0/1 and 0/255 files both work).

    With ``threshold=None`` a label holding more than two distinct values is refused (``ValueError`` naming
    ``name``): a grey or lossy label is not thresholded silently. With a ``threshold``, foreground is
    ``label > threshold`` whatever the values. Returns a bool array/tensor of ``label``'s shape and type.
    """
    if threshold is None:
        values = torch.unique(label) if isinstance(label, torch.Tensor) else np.unique(label)
        if len(values) > 2:
            shown = ", ".join(f"{float(v):g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
            raise ValueError(
                f"{name}: the label is not binary, it holds {len(values)} distinct values ({shown}). "
                "Labels must hold two values (foreground = any value > 0); for a grey or lossy label, "
                "give a threshold (label_threshold, --label_threshold T: foreground = value > T)."
            )
        threshold = 0
    return label > threshold


def prepare_binary(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    valid: torch.Tensor | None = None,
    ignore: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(prob, target, valid)`` of shape ``(B, H, W)``: foreground probability (float), bool target
    and bool valid mask.

    ``y_pred`` is ``(B, 1, H, W)`` probabilities or ``(B, 2, H, W)`` softmax (channel 1 is taken);
    ``y`` is ``(B, 1, H, W)`` in {0, 1} with 255 for ignored pixels.
    """
    if y_pred.ndim < 3 or y.ndim < 3:
        raise ValueError(
            f"y_pred and y must be batch-first (B, C, H, W), got {tuple(y_pred.shape)} and {tuple(y.shape)}"
        )
    if y_pred.shape[1] == 2:
        prob = y_pred[:, 1]
    elif y_pred.shape[1] == 1:
        prob = y_pred[:, 0]
    else:
        raise ValueError(
            f"y_pred must have 1 or 2 channels (foreground probability), got shape {tuple(y_pred.shape)}"
        )
    if y.shape[1] != 1:
        raise ValueError(f"y must have 1 channel, got shape {tuple(y.shape)}")
    lab = y[:, 0]
    if prob.shape != lab.shape:
        raise ValueError(f"y_pred spatial shape {tuple(prob.shape)} does not match y {tuple(lab.shape)}")
    lab = lab.float()
    ok = lab != IGNORE_VALUE
    for m, invert in ((valid, False), (ignore, True)):
        if m is None:
            continue
        m = torch.as_tensor(m, device=lab.device).bool()
        if m.ndim == lab.ndim + 1:
            m = m[:, 0]
        ok = ok & (~m if invert else m)
    target = (lab > 0.5) & ok
    return prob.float(), target, ok


def to_python(v: Any) -> Any:
    """Convert tensors / numpy values (also nested in dicts and lists) into JSON-friendly Python values."""
    if isinstance(v, Mapping):
        return {str(k): to_python(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_python(x) for x in v]
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
