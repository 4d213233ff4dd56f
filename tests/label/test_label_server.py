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

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from label_client import (
    BUNDLES,
    HOST,
    fail_with_log,
    form,
    infer_label,
    multipart,
    need_label_python,
    put_label,
    read_label,
    request,
    server_info,
    train,
    write_studies,
)
from label_reference import bundle_cli_labels
from PIL import Image

from monai_rurnet.label import free_port
from monai_rurnet.label.segment import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def label_python() -> str:
    return need_label_python(BUNDLES)


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
    fields = form({"params": (None, json.dumps(params).encode()), "label": ("current.png", _png(current)),
                   "strokes": ("strokes.png", _png(strokes))})  # fmt: skip
    status, body, ctype = request(
        "POST", f"{base}/infer/retina_drive_refine?image=ret_png&output=all", *fields
    )
    assert status == 200, body[:500]
    answer, image = multipart(body, ctype)
    refined = read_label(image)[0]
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
    status, body, _ = request("PUT", f"{base}/datastore/label?image=roads_geo&tag=strokes",
                               *form({"label": ("roads_geo.png", _png(smap))}))  # fmt: skip
    assert status == 200, body
    params = {"strokes_tag": "strokes"}
    fields = form({"params": (None, json.dumps(params).encode())})
    status, body, ctype = request(
        "POST", f"{base}/infer/massroads_refine?image=roads_geo&output=all", *fields
    )
    assert status == 200, body[:500]
    answer, image = multipart(body, ctype)
    refined, geo = read_label(image)
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
    kinds = write_studies(studies)
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

    try:
        info = server_info(base, proc, log)
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
                label, geo = read_label(infer_label(base, name, image_id, log))
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
            results[i] = request("POST", f"{base}/infer/{name}?image={image_id}&output=image", b"")

        slow = threading.Thread(target=infer, args=(0, "retina_drive", "ret_png"))
        slow.start()
        time.sleep(0.5)
        status, _, _ = request("GET", f"{base}/info/", timeout=30)
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
        label_form = form({"label": ("ret_png.png", png.getvalue())})
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
            ("PUT", "/datastore/image?image=../outside", *form({"file": ("x.png", png.getvalue())}), 400),
            ("PUT", "/datastore/image", *form({"file": ("../outside.png", png.getvalue())}), 400),
            ("PUT", "/model/retina_drive", *form({"file": ("model.pt", b"not weights")}), 403),
            ("DELETE", "/model/retina_drive", None, {}, 403),
            ("POST", "/infer/retina_drive?image=ret_png", *form({"params": (None, b"{not json")}), 422),
            ("PUT", "/datastore/label?image=ret_png", *form({"params": (None, b"[1"), "label": ("a.png", b"x")}), 422),
            ("PUT", "/datastore/image/info?image=ret_png", *form({"info": (None, b"{bad")}), 422),
            ("POST", "/train/retina_drive", b"{bad json", {"Content-Type": "application/json"}, 422),
            ("POST", "/train/retina_drive", b'{"max_epochs": "many"}', {"Content-Type": "application/json"}, 422),
            ("POST", "/train/unknown_model", b"{}", {"Content-Type": "application/json"}, 404),
            ("PUT", "/session/", *form({"files": ("x.png", png.getvalue())}), 404),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *form({"params": (None, b'{"foreground": [[144, 0]]}')}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *form({"params": (None, b'{"background": "1,2"}')}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *form({"params": (None, b'{"prior_tag": "../x"}')}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *form({"strokes": ("s.png", _png(np.zeros((9, 9), np.uint8)))}), 422),
            ("POST", "/infer/retina_drive_refine?image=ret_png", *form({"label": ("../l.png", png.getvalue())}), 400),
            ("POST", "/infer/retina_drive?image=ret_png", *form({"label": ("l.png", png.getvalue())}), 422),
        ]  # fmt: skip
        for method, path, data, headers, expected in hostile:
            status, body, _ = request(method, base + path, data, headers)
            assert status == expected, f"{method} {path}: {status} {body[:300]!r} (expected {expected})"
        assert _files(studies) == before, _files(studies) ^ before
        assert not (tmp_path / "outside").exists() and not (studies.parent / "outside.png").exists()
        assert sha256_file(app_weights) == app_before

        # 4. training from the annotator's labels: PUT 2 final labels, train 1 epoch, /infer uses the new weights
        for image_id, f in (("ret_png", "ret_png.png"), ("ret_tif", "ret_tif.tif")):
            put_label(base, image_id, references["retina_drive"][f][0])
        # a failing training shows its cause (hand_png has no final label), then the real one runs to DONE
        task, _ = train(base, "handseg", {"max_epochs": 1, "images": ["hand_png"]})
        assert task["status"] == "ERROR", task
        assert any("no image to train on has a 'final' label" in line for line in task["details"]), task
        task, seen = train(base, "retina_drive", {"max_epochs": 1, "images": ["ret_png", "ret_tif"]})
        if task["status"] != "DONE":
            fail_with_log(log, f"training ended {task['status']}: {task.get('details')}")
        assert "RUNNING" in seen or "SUBMITTED" in seen, seen
        new_sha = sha256_file(app_weights)
        assert new_sha != app_before, "training did not replace the app's weights"
        assert {n: sha256_file(b / "models" / "model.pt") for n, b in BUNDLES.items()} == shipped
        status, body, ctype = request("POST", f"{base}/infer/retina_drive?image=ret_jpg&output=all", b"")
        assert status == 200, body[:300]
        params, image = multipart(body, ctype)
        assert params["model_sha256"] == new_sha, params
        ref = bundle_cli_labels(
            BUNDLES["retina_drive"], [studies / "ret_jpg.jpg"], tmp_path / "cli_new", app_weights
        )
        assert np.array_equal(read_label(image)[0], (ref["ret_jpg.jpg"][0] > 0).astype(np.uint8))

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
