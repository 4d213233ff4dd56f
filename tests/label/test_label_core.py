"""The MONAI Label integration's parts that run in the core environment (no ``monailabel`` needed): name and
params checks, the request guard, the app layout (weights copied, never linked), the serve CLI, the bundle
runner wrapper (labels pixel-identical to the CLI, weights reloaded when they change) and the fine-tuning."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from label_reference import bundle_cli_labels, to_hwc
from PIL import Image

from monai_rurnet.label import app_model_file, prepare_app, server_command
from monai_rurnet.label.safety import check_image_ids, check_upload_name, is_safe_name, parse_params
from monai_rurnet.label.serve import main as serve_main
from monai_rurnet.label.server import guard

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"


@pytest.mark.parametrize(
    "value,ok",
    [
        ("01_test", True),
        ("img.v2-final", True),
        ("final", True),
        ("../x", False),
        ("..", False),
        ("a..b", False),
        ("/etc/passwd", False),
        ("a/b", False),
        ("a\\b", False),
        (".hidden", False),
        ("", False),
        ("x\x00", False),
        ("a" * 200, False),
        (None, False),
    ],
)
def test_is_safe_name(value, ok) -> None:
    assert is_safe_name(value) is ok


def test_upload_names_and_params() -> None:
    assert check_upload_name("scan.PNG") == ".png"
    for bad in ("../x.png", "x.exe", "noext", None, "/abs/x.tif"):
        with pytest.raises(ValueError):
            check_upload_name(bad)
    assert parse_params("") == {} and parse_params(None) == {} and parse_params('{"a": 1}') == {"a": 1}
    for bad in ("{bad", "[1, 2]", '"text"'):
        with pytest.raises(ValueError):
            parse_params(bad)
    assert check_image_ids(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError):
        check_image_ids(["a", "../b"])
    with pytest.raises(ValueError):
        check_image_ids("a")


class _Served:
    def models(self) -> set[str]:
        return {"retina_drive", "handseg"}

    def trainers(self) -> set[str]:
        return {"retina_drive"}

    def images(self) -> set[str]:
        return {"img1"}


@pytest.mark.parametrize(
    "method,path,query,allow,expected",
    [
        ("GET", "/info/", {}, False, None),
        ("POST", "/infer/retina_drive", {"image": ["img1"]}, False, None),
        ("POST", "/infer/retina_drive", {"image": ["../../etc/passwd"]}, False, 400),
        ("POST", "/infer/retina_drive", {"image": ["/etc/passwd"]}, False, 400),
        ("POST", "/infer/retina_drive", {"image": ["nope"]}, False, 404),
        ("POST", "/infer/other", {"image": ["img1"]}, False, 404),
        ("POST", "/infer/wsi/retina_drive", {}, False, 404),
        ("PUT", "/datastore/label", {"image": ["img1"], "tag": ["../../x"]}, False, 400),
        ("PUT", "/datastore/label", {"image": ["nope"], "tag": ["final"]}, False, 404),
        ("PUT", "/datastore/label", {"image": ["img1"], "tag": ["final"]}, False, None),
        ("PUT", "/datastore/image", {"image": ["new_one"]}, False, None),
        ("PUT", "/datastore/image", {"image": ["../x"]}, False, 400),
        ("DELETE", "/datastore/image", {"id": ["nope"]}, False, 404),
        ("GET", "/datastore/label", {"label": ["img1"], "tag": ["final"]}, False, None),
        ("PUT", "/model/retina_drive", {}, False, 403),
        ("DELETE", "/model/retina_drive", {}, False, 403),
        ("PUT", "/model/retina_drive", {}, True, None),
        ("GET", "/model/retina_drive", {}, False, None),
        ("POST", "/train/retina_drive", {}, False, None),
        ("POST", "/train/handseg", {}, False, 404),
        ("PUT", "/session/", {}, False, 404),
        ("GET", "/proxy/dicom/x", {}, False, 404),
    ],
)
def test_guard(method, path, query, allow, expected) -> None:
    refused = guard(method, path, query, _Served(), allow)
    assert (refused[0] if refused else None) == expected, refused


def test_app_weights_are_copies(tmp_path: Path) -> None:
    bundle = tmp_path / "bundles" / "b"
    shutil.copytree(BUNDLES / "handseg" / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    shipped = bundle / "models" / "model.pt"
    shipped.write_bytes(b"weights-v1")
    app = prepare_app(tmp_path / "work", [bundle])
    copy = app / "model" / "b" / "model.pt"
    assert (app / "main.py").is_file() and copy.read_bytes() == b"weights-v1" and not copy.is_symlink()
    copy.write_bytes(
        b"fine-tuned"
    )  # the app's copy is the app's: prepare_app keeps it, the bundle is untouched
    prepare_app(tmp_path / "work", [bundle])
    assert copy.read_bytes() == b"fine-tuned" and shipped.read_bytes() == b"weights-v1"
    linked = tmp_path / "linked"
    (linked / "model").mkdir(parents=True)
    os.symlink(bundle / "models", linked / "model" / "b")
    with pytest.raises(RuntimeError, match="link"):
        app_model_file(linked, "b", bundle)
    with pytest.raises(FileNotFoundError, match="not a bundle"):
        prepare_app(tmp_path / "work", [tmp_path])


def test_serve_cli(tmp_path: Path, capsys) -> None:
    tmpdir_before = os.environ.get("TMPDIR")
    cmd = server_command(
        "py", "APP", "STUDIES", [BUNDLES / "handseg"], conf={"train": "false"}, allow_model_upload=True
    )
    assert cmd[:3] == ["py", "-m", "monai_rurnet.label.server"] and cmd[-1] == "--allow_model_upload"
    assert cmd[cmd.index("bundles") + 1] == str(BUNDLES / "handseg")
    rc = serve_main(["--bundle", str(BUNDLES / "handseg"), "--studies", str(tmp_path / "s"), "--python", "py",
                     "--workdir", str(tmp_path / "w"), "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "monai_rurnet.label.server" in out and "--allow_model_upload" not in out
    assert not (tmp_path / "w" / "tmp").exists() and os.environ.get("TMPDIR") == tmpdir_before
    assert serve_main(["--bundle", "x", "--studies", "y", "--host", "0.0.0.0", "--python", "py"]) == 2


def test_seg_to_label_png_and_geotiff(tmp_path: Path) -> None:
    from monai_rurnet.data.geotiff import write_geotiff
    from monai_rurnet.label.segment import seg_to_label

    seg = np.zeros((20, 30), np.uint8)
    seg[5:9, 3:20] = 255
    Image.fromarray(seg).save(tmp_path / "a_seg.png")
    out = seg_to_label(tmp_path / "a_seg.png", tmp_path / "a.jpg", tmp_path)
    assert out.name == "a.png" and np.array_equal(np.asarray(Image.open(out)), seg // 255)
    write_geotiff(tmp_path / "g_seg.tif", seg, transform=(1000.0, 2.0, 0, 5000.0, 0, -2.0), crs="EPSG:26986")
    out = seg_to_label(tmp_path / "g_seg.tif", tmp_path / "g.tif", tmp_path / "o")
    import rasterio

    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 26986 and src.transform.c == 1000.0 and src.dtypes[0] == "uint8"
        assert np.array_equal(src.read(1), seg // 255)
    assert seg_to_label(tmp_path / "g_seg.tif", tmp_path / "g.png", tmp_path / "o").suffix == ".png"


@pytest.mark.slow
def test_segmenter_matches_cli_and_reloads_weights(tmp_path: Path) -> None:
    from monai_rurnet.data import synthetic_hand_image
    from monai_rurnet.label.segment import BundleSegmenter, sha256_file

    bundle = BUNDLES / "handseg"
    image = tmp_path / "hand.jpg"
    Image.fromarray(to_hwc(synthetic_hand_image(size=(60, 84), seed=2)[0])).save(image, quality=90)
    weights = tmp_path / "model.pt"
    shutil.copyfile(bundle / "models" / "model.pt", weights)
    seg = BundleSegmenter(bundle, weights, {"device": "$torch.device('cpu')"})
    label = np.asarray(Image.open(seg.segment(image, tmp_path / "out")))
    ref = bundle_cli_labels(bundle, [image], tmp_path / "cli")["hand.jpg"][0]
    assert label.shape == (60, 84) and np.array_equal(label, (ref > 0).astype(np.uint8))
    first = seg.weights_sha256
    state = torch.load(weights, weights_only=True)
    state = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, weights)
    seg.segment(image, tmp_path / "out2")
    assert seg.weights_sha256 == sha256_file(weights) != first
    assert not Path(seg._work).exists(), "the private folder outlived the call"


def test_finetune_inputs(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    from monai_rurnet.label.finetune import loaded_keys, prepare_datalist, train_config_files

    parser = ConfigParser()
    parser.read_config(train_config_files(BUNDLES / "retina_drive"))
    parser["bundle_root"] = str(BUNDLES / "retina_drive")
    assert loaded_keys(parser.get_parsed_content("train#preprocessing")) == ["image", "label", "mask"]
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "i.png")
    lab = np.zeros((10, 12), np.uint8)
    lab[2:5, 3:7] = 1
    Image.fromarray(lab).save(tmp_path / "l.png")
    (item,) = prepare_datalist([{"image": str(tmp_path / "i.png"), "label": str(tmp_path / "l.png")}],
                               tmp_path / "data", ["mask"])  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(item["label"])), lab * 255)
    assert (np.asarray(Image.open(item["mask"])) == 255).all()
    Image.fromarray(lab[:5]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="differ"):
        prepare_datalist([{"image": str(tmp_path / "i.png"), "label": str(tmp_path / "small.png")}], tmp_path)


@pytest.mark.slow
def test_finetune_writes_new_weights_atomically(tmp_path: Path) -> None:
    from monai_rurnet.data import synthetic_hand_image
    from monai_rurnet.label.finetune import finetune
    from monai_rurnet.label.segment import sha256_file

    items = []
    for i in range(2):
        img, mask = synthetic_hand_image(size=(64, 64), seed=i)
        Image.fromarray(to_hwc(img)).save(tmp_path / f"h{i}.png")
        Image.fromarray((mask > 0).astype(np.uint8)).save(tmp_path / f"m{i}.png")
        items.append({"image": str(tmp_path / f"h{i}.png"), "label": str(tmp_path / f"m{i}.png")})
    shipped = BUNDLES / "handseg" / "models" / "model.pt"
    before = sha256_file(shipped)
    out = tmp_path / "app" / "model.pt"
    out.parent.mkdir()
    torch.set_num_threads(2)
    result = finetune(BUNDLES / "handseg", items, out, tmp_path / "work", init_weights=shipped,
                      options={"max_epochs": "1", "batch_size": 2}, device="cpu")  # fmt: skip
    assert result["images"] == 2 and result["epochs"] == 1
    assert sha256_file(shipped) == before and out.is_file() and sha256_file(out) != before
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt"]  # no temp file left beside it
    with pytest.raises(ValueError, match="positive"):
        finetune(BUNDLES / "handseg", items, out, tmp_path / "w2", options={"max_epochs": 0})
    assert json.loads(json.dumps(result))["model_file"] == str(out)


def test_point_lists_to_strokes() -> None:
    from monai_rurnet.label.refine import draw_strokes, parse_point_list

    size = (10, 12)  # (H, W): points are [x, y] = [column, row]
    lines = parse_point_list([[11, 0], [2.4, 7, 0], [[3, 5], [9, 5]]], "foreground", size)
    assert [line.tolist() for line in lines] == [[[11, 0]], [[2, 7]], [[3, 5], [9, 5]]]
    centre = draw_strokes(size, lines, radius=0)
    assert centre[0, 11] and centre[7, 2] and centre[5, 3:10].all() and centre.sum() == 2 + 7
    wide = draw_strokes(size, lines[:1], radius=1)  # a disc of radius 1 clipped by the corner
    assert np.array_equal(np.argwhere(wide), [[0, 10], [0, 11], [1, 11]])
    assert parse_point_list(None, "background", size) == [] and not draw_strokes(size, [], 2).any()


@pytest.mark.parametrize(
    "params,match",
    [
        ({"foreground": "1,2"}, "must be a list"),
        ({"foreground": [[1]]}, r"a point is \[x, y\]"),
        ({"foreground": [[1, 2, 3]]}, "only slice 0"),
        ({"foreground": [[12, 0]]}, "outside the image of 12 x 10"),
        ({"background": [[0, -1]]}, "outside the image"),
        ({"foreground": [[1, "a"]]}, "finite numbers"),
        ({"foreground": [[True, 1]]}, "finite numbers"),
        ({"foreground": [[]]}, "expected a point"),
        ({"foreground": [[[1, 2], [[3, 4]]]]}, r"foreground\[0\]\[1\]"),
        ({"foreground": [[4, 4]], "background": [[5, 4]]}, "both foreground and background"),
        ({"foreground": [[1, 1]] * 10001}, "more than 10000 points"),
        ({"background": [[[1, 1]] * 5001] * 2}, "more than 10000 points"),
        ({"stroke_radius": -1}, "stroke_radius"),
        ({"stroke_radius": 1.5}, "stroke_radius"),
    ],
)
def test_refine_refuses_bad_points(tmp_path: Path, params: dict, match: str) -> None:
    from monai_rurnet.label.refine import RefineRequestError, refine_inputs

    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "im.png")
    with pytest.raises(RefineRequestError, match=match):
        refine_inputs(tmp_path / "im.png", params)


def test_refine_inputs_label_and_strokes_images(tmp_path: Path) -> None:
    from monai_rurnet.label.refine import RefineRequestError, refine_inputs

    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "im.png")
    label = np.zeros((10, 12), np.uint8)
    label[2:4] = 1
    Image.fromarray(label).save(tmp_path / "label.png")
    strokes = np.zeros((10, 12), np.uint8)
    strokes[8, 0:3] = 1
    Image.fromarray(strokes).save(tmp_path / "strokes.png")
    params = {"foreground": [[[5, 6], [8, 6]]], "background": [[11, 0]], "stroke_radius": 0}
    prior, smap = refine_inputs(tmp_path / "im.png", params, tmp_path / "label.png", tmp_path / "strokes.png")
    assert np.array_equal(prior, label > 0) and smap.dtype == np.uint8
    expected = strokes.copy()
    expected[6, 5:9], expected[0, 11] = 2, 1
    assert np.array_equal(smap, expected)
    prior, smap = refine_inputs(tmp_path / "im.png", {})
    assert prior is None and not smap.any()
    bad = {"small.png": np.zeros((9, 12), np.uint8), "rgb.png": np.zeros((10, 12, 3), np.uint8),
           "values.png": np.full((10, 12), 3, np.uint8)}  # fmt: skip
    for name, a in bad.items():
        Image.fromarray(a).save(tmp_path / name)
    for label_file, strokes_file, match in [
        ("small.png", None, "is 12 x 9 pixels, the image is 12 x 10"),
        (None, "small.png", "is 12 x 9 pixels"),
        ("rgb.png", None, "single-band"),
        (None, "values.png", r"found \[3\]"),
        ("missing.png", None, "not found"),
    ]:
        with pytest.raises(RefineRequestError, match=match):
            refine_inputs(tmp_path / "im.png", {}, label_file and tmp_path / label_file,
                          strokes_file and tmp_path / strokes_file)  # fmt: skip
    with pytest.raises(RefineRequestError, match="both foreground and background"):
        refine_inputs(
            tmp_path / "im.png", {"foreground": [[1, 8]], "stroke_radius": 0}, None, tmp_path / "strokes.png"
        )


class _Datastore:
    """MONAI Label's datastore calls that :func:`datastore_guidance` makes, over ``<root>/<tag>/<id>.png``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        return {p.parent.name: image_id for p in self.root.glob(f"*/{image_id}.png")}

    def get_label_uri(self, label_id: str, tag: str) -> str:
        p = self.root / tag / f"{label_id}.png"
        return str(p) if p.is_file() else ""


