"""The 3D NIfTI example runs quickly and writes a segmentation with the input's shape and affine."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import nibabel as nib
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nifti_3d_pipeline.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("nifti_3d_pipeline", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nifti_3d_pipeline(tmp_path):
    example = _load_example()
    start = time.perf_counter()
    seg_file = example.main(tmp_path)
    assert time.perf_counter() - start < 30
    image = nib.load(str(tmp_path / "synthetic.nii.gz"))
    seg = nib.load(str(seg_file))
    assert seg.shape == image.shape == (48, 48, 40)
    np.testing.assert_allclose(seg.affine, image.affine)
    assert seg.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
