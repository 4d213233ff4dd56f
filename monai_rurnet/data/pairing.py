"""Pair prediction files with label (and mask) files by name, with each dataset's own naming.

Default rule: a prediction ``<stem>_prob.*``, ``<stem>_seg.*`` or ``<stem>.*`` pairs with the label
``<stem>.*`` and the mask ``<stem>.*`` or ``<stem>_mask.*``. When a stem has both a ``_prob`` and another
prediction, ``_prob`` wins. ``<stem>_overlay.*`` files (pictures written by our runners) are not predictions.

Dataset rules (``dataset=``):

============  ======================  ======================  ==========================
dataset       prediction              label                   mask
============  ======================  ======================  ==========================
drive         ``01_test``             ``01_manual1``          ``01_test_mask``
chase         ``Image_01L``           ``Image_01L_1stHO``     ``Image_01L[_mask]``
stare         ``im0001``              ``im0001.ah``           ``im0001[_mask]``
massroads     ``<tile>`` (``.tiff``)  ``<tile>`` (``.tif``)   ``<tile>[_mask]``
============  ======================  ======================  ==========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from monai_rurnet.data.readers import PLANE_SUFFIXES

__all__ = ["DATASET_NAMING", "Case", "NamingRule", "Pairing", "PairingError", "pair_files"]


class PairingError(ValueError):
    """Files that cannot be paired; the message names them."""


@dataclass(frozen=True)
class NamingRule:
    """Regular expressions whose first group is the case key of a prediction, label or mask file stem.

    The prediction pattern applies after the ``_prob``/``_seg`` suffix is stripped.
    """

    pred: str
    label: str
    mask: str


DATASET_NAMING: dict[str, NamingRule] = {
    "default": NamingRule(pred=r"(.+)", label=r"(.+)", mask=r"(.+?)(?:_mask)?"),
    "drive": NamingRule(
        pred=r"0*(\d+)_(?:test|training)", label=r"0*(\d+)_manual\d", mask=r"0*(\d+)_(?:test|training)_mask"
    ),
    "chase": NamingRule(
        pred=r"(Image_\d+[LR])", label=r"(Image_\d+[LR])_(?:1st|2nd)HO", mask=r"(Image_\d+[LR])(?:_mask)?"
    ),
    "stare": NamingRule(pred=r"(im\d+)", label=r"(im\d+)\.(?:ah|vk)", mask=r"(im\d+)(?:_mask)?"),
    "massroads": NamingRule(pred=r"(.+)", label=r"(.+)", mask=r"(.+?)(?:_mask)?"),
}

_PRED_SUFFIX = re.compile(r"^(.*?)(_prob|_seg)?$")


@dataclass(frozen=True)
class Case:
    """One scored case: its key and its files."""

    key: str
    pred: Path
    label: Path
    mask: Path | None = None

    @property
    def name(self) -> str:
        """The prediction's stem without its ``_prob``/``_seg`` suffix (e.g. ``01_test``)."""
        return _PRED_SUFFIX.fullmatch(_stem(self.pred)).group(1)


def _image_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found.")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in PLANE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)]


def _index(files: list[Path], pattern: str, what: str) -> tuple[dict[str, Path], list[Path]]:
    """Map case key -> file; files whose stem does not match ``pattern`` are returned apart."""
    found: dict[str, list[Path]] = {}
    unmatched = []
    for p in files:
        m = re.fullmatch(pattern, _stem(p))
        if m:
            found.setdefault(m.group(1), []).append(p)
        else:
            unmatched.append(p)
    clash = {k: v for k, v in found.items() if len(v) > 1}
    if clash:
        k, v = next(iter(clash.items()))
        raise PairingError(
            f"{len(clash)} {what} case(s) have several files, e.g. {k!r}: " + ", ".join(str(p) for p in v)
        )
    return {k: v[0] for k, v in found.items()}, unmatched


def _prediction_index(files: list[Path], pattern: str) -> tuple[dict[str, Path], list[Path], list[Path]]:
    """Like :func:`_index` for predictions: ``_prob`` beats ``_seg``/plain files of the same case.

    Returns (key -> file, unmatched files, files superseded by a ``_prob``)."""
    ranked: dict[str, list[tuple[int, Path]]] = {}
    unmatched = []
    for p in files:
        base, suffix = _PRED_SUFFIX.fullmatch(_stem(p)).groups()
        if base.endswith("_overlay"):
            continue
        m = re.fullmatch(pattern, base)
        if not m:
            unmatched.append(p)
            continue
        ranked.setdefault(m.group(1), []).append((0 if suffix == "_prob" else 1, p))
    chosen, superseded = {}, []
    for key, items in ranked.items():
        best = min(r for r, _ in items)
        top = [p for r, p in items if r == best]
        if len(top) > 1:
            raise PairingError(
                f"prediction case {key!r} has several files: "
                + ", ".join(str(p) for p in top)
                + "; keep one."
            )
        chosen[key] = top[0]
        superseded += [p for r, p in items if r != best]
    return chosen, unmatched, superseded


@dataclass
class Pairing:
    """The result of :func:`pair_files`: paired cases and what was left over."""

    cases: list[Case]
    missing_label: list[Path]
    missing_pred: list[Path]
    missing_mask: list[Path]
    superseded: list[Path]

    def problems(self) -> list[str]:
        """One line per kind of unpaired file (empty when everything paired)."""
        out = []
        for what, files in (
            ("prediction(s) without a label", self.missing_label),
            ("label(s) without a prediction", self.missing_pred),
            ("prediction(s) without a mask", self.missing_mask),
        ):
            if files:
                shown = ", ".join(str(p) for p in files[:5]) + (" ..." if len(files) > 5 else "")
                out.append(f"{len(files)} {what}: {shown}")
        return out


def pair_files(
    pred_dir: str | Path,
    label_dir: str | Path,
    mask_dir: str | Path | None = None,
    dataset: str | None = None,
) -> Pairing:
    """Pair the image files of ``pred_dir`` with those of ``label_dir`` (and ``mask_dir``) by name.

    ``dataset`` picks a naming rule of :data:`DATASET_NAMING` (default: same stem). Raises ``PairingError``
    when one case has several files in a folder; unpaired files are reported in the result.
    """
    rule = DATASET_NAMING.get(dataset or "default")
    if rule is None:
        raise ValueError(
            f"unknown dataset {dataset!r}; choose from {sorted(set(DATASET_NAMING) - {'default'})}"
        )
    preds, pred_unmatched, superseded = _prediction_index(
        _image_files(Path(pred_dir), "prediction"), rule.pred
    )
    labels, label_unmatched = _index(_image_files(Path(label_dir), "label"), rule.label, "label")
    masks: dict[str, Path] = {}
    if mask_dir is not None:
        masks, _ = _index(_image_files(Path(mask_dir), "mask"), rule.mask, "mask")
    cases, missing_mask = [], []
    for key in sorted(set(preds) & set(labels)):
        if mask_dir is not None and key not in masks:
            missing_mask.append(preds[key])
            continue
        cases.append(Case(key, preds[key], labels[key], masks.get(key)))
    return Pairing(
        cases=cases,
        missing_label=sorted(pred_unmatched + [p for k, p in preds.items() if k not in labels]),
        missing_pred=sorted(label_unmatched + [p for k, p in labels.items() if k not in preds]),
        missing_mask=missing_mask,
        superseded=sorted(superseded),
    )
