"""Checks that the MONAI Label server applies to what a client sends (standard library only).

MONAI Label 0.8.5 passes image ids, label tags and file names straight into paths (``/infer?image=../../x``
reads any file, ``PUT /datastore/label?tag=../../x`` writes outside the studies folder). Our server accepts a
name only when it is a plain file-name component, see :func:`check_name`.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "NAME_PATTERN",
    "UPLOAD_SUFFIXES",
    "is_safe_name",
    "check_name",
    "check_upload_name",
    "check_image_ids",
    "parse_params",
]

#: an image id, label tag or model name: starts with a letter/digit, then letters, digits, ``_ . -`` (<= 128).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
#: file types accepted as uploaded images and labels (the bundles' raster formats).
UPLOAD_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def is_safe_name(value: Any) -> bool:
    """Whether ``value`` is a plain name: no ``..``, no path separator, not absolute, no control characters."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None and ".." not in value


def check_name(value: Any, what: str) -> str:
    """``value`` if :func:`is_safe_name`, else a ``ValueError`` naming ``what`` (e.g. ``"image id"``)."""
    if not is_safe_name(value):
        raise ValueError(
            f"invalid {what} {value!r}: use letters, digits, '_', '.', '-' only "
            "(no '..', no path separator, no absolute path)"
        )
    return value


def check_upload_name(filename: str | None, what: str = "file") -> str:
    """The lower-case suffix of an uploaded ``filename`` (a plain name with a raster suffix), else ``ValueError``."""
    name = filename or ""
    check_name(name, f"{what} name")
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"{what} {name!r}: unsupported type, expected one of {', '.join(UPLOAD_SUFFIXES)}")
    return suffix


def check_image_ids(value: Any) -> list[str]:
    """A list of image ids (each checked with :func:`check_name`), else ``ValueError``."""
    if not isinstance(value, list):
        raise ValueError(f"images must be a list of image ids, got {type(value).__name__}")
    return [check_name(v, "image id") for v in value]


def parse_params(text: str | bytes | None, what: str = "params") -> dict[str, Any]:
    """A request's JSON ``params`` as a dict (``{}`` when empty); ``ValueError`` when it is not a JSON object."""
    if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value
