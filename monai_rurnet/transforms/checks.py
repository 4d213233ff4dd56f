"""Consistency checks between the items of one case (e.g. an image and its label have the same size)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["CheckSameSized", "item_name"]


def item_name(data: Mapping, key: Hashable) -> str:
    """``"<key> <file name>"`` for an item loaded by ``LoadImaged`` (its meta), else just the key."""
    meta = getattr(data[key], "meta", None) or {}
    name = (
        meta.get("filename_or_obj")
        or data.get(f"{key}_path")
        or data.get(f"{key}_meta_dict", {}).get("filename_or_obj")
    )
    return f"{key} {name}" if name else str(key)


class CheckSameSized(MapTransform):
    """Raise a ``ValueError`` naming the files and their sizes when ``keys`` differ in spatial size.

    Place it right after ``LoadImaged`` (with ``ensure_channel_first=True``) so that an image whose label or
    FOV mask has another size fails with a clear message instead of a shape error deep in a crop or a loss.

    Args:
        keys: the items to compare (e.g. ``["image", "label", "mask"]``); the first present one is the reference.
        channel_first: items are channel-first (``(C, *spatial)``); otherwise all dims are spatial.
        allow_missing_keys: skip keys that are absent (e.g. no label at test time).
    """

    def __init__(
        self, keys: KeysCollection, channel_first: bool = True, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channel_first = channel_first

    def _spatial(self, item: Any) -> tuple[int, ...]:
        shape = tuple(int(s) for s in getattr(item, "shape", ()))
        return shape[1:] if self.channel_first else shape

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref_key, ref_size = None, None
        for key in self.key_iterator(d):
            size = self._spatial(d[key])
            if ref_key is None:
                ref_key, ref_size = key, size
            elif size != ref_size:
                raise ValueError(
                    f"Size mismatch: {item_name(d, ref_key)} has spatial size {ref_size} but "
                    f"{item_name(d, key)} has {size}; they must match pixel for pixel."
                )
        return d
