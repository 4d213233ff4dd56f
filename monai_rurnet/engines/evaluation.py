"""What an evaluation run says before it starts: which weights, which images, and whether they are held out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["announce_evaluation"]


def announce_evaluation(model_file: str | os.PathLike, datalist: Sequence[dict], held_out: str = "") -> str:
    """Print and return one line naming the weights, the evaluated images and ``held_out`` (the bundle's note on
    whether those images were seen in training)."""
    names = ", ".join(Path(d["image"]).name for d in datalist)
    line = f"Evaluating {model_file} on {len(datalist)} images: {names}."
    if held_out:
        line += f" {held_out}"
    print(line, flush=True)
    return line