def test_datastore_guidance(tmp_path: Path) -> None:
    from monai_rurnet.label.refine import RefineRequestError, datastore_guidance

    ds = _Datastore(tmp_path)
    assert datastore_guidance({"image": "img1"}, ds) == {"image": "img1"}  # no label: no prior
    for i, tag in enumerate(("final", "original", "strokes")):
        (tmp_path / tag).mkdir()
        (tmp_path / tag / "img1.png").write_bytes(b"x")
        os.utime(tmp_path / tag / "img1.png", ns=(10**18 + i, 10**18 + i))
    out = datastore_guidance({"image": "img1", "strokes_tag": "strokes"}, ds)
    assert (
        out["label"] == str(tmp_path / "original" / "img1.png")
        and out["prior_source"] == "datastore label 'original'"
    )
    assert out["strokes"] == str(tmp_path / "strokes" / "img1.png")
    assert datastore_guidance({"image": "img1", "prior_tag": "final"}, ds)["label"].endswith("final/img1.png")
    upload = {"image": "img1", "label": "/req/label.png"}
    assert datastore_guidance(upload, ds)["label"] == "/req/label.png"  # an uploaded label wins
    for request, match in [
        ({"image": "img1", "prior_tag": "../x"}, "plain label tag"),
        ({"image": "img1", "prior_tag": "nope"}, "no label tagged 'nope'"),
        ({"image": "img1", "strokes_tag": "nope"}, "no label tagged 'nope'"),
        ({"image": "img1", "prior_tag": "final", "label": "/req/label.png"}, "not both"),
        (
            {"image": str(tmp_path / "final" / "img1.png"), "strokes_tag": "strokes"},
            "image id of the datastore",
        ),
    ]:
        with pytest.raises(RefineRequestError, match=match):
            datastore_guidance(request, ds)


