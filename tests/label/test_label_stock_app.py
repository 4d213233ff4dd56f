"""MONAI Label's stock ``monaibundle`` app serving ``python -m monai_rurnet.bundle export`` copies of the bundles.

The export adds the keys MONAI Label's ``BundleInferTask`` reads (``pre_transforms``, ``inferer``,
``post_transforms``, ``displayable_configs``) to the copy's ``inference.json``. Checked twice: that pipeline run
as ``BundleInferTask`` runs it (core environment) gives the bundle CLI's ``_seg`` pixel for pixel; and the
stock app itself over loopback (label environment; skipped, with the reason, without one): ``GET /info/``,
``/infer`` for every bundle, ``PUT`` two ``final`` labels, ``POST /train/handseg`` (1 epoch, CPU) to DONE, new
weights in the app's copy, and ``/infer`` with them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from label_client import (
    BUNDLES,
    HOST,
    fail_with_log,
    infer_label,
    need_label_python,
    put_label,
    read_label,
    request,
    server_info,
    train,
    write_studies,
)
from label_reference import bundle_cli_labels

from monai_rurnet.bundle.export import export_bundle
from monai_rurnet.label import (
    free_port,
    server_env,
    start_server,
    stock_sample_app,
    stop_server,
)
from monai_rurnet.label.segment import sha256_file
from monai_rurnet.utils import load_state_dict_file

SERVER_THREADS = 1
RETINA_SIZE = (80, 72)  # rescaled 3x to DRIVE's field of view by the retina runner
#: the studies of each bundle that the stock app segments (write_studies names; every label comes back as PNG)
STUDIES = {
    "retina_drive": ["ret_png.png"],
    "massroads": ["roads_png.png", "roads_geo.tif"],
    "handseg": ["hand_png.png", "hand_jpg.jpeg"],
}


def _stock_pipeline_labels(copy: Path, images: list[Path]) -> dict[str, np.ndarray]:
    """``{file name: label}`` as ``BundleInferTask`` computes them from the copy's keys (without MONAI Label):
    ``pre_transforms``, ``inferer`` on ``network_def`` with the copy's weights, ``post_transforms``; each label
    back from ITK's ``(W, H)`` to ``(H, W)``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(copy / "configs" / "inference.json"))
    parser.update({"bundle_root": str(copy), "device": "$torch.device('cpu')"})
    pre, inferer, post = (
        parser.get_parsed_content(k) for k in ("pre_transforms", "inferer", "post_transforms")
    )
    network = parser.get_parsed_content("network_def").eval()
    load_state_dict_file(copy / "models" / "model.pt", network)
    labels = {}
    for image in images:
        data = {"image": str(image)}
        for t in pre:
            data = t(data)
        with torch.no_grad():
            data["pred"] = inferer(data["image"][None], network)[0]
        for t in post:
            data = t(data)
        assert data["pred"].dtype == np.uint8 and data["pred"].ndim == 2
        labels[image.name] = data["pred"].T
    return labels


