"""End-to-end: serve the retina_drive bundle from MONAI Label and segment a DRIVE-like image over HTTP.

Runs the server with the label environment's python (``$MONAI_RURNET_LABEL_PYTHON``, ``.venv-label`` or
``/work/venv-label``; create one with ``bash .ci/label_env.sh``) and is skipped when there is none, or when the
bundle ships no ``models/model.pt``.
"""

from __future__ import annotations

import io
import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from monai_rurnet.label import (
    find_label_python,
    free_port,
    prepare_app,
    server_command,
    server_env,
    start_server,
    stop_server,
    wait_until_ready,
)

REPO = Path(__file__).resolve().parents[2]
# MONAI_RURNET_LABEL_TEST_BUNDLE: another copy of retina_drive to test (e.g. with work-in-progress weights)
BUNDLE = Path(os.environ.get("MONAI_RURNET_LABEL_TEST_BUNDLE", REPO / "bundles" / "retina_drive")).resolve()
MODEL = "retina_drive"
HOST = "127.0.0.1"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _requirements() -> str:
    for f in ("configs/inference.json", "configs/metadata.json", "models/model.pt"):
        if not (BUNDLE / f).is_file():
            return f"{BUNDLE.name}/{f} is missing (the bundle ships its weights in models/model.pt)"
    return ""


@pytest.fixture(scope="module")
def label_python() -> str:
    missing = _requirements()
    if missing:
        pytest.skip(missing)
    python = find_label_python()
    if python is None:
        pytest.skip(
            "no MONAI Label environment (monailabel not importable): run `bash .ci/label_env.sh` "
            "or set MONAI_RURNET_LABEL_PYTHON to its python"
        )
    return python


def _sample_image(path: Path) -> np.ndarray:
    """A 565x584 (W x H) fundus-like RGB PNG: reddish disc with darker branching vessels."""
    from monai_rurnet.data.synthetic import synthetic_vessel_image

    img, _, _ = synthetic_vessel_image(size=(584, 565), seed=3)
    rgb = np.ascontiguousarray(img.transpose(1, 2, 0))
    Image.fromarray(rgb).save(path)
    return rgb


def _reference_label(image_path: Path) -> np.ndarray:
    """The bundle's own inference.json pipeline, run in this process: ``(H, W)`` label map."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser["bundle_root"] = str(BUNDLE)
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    pre = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    inferer = parser.get_parsed_content("inferer")
    data = pre({"image": str(image_path)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None].float(), net)[0]
    pred = np.squeeze(np.asarray(post(data)["pred"]))
    h, w = np.asarray(Image.open(image_path)).shape[:2]
    return pred.T if pred.shape == (w, h) and w != h else pred


def test_serve_retina_drive_over_http(label_python: str, tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    rgb = _sample_image(studies / "drive_like.png")
    h, w = rgb.shape[:2]

    app = prepare_app(tmp_path / "work", [BUNDLE])
    port = free_port(HOST)
    cmd = server_command(label_python, app, studies, [MODEL], HOST, port)
    log = tmp_path / "server.log"
    env = server_env({"MONAI_LABEL_SESSION_PATH": str(tmp_path / "sessions")})
    base = f"http://{HOST}:{port}"
    t0 = time.monotonic()
    proc = start_server(cmd, log_file=log, env=env)
    try:
        try:
            info = wait_until_ready(base, timeout=150, proc=proc)
        except (TimeoutError, RuntimeError) as e:
            pytest.fail(f"{e}\n--- server log ---\n{log.read_text()[-4000:]}")
        assert MODEL in info["models"], info
        model_info = info["models"][MODEL]
        assert model_info["dimension"] == 2 and model_info["labels"] == {"vessel": 1}, model_info

        req = urllib.request.Request(
            f"{base}/infer/{MODEL}?image=drive_like&output=image", data=b"", method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=150) as r:
                assert r.status == 200
                body = r.read()
        except Exception as e:
            pytest.fail(f"inference request failed: {e}\n--- server log ---\n{log.read_text()[-4000:]}")
    finally:
        code = stop_server(proc, timeout=20)
    assert code is not None, "server did not stop"

    label = np.asarray(Image.open(io.BytesIO(body)))
    assert label.shape == (h, w), f"label {label.shape} != image {(h, w)}"
    assert set(np.unique(label).tolist()) <= {0, 1}, np.unique(label)
    fraction = float((label > 0).mean())
    assert 0.01 <= fraction <= 0.40, f"implausible vessel fraction {fraction:.4f}"

    # same pixels, same orientation as the bundle's own pipeline (catches transposed/resized labels)
    ref = _reference_label(studies / "drive_like.png") > 0
    pred = label > 0
    dice = 2.0 * float((pred & ref).sum()) / max(1.0, float(pred.sum() + ref.sum()))
    assert dice > 0.95, f"server label differs from the bundle pipeline (dice {dice:.3f})"
    print(
        json.dumps(
            {
                "vessel_fraction": round(fraction, 4),
                "dice_vs_bundle": round(dice, 4),
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
    )