def test_write_guidance_png_and_geotiff(tmp_path: Path) -> None:
    import rasterio

    from monai_rurnet.data.geotiff import write_geotiff
    from monai_rurnet.data.guidance_io import GuidanceFiles
    from monai_rurnet.label.refine import write_guidance

    prior = np.zeros((20, 30), bool)
    prior[5:9] = True
    strokes = np.zeros((20, 30), np.uint8)
    strokes[1, 2], strokes[15, 4] = 1, 2
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    p, s = write_guidance(tmp_path / "g", tmp_path / "a.png", prior, strokes, geotiff=True)
    assert np.array_equal(np.asarray(Image.open(p / "a_seg.png")), prior * 255)
    assert np.array_equal(np.asarray(Image.open(s / "a_strokes.png")), strokes)
    write_geotiff(tmp_path / "r.tif", np.zeros((3, 20, 30), np.uint8), transform=(1000.0, 2.0, 0, 5000.0, 0, -2.0),
                  crs="EPSG:26986")  # fmt: skip
    p, s = write_guidance(tmp_path / "h", tmp_path / "r.tif", None, strokes, geotiff=True)
    assert p is None and sorted(x.name for x in (tmp_path / "h").rglob("*")) == ["r_strokes.tif", "strokes"]
    with rasterio.open(s / "r_strokes.tif") as src:
        assert (
            src.crs.to_epsg() == 26986 and src.transform.c == 1000.0 and np.array_equal(src.read(1), strokes)
        )
    assert GuidanceFiles(None, s).paths("r")  # the runner finds it
    p, _ = write_guidance(tmp_path / "i", tmp_path / "r.tif", prior, None, geotiff=False)
    assert (p / "r_seg.png").is_file()


