"""What the loopback label tests share: the label environment fixture's check, small synthetic studies, and a
minimal HTTP client of MONAI Label (requests, multipart forms and answers, labels, training until it ends)."""

from __future__ import annotations

import email
import io
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from label_reference import to_hwc
from PIL import Image

from monai_rurnet.label import find_label_python, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
#: the repository's bundles, as the label tests serve them
BUNDLES = {b: REPO / "bundles" / b for b in ("retina_drive", "massroads", "handseg")}
HOST = "127.0.0.1"

__all__ = [
    "REPO",
    "BUNDLES",
    "HOST",
    "need_label_python",
    "fail_with_log",
    "server_info",
    "write_studies",
    "request",
    "form",
    "multipart",
    "read_label",
    "infer_label",
    "put_label",
    "train",
]


def need_label_python(bundles: dict[str, Path]) -> str:
    """The label environment's python; skips the test, with the reason, without one or without the weights."""
    for name, b in bundles.items():
        if not (b / "models" / "model.pt").is_file():
            pytest.skip(f"{name}/models/model.pt is missing (the bundles ship their weights)")
    python = find_label_python()
    if python is None:
        pytest.skip(
            "no MONAI Label environment (monailabel not importable): run `bash .ci/label_env.sh` "
            "or set MONAI_RURNET_LABEL_PYTHON to its python"
        )
    return python


def fail_with_log(log: Path, msg: str) -> NoReturn:
    """Fail the test with ``msg`` and the end of the server's log."""
    pytest.fail(f"{msg}\n--- server log ---\n{log.read_text(errors='replace')[-6000:]}")


def server_info(base: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> dict:
    """``GET /info/`` once the server started as ``proc`` answers; fails the test with its log otherwise."""
    try:
        return wait_until_ready(base, timeout=timeout, proc=proc)
    except (TimeoutError, RuntimeError) as e:
        fail_with_log(log, str(e))


def write_studies(folder: Path, retina_size: tuple[int, int] = (160, 144)) -> dict[str, list[str]]:
    """Small synthetic studies of each kind in a new ``folder``; returns ``{bundle: [file names]}``.

    The retina runner rescales these small fundus images 3x (to DRIVE's field of view), so the retina studies
    cost most: ``retina_size`` makes them smaller."""
    from monai_rurnet.data import synthetic_hand_image
    from monai_rurnet.data.geotiff import write_geotiff
    from monai_rurnet.data.synthetic import synthetic_roads, synthetic_vessel_image

    folder.mkdir()
    for i, name in enumerate(("ret_png.png", "ret_tif.tif", "ret_jpg.jpg")):
        img, _, _ = synthetic_vessel_image(size=retina_size, seed=i)
        Image.fromarray(to_hwc(img)).save(folder / name, quality=95)
    roads, _ = synthetic_roads(size=(96, 112), seed=0)
    write_geotiff(
        folder / "roads_geo.tif", roads, transform=(230000.0, 1.0, 0, 900000.0, 0, -1.0), crs="EPSG:26986"
    )
    Image.fromarray(to_hwc(synthetic_roads(size=(64, 80), seed=1)[0])).save(folder / "roads_png.png")
    for i, name in enumerate(("hand_png.png", "hand_jpg.jpeg")):
        Image.fromarray(to_hwc(synthetic_hand_image(size=(72, 96), seed=i)[0])).save(
            folder / name, quality=95
        )
    return {
        "retina_drive": ["ret_png.png", "ret_tif.tif", "ret_jpg.jpg"],
        "massroads": ["roads_geo.tif", "roads_png.png"],
        "handseg": ["hand_png.png", "hand_jpg.jpeg"],
    }


def request(
    method: str, url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 600
) -> tuple[int, bytes, str]:
    """``(status, body bytes, content type)``; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def form(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
    """multipart/form-data body: ``{field: (file name or None, content)}``."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for key, (filename, content) in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{key}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disp}\r\n\r\n".encode())
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def multipart(body: bytes, content_type: str) -> tuple[dict, bytes]:
    """The ``params`` JSON and the ``image`` bytes of an ``output=all`` answer."""
    msg = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    params, image = {}, b""
    for part in msg.get_payload():
        name = part.get_param("name", header="content-disposition")
        if name == "params":
            params = json.loads(part.get_payload(decode=True))
        elif name == "image":
            image = part.get_payload(decode=True)
    return params, image


def read_label(body: bytes) -> tuple[np.ndarray, dict]:
    """A label file's array and, for a GeoTIFF, ``{"crs", "transform"}``."""
    if body[:4] in (b"II*\x00", b"MM\x00*"):
        from rasterio.io import MemoryFile

        with MemoryFile(body) as mem, mem.open() as src:
            return src.read(1), {"crs": src.crs, "transform": src.transform}
    return np.asarray(Image.open(io.BytesIO(body))), {}


def infer_label(base: str, model: str, image_id: str, log: Path) -> bytes:
    """``POST /infer/<model>?image=<id>&output=image``: the label file's bytes (:func:`read_label` reads them);
    a failure shows the server log."""
    status, body, _ = request("POST", f"{base}/infer/{model}?image={image_id}&output=image", b"")
    if status != 200:
        fail_with_log(log, f"/infer/{model}?image={image_id}: {status} {body[:500]!r}")
    return body


def put_label(base: str, image_id: str, label: np.ndarray) -> None:
    """``PUT /datastore/label?image=<id>`` a 0/1 label as the ``final`` label of ``image_id``."""
    buf = io.BytesIO()
    Image.fromarray((np.asarray(label) > 0).astype(np.uint8)).save(buf, format="PNG")
    status, body, _ = request(
        "PUT",
        f"{base}/datastore/label?image={image_id}",
        *form({"label": (f"{image_id}.png", buf.getvalue())}),
    )
    assert status == 200, body


def train(base: str, model: str, options: dict) -> tuple[dict, set[str]]:
    """``POST /train/<model>`` and poll ``GET /train/`` until the task ends: ``(task, statuses seen)``."""
    body = json.dumps(options).encode()
    status, answer, _ = request("POST", f"{base}/train/{model}", body, {"Content-Type": "application/json"})
    assert status == 200, answer
    seen = set()
    for _ in range(900):
        task = json.loads(request("GET", f"{base}/train/")[1])
        seen.add(task["status"])
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            break
        time.sleep(1)
    return task, seen
