"""Command-line errors show their cause first (with the file it names), not MONAI's wrapper."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monai_rurnet.errors import report_error, root_cause

ROOT = Path(__file__).resolve().parents[1]


def _wrapped() -> RuntimeError:
    try:
        try:
            try:
                raise IndexError("list index out of range")
            except IndexError as e:
                raise ValueError("/data/model.pt: not a readable PyTorch weights file") from e
        except ValueError as e:
            raise RuntimeError("applying transform <LoadImaged>") from e
    except RuntimeError as e:
        try:
            raise RuntimeError("Failed to instantiate component 'Runner'") from e
        except RuntimeError as outer:
            return outer


def test_root_cause_skips_monai_wrappers_only():
    cause = root_cause(_wrapped())
    assert isinstance(cause, ValueError) and "/data/model.pt" in str(cause)
    plain = ValueError("x")
    assert root_cause(plain) is plain


@pytest.mark.parametrize("debug", [False, True])
def test_report_error_prints_the_cause_first(capsys, debug):
    err = _wrapped()
    report_error(type(err), err, err.__traceback__, argv=["run", "--debug", "true"] if debug else ["run"])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: /data/model.pt: not a readable PyTorch weights file"
    assert any(line.startswith("Traceback") for line in lines) == debug


@pytest.mark.slow
def test_bundle_run_reports_a_missing_input_folder_first(tmp_path):
    missing = tmp_path / "no_such_folder"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(ROOT / "bundles" / "retina_drive" / "configs" / "inference.json"),
        "--bundle_root",
        str(ROOT / "bundles" / "retina_drive"),
        "--dataset_dir",
        str(missing),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "MONAI_RURNET_DEBUG"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and str(missing) in errors[0]
    assert "Traceback" not in proc.stderr and "Failed to instantiate" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