@pytest.mark.slow
def test_segmenter_refines_like_cli(tmp_path: Path) -> None:
    """The segmenter with a prior and strokes gives the bundle CLI's refined ``_seg`` with the same files, for a
    PNG tile and a GeoTIFF (strokes as a GeoTIFF on the raster's grid), and honours the strokes."""
    from monai_rurnet.data.geotiff import write_geotiff
    from monai_rurnet.data.synthetic import synthetic_roads
    from monai_rurnet.label.refine import refine_inputs, write_guidance
    from monai_rurnet.label.segment import BundleSegmenter

    bundle = BUNDLES / "massroads"
    Image.fromarray(to_hwc(synthetic_roads(size=(64, 80), seed=1)[0])).save(tmp_path / "tile.png")
    roads, _ = synthetic_roads(size=(72, 88), seed=2)
    write_geotiff(
        tmp_path / "geo.tif", roads, transform=(230000.0, 1.0, 0, 900000.0, 0, -1.0), crs="EPSG:26986"
    )
    seg = BundleSegmenter(bundle, None, {"device": "$torch.device('cpu')"})
    for name in ("tile.png", "geo.tif"):
        image = tmp_path / name
        plain = _read_label(seg.segment(image, tmp_path / "plain"))
        # strokes: foreground on background pixels, background on foreground pixels of the plain label
        ys, xs = np.nonzero(plain == 0)
        yf, xf = np.nonzero(plain == 1)
        params = {"foreground": [[int(xs[len(xs) // 2]), int(ys[len(ys) // 2])]],
                  "background": [[int(xf[len(xf) // 3]), int(yf[len(yf) // 3])]] if len(xf) else []}  # fmt: skip
        Image.fromarray(plain).save(tmp_path / f"{image.stem}_current.png")
        prior, strokes = refine_inputs(image, params, tmp_path / f"{image.stem}_current.png")
        refined = _read_label(seg.segment(image, tmp_path / "refined", prior, strokes))
        assert (refined[strokes == 2] == 1).all() and (refined[strokes == 1] == 0).all()
        guided = tmp_path / f"guidance_{image.stem}"
        prior_dir, strokes_dir = write_guidance(guided, image, prior, strokes, geotiff=True)
        ref = bundle_cli_labels(bundle, [image], tmp_path / f"cli_{image.stem}", prior_dir=str(prior_dir),
                                strokes_dir=str(strokes_dir))[name][0]  # fmt: skip
        assert np.array_equal(refined, (ref > 0).astype(np.uint8)), (
            f"{name}: refined label differs from the CLI"
        )
    assert not Path(seg._work).exists(), "the private folder outlived the call"


def _read_label(path: Path) -> np.ndarray:
    from monai_rurnet.data.readers import read_plane

    return read_plane(path)[0]
