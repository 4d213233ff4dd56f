"""``python -m monai_rurnet.bundle options BUNDLE``: every inference option of every bundle, default and meaning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monai_rurnet.bundle.options import inference_options

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bundle", ["retina_drive", "massroads", "handseg"])
def test_every_option_has_a_meaning(bundle):
    options = {
        name: (default, meaning) for name, default, meaning in inference_options(ROOT / "bundles" / bundle)
    }
    assert {"dataset_dir", "output_dir", "overwrite", "steps", "tol", "backend"} <= set(options)
    assert not [name for name, (_, meaning) in options.items() if not meaning]
    assert options["steps"][0] is None and options["overwrite"][0] is False
    if bundle != "handseg":
        assert options["flip_tta"][0] is True


def test_cli_lists_options():
    out = subprocess.run(
        [sys.executable, "-m", "monai_rurnet.bundle", "options", str(ROOT / "bundles" / "retina_drive")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "--flip_tta true" in out and "--tol null" in out and "mirrored" in out
