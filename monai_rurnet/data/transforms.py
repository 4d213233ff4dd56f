"""MONAI transform chains for the retina, roads and hands bundles, plus the custom dictionary transforms.

Files are read with MONAI's ``PILReader`` (default ``reverse_indexing=True``), so 2D arrays are
channel-first with spatial axes ``(W, H)`` as in MONAI/``PILWriter``; "horizontal" flips use spatial axis 0.
Images are converted to RGB, labels/masks to 8-bit grey and binarised to {0, 1}.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, PILReader
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    Lambda,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropSamplesd,
    Resized,
    ScaleIntensityRanged,
)

from monai_rurnet.data.roads import MarkVoidd
from monai_rurnet.metrics.utils import IGNORE_VALUE, binarize_label
from monai_rurnet.transforms.appearance import RandJPEGd
from monai_rurnet.transforms.checks import item_name

__all__ = [
    "Binarized",
    "EncodeIgnored",
    "MatchSizeToImaged",
    "TwoClassCoveraged",
    "pil_to_rgb",
    "pil_to_gray",
    "load_transforms",
    "roads_train_transforms",
    "roads_eval_transforms",
    "hands_train_transforms",
    "hands_infer_transforms",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pil_to_rgb(img):
    """PIL converter: any mode (P, L, RGBA, ...) -> RGB."""
    return img if img.mode == "RGB" else img.convert("RGB")


def pil_to_gray(img):
    """PIL converter for labels/masks: palette, RGB(A), 1-bit -> 8-bit grey (``L``)."""
    return img if img.mode in ("L", "I", "I;16", "F") else img.convert("L")


def _plain(x) -> torch.Tensor:
    """Plain ``torch.Tensor`` view of a MetaTensor / array (fast arithmetic, no metadata tracking)."""
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    return torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x


def _like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Wrap ``x`` as a MetaTensor carrying ``ref``'s metadata (so spatial transforms treat it alike)."""
    if isinstance(ref, MetaTensor):
        return MetaTensor(x, meta=dict(ref.meta), applied_operations=list(ref.applied_operations))
    return x


class Binarized(MapTransform):
    """Binarise labels/masks read from files to float {0, 1} (see :func:`~monai_rurnet.metrics.binarize_label`).

    ``threshold=None``: foreground is any value > 0 (0/1 and 0/255 files both work) and an item holding more
    than two distinct values fails with its file named; a number: foreground is ``x > threshold`` (grey or
    lossy JPEG masks; ``threshold=0`` takes every non-zero pixel, as for FOV masks). With ``require_nonempty``
    an item without any foreground pixel (e.g. an empty FOV mask) fails with its file named.
    """

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float | None = None,
        require_nonempty: bool = False,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold
        self.require_nonempty = require_nonempty

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            name = item_name(d, key)
            fg = binarize_label(_plain(d[key]), name, self.threshold)
            if self.require_nonempty and not bool(fg.any()):
                raise ValueError(
                    f"{name}: the mask is empty (no non-zero pixel), so nothing can be evaluated."
                )
            d[key] = _like(fg.to(torch.float32), d[key])
        return d