@pytest.mark.parametrize("name", list(BUNDLES))
def test_exported_label_keys_give_the_cli_label(name: str, tmp_path: Path) -> None:
    if not (BUNDLES[name] / "models" / "model.pt").is_file():
        pytest.skip(f"{name}/models/model.pt is missing (the bundles ship their weights)")
    write_studies(tmp_path / "studies", retina_size=RETINA_SIZE)
    copy = export_bundle(BUNDLES[name], tmp_path / name)
    config = json.loads((copy / "configs" / "inference.json").read_text())
    assert config["displayable_configs"] == {"result_extension": ".png"}
    images = [tmp_path / "studies" / STUDIES[name][-1]]  # the other formats: the loopback test
    refs = bundle_cli_labels(BUNDLES[name], images, tmp_path / "cli")
    for f, label in _stock_pipeline_labels(copy, images).items():
        assert np.array_equal(label, (refs[f][0] > 0).astype(np.uint8)), f


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 1.0 if not (a.any() or b.any()) else 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_stock_monaibundle_app_over_http(tmp_path: Path) -> None:
    python = need_label_python(BUNDLES)
    app = tmp_path / "app"
    try:
        sample = stock_sample_app(python)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    shutil.copytree(sample, app, ignore=shutil.ignore_patterns("__pycache__"))
    for name, bundle in BUNDLES.items():
        export_bundle(bundle, app / "model" / name)
    studies = tmp_path / "studies"
    write_studies(studies, retina_size=RETINA_SIZE)
    (tmp_path / "tmp").mkdir()  # the stock writer's label files go to TMPDIR
    port = free_port(HOST)
    base = f"http://{HOST}:{port}"
    cmd = [python, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
           "--host", HOST, "--port", str(port), "--conf", "models", ",".join(BUNDLES),
           "--conf", "sam2", "false", "--conf", "zoo_source", "local"]  # fmt: skip
    log = tmp_path / "server.log"
    env = server_env({"OMP_NUM_THREADS": str(SERVER_THREADS), "TMPDIR": str(tmp_path / "tmp")})
    proc = start_server(cmd, log, env, cwd=tmp_path)  # trainings write nothing in the repository

    try:
        info = server_info(base, proc, log)
        assert set(BUNDLES) <= set(info["models"]) and set(BUNDLES) <= set(info["trainers"]), info
        assert info["models"]["retina_drive"]["labels"] == {"vessel": 1}
        assert all(info["models"][n]["dimension"] == 2 for n in BUNDLES)

        # /infer: a 2D uint8 0/1 PNG label of the image's size, the bundle CLI's _seg
        for name, files in STUDIES.items():
            refs = bundle_cli_labels(BUNDLES[name], [studies / f for f in files], tmp_path / f"cli_{name}",
                                     threads=SERVER_THREADS)  # fmt: skip
            for f in files:
                image_id = Path(f).stem
                body = infer_label(base, name, image_id, log)
                label, _ = read_label(body)
                ref = (refs[f][0] > 0).astype(np.uint8)
                assert body[:8] == b"\x89PNG\r\n\x1a\n", f
                assert label.dtype == np.uint8 and label.shape == ref.shape, (f, label.dtype, label.shape)
                assert set(np.unique(label).tolist()) <= {0, 1}, (f, np.unique(label))
                assert np.array_equal(label, ref), f"{name}/{f}: Dice vs the CLI {_dice(label, ref):.4f}"
                if name == "handseg":
                    put_label(base, image_id, label)

        # the stock BundleTrainTask runs our trainer (the exported train.json) on the two final labels; with one of
        # them held out (val_split 0.5) the validation after the epoch saves the best weights into the app's copy
        weights = app / "model" / "handseg" / "models" / "model.pt"
        before = sha256_file(weights)
        task, _ = train(
            base, "handseg", {"max_epochs": 1, "device": "cpu", "val_split": 0.5, "val_interval": 1}
        )
        if task["status"] != "DONE":
            fail_with_log(log, f"training ended {task['status']}: {task.get('details')}")
        assert sha256_file(weights) != before, "the stock training did not write new weights"
        assert sha256_file(BUNDLES["handseg"] / "models" / "model.pt") == before  # the export is a copy
        # the next /infer uses them (MONAI Label reloads a weights file whose mtime changed)
        status, body, _ = request("POST", f"{base}/infer/handseg?image=hand_png&output=image", b"")
        assert status == 200, body[:300]
        ref = bundle_cli_labels(BUNDLES["handseg"], [studies / "hand_png.png"], tmp_path / "cli_new", weights,
                                threads=SERVER_THREADS)  # fmt: skip
        assert np.array_equal(read_label(body)[0], (ref["hand_png.png"][0] > 0).astype(np.uint8))
    finally:
        stop_server(proc)


def test_stock_sample_app_is_looked_up_in_the_label_environment() -> None:
    if importlib.util.find_spec("monailabel") is not None:
        pytest.skip("this interpreter is a MONAI Label environment")
    with pytest.raises(FileNotFoundError, match="monaibundle sample app"):
        stock_sample_app(sys.executable)  # the core environment has no MONAI Label
