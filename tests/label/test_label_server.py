"""Loopback test of ``python -m monai_rurnet.label.serve`` with all three bundles, as a labelling client uses it.

One server, started with the real CLI: ``GET /info/``; ``POST /infer`` for every bundle and study format, each
label pixel-identical to the bundle CLI's ``_seg`` (GeoTIFF labels keep the CRS and transform); interactive
refinement (``/infer/<bundle>_refine``) equal to the CLI's with the same prior and strokes; concurrent
requests; ``PUT`` labels; ``POST /train`` (1 epoch) to DONE; ``/infer`` with the new weights; every hostile request
of issue 21 refused with a 4xx writing nothing; SIGTERM; no temporary files left.

Needs the label environment (``$MONAI_RURNET_LABEL_PYTHON``, ``.venv-label`` or ``/work/venv-label``; create one
with ``bash .ci/label_env.sh``) and is skipped, with the reason, without it.
"""

from __future__ import annotations

import email
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from label_reference import bundle_cli_labels, to_hwc
from PIL import Image

from monai_rurnet.label import find_label_python, free_port, wait_until_ready
from monai_rurnet.label.segment import sha256_file

REPO = Path(__file__).resolve().parents[2]
BUNDLES = {b: REPO / "bundles" / b for b in ("retina_drive", "massroads", "handseg")}
HOST = "127.0.0.1"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def label_python() -> str:
    for name, b in BUNDLES.items():
        if not (b / "models" / "model.pt").is_file():
            pytest.skip(f"{name}/models/model.pt is missing (the bundles ship their weights)")
    python = find_label_python()
    if python is None:
        pytest.skip(
            "no MONAI Label environment (monailabel not importable): run `bash .ci/label_env.sh` "
            "or set MONAI_RURNET_LABEL_PYTHON to its python"
        )
    return python


def _studies(folder: Path) -> dict[str, list[str]]:
    """Small synthetic studies of each kind; returns ``{bundle: [file names]}``."""
    from monai_rurnet.data import synthetic_hand_image
    from monai_rurnet.data.geotiff import write_geotiff
    from monai_rurnet.data.synthetic import synthetic_roads, synthetic_vessel_image

    folder.mkdir()
    for i, name in enumerate(("ret_png.png", "ret_tif.tif", "ret_jpg.jpg")):
        img, _, _ = synthetic_vessel_image(size=(160, 144), seed=i)
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


def _request(
    method: str, url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 600
):
    """``(status, body bytes, content type)``; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def _form(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
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


def _multipart(body: bytes, content_type: str) -> tuple[dict, bytes]:
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


def _label(body: bytes) -> tuple[np.ndarray, dict]:
    """A label file's array and, for a GeoTIFF, ``{"crs", "transform"}``."""
    if body[:4] in (b"II*\x00", b"MM\x00*"):
        from rasterio.io import MemoryFile

        with MemoryFile(body) as mem, mem.open() as src:
            return src.read(1), {"crs": src.crs, "transform": src.transform}
    return np.asarray(Image.open(io.BytesIO(body))), {}