class EncodeIgnored(MapTransform):
    """Set label pixels to 255 (ignored by the metrics) where ``mask_key`` is 0 (``mask_is_valid=True``, a FOV)
    or where it is non-zero (``mask_is_valid=False``, a void mask). No-op when the mask is absent."""

    def __init__(
        self,
        keys: KeysCollection = "label",
        mask_key: str = "mask",
        mask_is_valid: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key, self.mask_is_valid = mask_key, mask_is_valid

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        m = d.get(self.mask_key)
        if m is None:
            return d
        for key in self.key_iterator(d):
            y = d[key]
            mm = torch.as_tensor(m, device=y.device) > 0.5
            ig = ~mm if self.mask_is_valid else mm
            d[key] = torch.where(ig, torch.full_like(y, IGNORE_VALUE), y)
        return d


class MatchSizeToImaged(MapTransform):
    """Resize ``keys`` (e.g. a 1500 px label) to the spatial size of ``image_key`` with ``mode`` (nearest)."""

    def __init__(
        self,
        keys: KeysCollection = "label",
        image_key: str = "image",
        mode: str = "nearest",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key, self.mode = image_key, mode

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        size = tuple(d[self.image_key].shape[1:])
        for key in self.key_iterator(d):
            if tuple(d[key].shape[1:]) != size:
                d = Resized(key, spatial_size=size, mode=self.mode)(d)
        return d


class TwoClassCoveraged(MapTransform):
    """A foreground coverage label ``(1, *S)`` in [0, 1] to the two-class target ``(2, *S)``: background
    ``1 - p`` and foreground ``p``, for a softmax loss given probability targets (``DiceCELoss(to_onehot_y=False)``).

    A binary mask taken down with ``mode="area"`` keeps, at each pixel, the share the object covers; training on that
    teaches outlines finer than the network's grid, which the inferers' bilinear resize back to the image keeps.
    """

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            p = _plain(d[key]).float()
            if p.shape[0] != 1 or bool(((p < 0) | (p > 1)).any()):
                raise ValueError(
                    f"{item_name(d, key)}: {key} must be one channel of coverage in [0, 1], got shape"
                    f" {tuple(p.shape)} with values {float(p.min()):.3g}..{float(p.max()):.3g}."
                )
            d[key] = _like(torch.cat([1 - p, p]), d[key])
        return d


def load_transforms(image_key: str = "image", label_keys: Sequence[str] = ("label", "mask")) -> list:
    """LoadImaged (PIL: image -> RGB, labels/masks -> grey) + EnsureChannelFirstd; missing label keys allowed."""
    label_keys = list(label_keys)
    return [
        LoadImaged(image_key, reader=PILReader(converter=pil_to_rgb), image_only=True),
        LoadImaged(
            label_keys, reader=PILReader(converter=pil_to_gray), image_only=True, allow_missing_keys=True
        ),
        EnsureChannelFirstd([image_key, *label_keys], allow_missing_keys=True),
    ]


def _roads_common(with_label: bool) -> list:
    """Load, match the label to the image, void mask from white pixels, image scaled to [0, 1]."""
    keys = ["image", "label"] if with_label else ["image"]
    t = load_transforms("image", keys[1:])
    if with_label:
        t += [MatchSizeToImaged("label", image_key="image"), Binarized("label")]
    t += [
        MarkVoidd("image", void_key="void"),
        ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
    ]
    return t


def _standardise(mean: Sequence[float], std: Sequence[float]) -> NormalizeIntensityd:
    return NormalizeIntensityd(
        "image", subtrahend=np.asarray(mean), divisor=np.asarray(std), channel_wise=True
    )


def _valid_area(d: Mapping) -> dict:
    """Add ``valid`` (1 - void) and ``crop_label`` (road pixels outside the void) for the crop sampler."""
    return {**d, "valid": 1.0 - d["void"], "crop_label": d["label"] * (1.0 - d["void"])}


def roads_train_transforms(
    patch_size: int | Sequence[int] = 256,
    num_samples: int = 4,
    flip_prob: float = 0.5,
    rot90: bool = True,
    rotate_deg: float = 0.0,
    rotate_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    pos: float | None = None,
    neg: float = 1.0,
    jpeg_prob: float = 0.0,
    jpeg_quality: Sequence[int] = (30, 95),
    jpeg_zoom: Sequence[float] = (0.6, 1.0),
    colour_jitter: float = 0.0,
) -> Compose:
    """Roads training: void mask from white pixels, random crops, flips, rot90, optional free rotation, colour
    jitter and JPEG, fixed mean/std.

    Without ``pos``: uniform random crops, keys image/label/void (void is float {0, 1}; the loss should ignore
    void pixels). With ``pos`` (the massroads bundle's recipe): crops centred on road and on valid background
    pixels in the ratio ``pos:neg`` (``RandCropByPosNegLabeld`` on the non-void area, smaller crops allowed at
    the edges), then the void pixels marked ignored in the label (:class:`EncodeIgnored`) and ``void`` dropped.
    With ``jpeg_prob`` > 0, that share of the crops is JPEG-compressed at a quality drawn from ``jpeg_quality``
    and a scale drawn from ``jpeg_zoom`` (:class:`~monai_rurnet.transforms.RandJPEGd`: down, compress, back up),
    as aerial tiles published as smaller JPEGs are. With ``rotate_deg`` > 0, that share (``rotate_prob``) of the crops
    is turned by an angle drawn from [-rotate_deg, rotate_deg] (roads run at every angle; rot90 and flips give only
    eight): each crop is first taken ``sqrt(2)`` times larger, turned, then cut back to ``patch_size`` about its
    centre, so no padding enters the crop. ``colour_jitter`` > 0 scales each colour channel by a factor in
    [1 - j, 1 + j] and shifts the brightness by up to ``j / 2`` (half the crops each), as lighting and season change
    between flights.
    """
    keys = ["image", "label", "void"]
    ps = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    rotate = rotate_deg > 0 and rotate_prob > 0
    crop_size = (math.ceil(max(ps) * math.sqrt(2)) + 2,) * len(ps) if rotate else ps
    t = _roads_common(True)
    t.append(EnsureTyped("void", dtype=torch.float32))
    if pos is None:
        t.append(
            RandSpatialCropSamplesd(keys, roi_size=crop_size, num_samples=num_samples, random_size=False)
        )
    else:
        crop = RandCropByPosNegLabeld(
            keys, label_key="crop_label", spatial_size=crop_size, pos=pos, neg=neg, num_samples=num_samples,
            image_key="valid", image_threshold=0.5, allow_smaller=True,
        )  # fmt: skip
        t += [Lambda(_valid_area), crop, DeleteItemsd(["valid", "crop_label"])]
    if rotate:
        t += [
            RandRotated(
                keys,
                range_x=np.deg2rad(rotate_deg),
                prob=rotate_prob,
                mode=("bilinear", "nearest", "nearest"),
            ),
            CenterSpatialCropd(keys, roi_size=ps),
        ]
    if flip_prob > 0:
        t += [
            RandFlipd(keys, prob=flip_prob, spatial_axis=0),
            RandFlipd(keys, prob=flip_prob, spatial_axis=1),
        ]
    if rot90:
        t.append(RandRotate90d(keys, prob=0.5, max_k=3))
    if colour_jitter > 0:
        t += [
            RandScaleIntensityd("image", factors=colour_jitter, prob=0.5, channel_wise=True),
            RandShiftIntensityd("image", offsets=colour_jitter / 2, prob=0.5),
            ScaleIntensityRanged(
                "image", a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True
            ),  # back into [0, 1]
        ]
    if jpeg_prob > 0:
        t.append(RandJPEGd("image", prob=jpeg_prob, quality=jpeg_quality, zoom=jpeg_zoom))
    t += [_standardise(mean, std), EnsureTyped(keys, dtype=torch.float32, track_meta=False)]
    if pos is not None:
        t += [EncodeIgnored("label", mask_key="void", mask_is_valid=False), DeleteItemsd("void")]
    return Compose(t)


def roads_eval_transforms(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Compose:
    """Roads evaluation: label resized (nearest) to the image when needed, void mask, normalised image."""
    keys = ["image", "label", "void"]
    return Compose([*_roads_common(True), _standardise(mean, std), EnsureTyped(keys, dtype=torch.float32)])


def hands_train_transforms(
    size: Sequence[int] = (256, 256),
    flip_prob: float = 0.5,
    rotate_deg: float = 15.0,
    intensity_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """Hands training: resize to ``size`` (``(W, H)`` in PIL layout), flip, rotation, brightness/contrast
    jitter, fixed mean/std. Keys image/label; the label comes out as the two-class coverage target ``(2, *size)``
    (:class:`TwoClassCoveraged`): the mask is taken down by area, as the image, so outlines keep their sub-pixel
    position at the network's size."""
    keys = ["image", "label"]
    t = [
        *load_transforms("image", ["label"]),
        Binarized("label"),
        Resized(keys, spatial_size=tuple(size), mode="area"),
        ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
    ]
    if flip_prob > 0:
        t.append(RandFlipd(keys, prob=flip_prob, spatial_axis=0))
    if rotate_deg > 0:
        t.append(
            RandRotated(
                keys,
                range_x=np.deg2rad(rotate_deg),
                prob=0.5,
                mode="bilinear",
                padding_mode="zeros",
            )
        )
    if intensity_prob > 0:
        t += [
            RandScaleIntensityd("image", factors=0.2, prob=intensity_prob),
            RandShiftIntensityd("image", offsets=0.1, prob=intensity_prob),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=intensity_prob),
        ]
    t += [
        NormalizeIntensityd("image", subtrahend=np.asarray(mean), divisor=np.asarray(std), channel_wise=True),
        TwoClassCoveraged("label"),
        EnsureTyped(keys, dtype=torch.float32, track_meta=False),
    ]
    return Compose(t)


def hands_infer_transforms(
    size: Sequence[int] = (256, 256),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """Hands inference/evaluation: resize to ``size``, /255, fixed mean/std; ``label`` handled when present."""
    return Compose(
        [
            *load_transforms("image", ["label"]),
            Binarized("label", allow_missing_keys=True),
            Resized("image", spatial_size=tuple(size), mode="area"),
            Resized("label", spatial_size=tuple(size), mode="nearest", allow_missing_keys=True),
            ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
            NormalizeIntensityd(
                "image", subtrahend=np.asarray(mean), divisor=np.asarray(std), channel_wise=True
            ),
            EnsureTyped(["image", "label"], dtype=torch.float32, allow_missing_keys=True),
        ]
    )