def _train(base: str, model: str, options: dict) -> tuple[dict, set[str]]:
    """``POST /train/<model>`` and poll ``GET /train/`` until the task ends: ``(task, statuses seen)``."""
    body = json.dumps(options).encode()
    status, answer, _ = _request("POST", f"{base}/train/{model}", body, {"Content-Type": "application/json"})
    assert status == 200, answer
    seen = set()
    for _ in range(900):
        task = json.loads(_request("GET", f"{base}/train/")[1])
        seen.add(task["status"])
        if task["status"] not in ("SUBMITTED", "RUNNING"):
            break
        time.sleep(1)
    return task, seen


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _check_refinement(base: str, studies: Path, references: dict, work: Path) -> None:
    """``<bundle>_refine`` (issue 26) as a client uses it, each label equal to the bundle CLI's refined ``_seg``
    with the same prior and strokes files: retina, the current label uploaded and DeepEdit-style points;
    massroads GeoTIFF, strokes from a datastore label tag and no prior (the study has no final/original label)."""
    from monai_rurnet.label.refine import refine_inputs, write_guidance

    current = (references["retina_drive"]["ret_png.png"][0] > 0).astype(np.uint8)
    (work / "current.png").write_bytes(_png(current))
    ys, xs = np.nonzero(current == 0)
    yf, xf = np.nonzero(current)
    params = {"foreground": [[int(xs[len(xs) // 2]), int(ys[len(ys) // 2])]],
              "background": [[int(xf[len(xf) // 2]), int(yf[len(yf) // 2])]]}  # fmt: skip
    strokes = np.zeros(current.shape, np.uint8)
    strokes[:, :6] = 1  # background strokes along the left edge, uploaded as a stroke image
    (work / "strokes.png").write_bytes(_png(strokes))
    form = _form({"params": (None, json.dumps(params).encode()), "label": ("current.png", _png(current)),
                  "strokes": ("strokes.png", _png(strokes))})  # fmt: skip
    status, body, ctype = _request(
        "POST", f"{base}/infer/retina_drive_refine?image=ret_png&output=all", *form
    )
    assert status == 200, body[:500]
    answer, image = _multipart(body, ctype)
    refined = _label(image)[0]
    prior, smap = refine_inputs(studies / "ret_png.png", params, work / "current.png", work / "strokes.png")
    assert answer["prior"] == "uploaded label", answer
    assert answer["stroke_pixels"] == {
        "foreground": int((smap == 2).sum()),
        "background": int((smap == 1).sum()),
    }
    assert (refined[smap == 2] == 1).all() and (refined[smap == 1] == 0).all(), "strokes not honoured"
    dirs = write_guidance(work / "ret", studies / "ret_png.png", prior, smap)
    ref = bundle_cli_labels(BUNDLES["retina_drive"], [studies / "ret_png.png"], work / "cli_ret",
                            prior_dir=str(dirs[0]), strokes_dir=str(dirs[1]))["ret_png.png"][0]  # fmt: skip
    assert np.array_equal(refined, (ref > 0).astype(np.uint8)), "refined label differs from the CLI's"

    # massroads: the strokes are a datastore label (tag "strokes"), the answer a GeoTIFF on the raster's grid
    roads = references["massroads"]["roads_geo.tif"][0] > 0
    smap = np.zeros(roads.shape, np.uint8)
    smap[np.nonzero(roads)[0][0], np.nonzero(roads)[1][0]] = 1
    smap[5:8, 5:40][~roads[5:8, 5:40]] = 2
    status, body, _ = _request("PUT", f"{base}/datastore/label?image=roads_geo&tag=strokes",
                               *_form({"label": ("roads_geo.png", _png(smap))}))  # fmt: skip
    assert status == 200, body
    params = {"strokes_tag": "strokes"}
    form = _form({"params": (None, json.dumps(params).encode())})
    status, body, ctype = _request("POST", f"{base}/infer/massroads_refine?image=roads_geo&output=all", *form)
    assert status == 200, body[:500]
    answer, image = _multipart(body, ctype)
    refined, geo = _label(image)
    assert answer["prior"] == "none" and geo == references["massroads"]["roads_geo.tif"][1], (answer, geo)
    assert (refined[smap == 2] == 1).all() and (refined[smap == 1] == 0).all(), "strokes not honoured"
    dirs = write_guidance(work / "roads", studies / "roads_geo.tif", None, smap, geotiff=True)
    ref = bundle_cli_labels(BUNDLES["massroads"], [studies / "roads_geo.tif"], work / "cli_roads",
                            strokes_dir=str(dirs[1]))["roads_geo.tif"][0]  # fmt: skip
    assert np.array_equal(refined, (ref > 0).astype(np.uint8)), "refined roads label differs from the CLI's"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_serve_all_bundles_over_http(label_python: str, tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    kinds = _studies(studies)
    tmp = tmp_path / "tmp"  # the server's TMPDIR: must be empty after shutdown
    tmp.mkdir()
    port = free_port(HOST)
    base = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "monai_rurnet.label.serve", "--studies", str(studies), "--port", str(port)]
    for b in BUNDLES.values():
        cmd += ["--bundle", str(b)]
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "MONAI_RURNET_LABEL_PYTHON": label_python,
        "OMP_NUM_THREADS": "2",
    }
    # the CLI references run in this process with the server's thread count: float sums, hence borderline pixels,
    # depend on it (17 of 10752 roads pixels differ between 1 and 2 threads)
    torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    log = tmp_path / "server.log"
    shipped = {n: sha256_file(b / "models" / "model.pt") for n, b in BUNDLES.items()}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def fail(msg: str) -> None:
        pytest.fail(f"{msg}\n--- server log ---\n{log.read_text(errors='replace')[-6000:]}")

    try:
        try:
            info = wait_until_ready(base, timeout=300, proc=proc)
        except (TimeoutError, RuntimeError) as e:
            fail(str(e))
        refiners = {"retina_drive_refine", "massroads_refine"}
        assert set(info["models"]) == set(BUNDLES) | refiners and set(info["trainers"]) == set(BUNDLES), info
        assert info["models"]["retina_drive_refine"]["type"] == "deepedit", info
        assert info["models"]["retina_drive"]["labels"] == {"vessel": 1}
        assert info["models"]["massroads"]["dimension"] == 2
        workdir = next(tmp.glob("rurnet-label-*"))  # serve's own app folder (no --workdir given)
        app_weights = workdir / "app" / "model" / "retina_drive" / "model.pt"
        assert app_weights.is_file() and not app_weights.is_symlink()

        # 1. inference: every bundle and study format, pixel-identical to the bundle CLI's _seg
        references = {n: bundle_cli_labels(BUNDLES[n], [studies / f for f in files], tmp_path / f"cli_{n}")
                      for n, files in kinds.items()}  # fmt: skip
        for name, files in kinds.items():
            for f in files:
                image_id = Path(f).stem
                status, body, _ = _request("POST", f"{base}/infer/{name}?image={image_id}&output=image", b"")
                if status != 200:
                    fail(f"/infer/{name}?image={image_id}: {status} {body[:500]!r}")
                label, geo = _label(body)
                ref, ref_geo = references[name][f]
                assert label.dtype == np.uint8 and label.ndim == 2, (f, label.dtype, label.shape)
                assert set(np.unique(label).tolist()) <= {0, 1}, (f, np.unique(label))
                assert np.array_equal(label, (ref > 0).astype(np.uint8)), (
                    f"{name}/{f}: label differs from the CLI"
                )
                assert geo == ref_geo, (f, geo, ref_geo)
                if f == "roads_geo.tif":
                    assert str(geo["crs"]).endswith("26986") and geo["transform"].c == 230000.0, geo

        # 1b. interactive refinement: uploaded label, points, strokes images; each as the CLI refines it
        (tmp_path / "refine").mkdir()
        _check_refinement(base, studies, references, tmp_path / "refine")

        # 2. responsive: /info/ answers while an inference runs; concurrent requests are queued and all answered
        results: dict[int, tuple] = {}

        def infer(i: int, name: str, image_id: str) -> None:
            results[i] = _request("POST", f"{base}/infer/{name}?image={image_id}&output=image", b"")

        slow = threading.Thread(target=infer, args=(0, "retina_drive", "ret_png"))
        slow.start()
        time.sleep(0.5)
        status, _, _ = _request("GET", f"{base}/info/", timeout=30)
        assert status == 200 and slow.is_alive(), "GET /info/ waited for the inference"
        others = [threading.Thread(target=infer, args=(i, "handseg", "hand_png")) for i in (1, 2, 3)]
        for t in others:
            t.start()
        for t in [slow, *others]:
            t.join()
        assert [results[i][0] for i in range(4)] == [200] * 4, {i: r[:2] for i, r in results.items()}
        assert results[1][1] == results[2][1] == results[3][1]

        # 3. hostile requests: 4xx, nothing read or written
        before, app_before = _files(studies), sha256_file(app_weights)
        png = io.BytesIO()
        Image.fromarray(np.zeros((160, 144), np.uint8)).save(png, format="PNG")
        label_form = _form({"label": ("ret_png.png", png.getvalue())})
        hostile = [
            ("POST", "/infer/retina_drive?image=../../../etc/passwd", b"", {}, 400),
            ("POST", f"/infer/retina_drive?image={studies / 'ret_png.png'}", b"", {}, 400),
            ("POST", "/infer/retina_drive?image=not_in_the_datastore", b"", {}, 404),
            ("POST", "/infer/retina_drive?image=ret_png%5C..%5Cx", b"", {}, 400),
            ("POST", "/infer/unknown_model?image=ret_png", b"", {}, 404),
            ("PUT", "/datastore/label?image=ret_png&tag=../../outside", *label_form, 400),
            ("PUT", "/datastore/label?image=ret_png&tag=%2Ftmp%2Fx", *label_form, 400),
            ("PUT", "/datastore/label?image=../ret_png", *label_form, 400),
            ("PUT", "/datastore/label?image=unknown_id", *label_form, 404),
            ("PUT", "/datastore/image?image=../outside", *_form({"file": ("x.png", png.getvalue())}), 400),
            ("PUT", "/datastore/image", *_form({"file": ("../outside.png", png.getvalue())}), 400),
            ("PUT", "/model/retina_drive", *_form({"file": ("model.pt", b"not weights")}), 403),
            ("DELETE", "/model/retina_drive", None, {}, 403),
            ("POST", "/infer/retina_drive?image=ret_png", *_form({"params": (None, b"{not json")}), 422),
            ("PUT", "/datastore/label?image=ret_png", *_form({"params": (None, b"[1"), "label": ("a.png", b"x")}), 422),
            ("PUT", "/datastore/image/info?image=ret_png", *_form({"info": (None, b"{bad")}), 422),
            ("POST", "/train/retina_drive", b"{bad json", {"Content-Type": "application/json"}, 422),
            ("POST", "/train/retina_drive", b'{"max_epochs": "many"}', {"Content-Type": "application/json"}, 422),
            ("POST", "/train/unknown_model", b"{}", {"Content-Type": "application/json"}, 404),
            ("PUT", "/session/", *_form({"files": ("x.png", png.getvalue())}), 404),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *_form({"params": (None, b'{"foreground": [[144, 0]]}')}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *_form({"params": (None, b'{"background": "1,2"}')}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *_form({"params": (None, b'{"prior_tag": "../x"}')}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *_form({"strokes": ("s.png", _png(np.zeros((9, 9), np.uint8)))}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *_form({"label": ("../l.png", png.getvalue())}), 400),
            ("POST", "/infer/retina_drive?image=ret_png", *_form({"label": ("l.png", png.getvalue())}), 422),
        ]  # fmt: skip
        for method, path, data, headers, expected in hostile:
            status, body, _ = _request(method, base + path, data, headers)
            assert status == expected, f"{method} {path}: {status} {body[:300]!r} (expected {expected})"
        assert _files(studies) == before, _files(studies) ^ before
        assert not (tmp_path / "outside").exists() and not (studies.parent / "outside.png").exists()
        assert sha256_file(app_weights) == app_before

        # 4. training from the annotator's labels: PUT 2 final labels, train 1 epoch, /infer uses the new weights
        for image_id in ("ret_png", "ret_tif"):
            lab = (
                references["retina_drive"][f"{image_id}.png" if image_id == "ret_png" else "ret_tif.tif"][0]
                > 0
            )
            buf = io.BytesIO()
            Image.fromarray(lab.astype(np.uint8)).save(buf, format="PNG")
            status, body, _ = _request("PUT", f"{base}/datastore/label?image={image_id}",
                                       *_form({"label": (f"{image_id}.png", buf.getvalue())}))  # fmt: skip
            assert status == 200, body
        # a failing training shows its cause (hand_png has no final label), then the real one runs to DONE
        task, _ = _train(base, "handseg", {"max_epochs": 1, "images": ["hand_png"]})
        assert task["status"] == "ERROR", task
        assert any("no image to train on has a 'final' label" in line for line in task["details"]), task
        task, seen = _train(base, "retina_drive", {"max_epochs": 1, "images": ["ret_png", "ret_tif"]})
        if task["status"] != "DONE":
            fail(f"training ended {task['status']}: {task.get('details')}")
        assert "RUNNING" in seen or "SUBMITTED" in seen, seen
        new_sha = sha256_file(app_weights)
        assert new_sha != app_before, "training did not replace the app's weights"
        assert {n: sha256_file(b / "models" / "model.pt") for n, b in BUNDLES.items()} == shipped
        status, body, ctype = _request("POST", f"{base}/infer/retina_drive?image=ret_jpg&output=all", b"")
        assert status == 200, body[:300]
        params, image = _multipart(body, ctype)
        assert params["model_sha256"] == new_sha, params
        ref = bundle_cli_labels(
            BUNDLES["retina_drive"], [studies / "ret_jpg.jpg"], tmp_path / "cli_new", app_weights
        )
        assert np.array_equal(_label(image)[0], (ref["ret_jpg.jpg"][0] > 0).astype(np.uint8))

        # 5. no request left a file behind in the server's temporary folder
        leftovers = [p for p in (workdir / "tmp").iterdir() if p.name.startswith(("rurnet-", "tmp"))]
        assert not leftovers, leftovers
    finally:
        start = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        stopped_in = time.monotonic() - start
    assert code is not None, "the server did not stop within 2 s of SIGTERM"
    assert not list(tmp.iterdir()), f"temporary files left after shutdown: {list(tmp.iterdir())}"
    print(json.dumps({"sigterm_to_exit_s": round(stopped_in, 2)}))
