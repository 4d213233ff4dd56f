"""Bad and unusual inputs: every failure is a clear error naming the file/cause, every oddity a correct result."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import LoadImaged
from PIL import Image

from monai_rurnet.data import drive_datalist
from monai_rurnet.engines.handlers import ResumableCheckpoint
from monai_rurnet.inferers import FastInferer
from monai_rurnet.networks import build_network
from monai_rurnet.runners import FolderSegmentationRunner, ImageFolderDataset
from monai_rurnet.transforms import CheckSameSized, EnsureChannelsd, InvalidImageError
from monai_rurnet.utils import load_state_dict_file

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "retina_drive"
INFERENCE_CONFIG = BUNDLE / "configs" / "inference.json"
SMALL = (4, 8, 16, 32, 64)


def _runner(net, preprocessing, src: Path, out: Path, **kw) -> FolderSegmentationRunner:
    inferer = FastInferer(SlidingWindowInferer((32, 32), 4), backend="eager")
    return FolderSegmentationRunner(
        net, ImageFolderDataset(src, preprocessing), inferer, out, progress=False, **kw
    )


def _rgb(h: int = 40, w: int = 52, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _check_outputs(out: Path, stem: str, size: tuple[int, int]) -> None:
    seg = np.asarray(Image.open(out / f"{stem}_seg.png"))
    assert seg.shape == size, f"{stem}: seg {seg.shape} != input {size}"
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 255}
    prob = np.asarray(Image.open(out / f"{stem}_prob.png"))
    assert prob.shape == size


def _run_one(net, preprocessing, tmp_path: Path, name: str, write, capsys=None):
    """Write one input with ``write(path)`` and segment the folder; returns (out_dir, SystemExit or None)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write(src / name)
    try:
        _runner(net, preprocessing, src, out).run()
    except SystemExit as e:
        return out, e
    return out, None


# ---------------------------------------------------------------------------------------------- network


def test_network_wrong_channel_count(net):
    with pytest.raises(ValueError, match=r"Expected 3 input channels, got 1"):
        net(torch.zeros(1, 1, 32, 32))


def test_network_wrong_ndim(net):
    with pytest.raises(ValueError, match=r"Expected a 4D input .*got shape \[3, 32, 32\]"):
        net(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"4D input"):
        net(torch.zeros(1, 3, 16, 16, 16))


def test_network_size_not_divisible_suggests_sizes(net):
    with pytest.raises(ValueError) as e:
        net(torch.zeros(1, 3, 100, 64))
    msg = str(e.value)
    assert "(100, 64)" in msg and "divisible by 16" in msg
    assert "100 -> 96 or 112" in msg  # the nearest valid sizes
    assert "64 ->" not in msg  # only the bad dims are named


# ---------------------------------------------------------------------------------------------- inferers


@pytest.mark.parametrize("size", [(97, 131), (20, 27), (16, 17), (1, 33)])
def test_recurrent_sliding_window_odd_sizes(net, size):
    x = torch.rand(1, 3, *size)
    inferer = FastInferer(SlidingWindowInferer((32, 32), 4), backend="eager", steps=2)
    with torch.no_grad():
        y = inferer(x, net)
    assert tuple(y.shape) == (1, 2, *size)
    assert torch.isfinite(y).all()
    assert inferer.last_steps == 2


# ---------------------------------------------------------------------------------------------- folder runner


def test_runner_grayscale_png_converted(net, preprocessing, tmp_path):
    g = _rgb()[..., 0]
    out, err = _run_one(net, preprocessing, tmp_path, "grey.png", lambda p: Image.fromarray(g).save(p))
    assert err is None
    _check_outputs(out, "grey", g.shape)
    data = preprocessing({"image": str(tmp_path / "in" / "grey.png")})
    assert data["image"].shape == (3, *g.shape)
    np.testing.assert_allclose(np.asarray(data["display"][1]), g / 255.0, atol=1e-6)


def test_runner_rgba_alpha_dropped(net, preprocessing, tmp_path):
    rgb = _rgb()
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    out, err = _run_one(
        net, preprocessing, tmp_path, "rgba.png", lambda p: Image.fromarray(rgba, "RGBA").save(p)
    )
    assert err is None
    _check_outputs(out, "rgba", rgb.shape[:2])
    data = preprocessing({"image": str(tmp_path / "in" / "rgba.png")})
    np.testing.assert_allclose(np.asarray(data["display"]).transpose(1, 2, 0), rgb / 255.0, atol=1e-6)


def test_runner_16bit_png_scaled(net, preprocessing, tmp_path):
    a = np.random.default_rng(1).integers(0, 65536, (40, 52), dtype=np.uint16)
    a[0, 0] = 65535  # the range implies 16 bits

    out, err = _run_one(net, preprocessing, tmp_path, "deep.png", lambda p: Image.fromarray(a).save(p))
    assert err is None
    _check_outputs(out, "deep", a.shape)
    data = preprocessing({"image": str(tmp_path / "in" / "deep.png")})
    np.testing.assert_allclose(np.asarray(data["display"][0]), a / 65535.0, atol=1e-5)


def test_runner_float_tiff_unit_range(net, preprocessing, tmp_path):
    f = np.random.default_rng(2).random((40, 52)).astype(np.float32)
    out, err = _run_one(net, preprocessing, tmp_path, "float.tif", lambda p: Image.fromarray(f, "F").save(p))
    assert err is None
    _check_outputs(out, "float", f.shape)
    data = preprocessing({"image": str(tmp_path / "in" / "float.tif")})
    np.testing.assert_allclose(np.asarray(data["display"][2]), f, atol=1e-6)  # kept, not divided by 255


def test_two_channel_image_rejected_naming_file():
    img = MetaTensor(torch.rand(2, 20, 20), meta={"filename_or_obj": "/data/two_band.tif"})
    with pytest.raises(InvalidImageError, match=r"/data/two_band\.tif: image has 2 channels, expected 3"):
        EnsureChannelsd("image", channels=3)({"image": img})


def test_runner_two_channel_tiff_fails_naming_file(net, preprocessing, tmp_path, capsys):
    rasterio = pytest.importorskip("rasterio")

    def write(p):
        with rasterio.open(p, "w", driver="GTiff", width=40, height=32, count=2, dtype="uint8") as ds:
            ds.write(np.random.default_rng(3).integers(0, 256, (2, 32, 40), dtype=np.uint8))

    out, err = _run_one(net, preprocessing, tmp_path, "two_band.tif", write)
    assert err is not None and err.code == 1
    stderr = capsys.readouterr().err
    assert "FAILED" in stderr and "two_band.tif" in stderr
    assert not list(out.glob("two_band*"))


def test_runner_grey_alpha_png_alpha_dropped(net, preprocessing, tmp_path):
    la = np.stack([_rgb()[..., 0], np.full((40, 52), 9, np.uint8)], axis=-1)
    out, err = _run_one(net, preprocessing, tmp_path, "la.png", lambda p: Image.fromarray(la, "LA").save(p))
    assert err is None
    _check_outputs(out, "la", la.shape[:2])
    data = preprocessing({"image": str(tmp_path / "in" / "la.png")})
    np.testing.assert_allclose(np.asarray(data["display"][0]), la[..., 0] / 255.0, atol=1e-6)


def _nan_tiff(p: Path) -> None:
    f = np.full((32, 32), 0.5, np.float32)
    f[3, 4] = np.nan
    Image.fromarray(f, "F").save(p)


def _tiny_png(p: Path) -> None:
    Image.fromarray(_rgb(4, 4)).save(p)


BAD_CONTENT = [
    ("nan.tif", _nan_tiff, "nan.tif: image contains NaN or Inf values"),
    ("tiny.png", _tiny_png, "tiny.png: image size (4, 4) is too small (minimum 16 px)"),
]


@pytest.mark.parametrize("name, write, cause", BAD_CONTENT, ids=["nan-tiff", "tiny-4x4"])
def test_preprocessing_rejects_bad_content_naming_file(preprocessing, tmp_path, name, write, cause):
    write(tmp_path / name)
    with pytest.raises(Exception) as e:
        preprocessing({"image": str(tmp_path / name)})
    root = e.value
    while root.__cause__ is not None:  # MONAI's Compose wraps it in RuntimeError("applying transform ...")
        root = root.__cause__
    assert isinstance(root, InvalidImageError)
    assert cause in str(root) and str(tmp_path) in str(root)


@pytest.mark.parametrize("name, write, cause", BAD_CONTENT, ids=["nan-tiff", "tiny-4x4"])
def test_runner_bad_content_fails_naming_file(net, preprocessing, tmp_path, capsys, name, write, cause):
    out, err = _run_one(net, preprocessing, tmp_path, name, write)
    assert err is not None and err.code == 1
    assert f"FAILED {tmp_path / 'in' / name}" in capsys.readouterr().err
    assert not list(out.glob(f"{Path(name).stem}*"))


@pytest.mark.parametrize("name, write, cause", BAD_CONTENT, ids=["nan-tiff", "tiny-4x4"])
def test_runner_failure_message_names_cause(net, preprocessing, tmp_path, capsys, name, write, cause):
    _run_one(net, preprocessing, tmp_path, name, write)
    assert cause in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, write",
    [
        ("empty.png", lambda p: p.write_bytes(b"")),
        ("notes.png", lambda p: p.write_text("this is a text file, not an image\n")),
    ],
    ids=["zero-byte", "text-renamed-png"],
)
def test_runner_unreadable_files_fail_naming_file(net, preprocessing, tmp_path, capsys, name, write):
    out, err = _run_one(net, preprocessing, tmp_path, name, write)
    assert err is not None and err.code == 1
    stderr = capsys.readouterr().err
    assert f"FAILED {tmp_path / 'in' / name}" in stderr
    assert not list(out.glob(f"{Path(name).stem}*"))


def test_runner_truncated_png_does_not_stop_others(net, preprocessing, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_rgb()).save(src / "a_good.png")
    Image.fromarray(_rgb(seed=5)).save(src / "b_cut.png")
    data = (src / "b_cut.png").read_bytes()
    (src / "b_cut.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(_rgb(seed=6)).save(src / "c_good.png")
    with pytest.raises(SystemExit) as e:
        _runner(net, preprocessing, src, out).run()
    assert e.value.code == 1
    captured = capsys.readouterr()
    assert f"FAILED {src / 'b_cut.png'}" in captured.err
    assert "2 images segmented, 0 skipped (outputs exist), 1 failed" in captured.out
    _check_outputs(out, "a_good", (40, 52))
    _check_outputs(out, "c_good", (40, 52))
    assert not list(out.glob("b_cut*"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_runner_empty_folder_names_folder(net, preprocessing, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'in'}: no input images"):
        _runner(net, preprocessing, tmp_path / "in", tmp_path / "out").run()


def test_runner_missing_folder_names_folder(net, preprocessing, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nope'}: input folder does not exist"):
        _runner(net, preprocessing, tmp_path / "nope", tmp_path / "out").run()


# ---------------------------------------------------------------------------------------------- datasets


def test_drive_datalist_missing_folder(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=rf"{tmp_path / 'DRIVE' / 'training' / 'images'}: DRIVE images"
    ):
        drive_datalist(tmp_path / "DRIVE", "training")


def test_drive_datalist_empty_folder(tmp_path):
    (tmp_path / "training" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"images: no DRIVE images"):
        drive_datalist(tmp_path, "training")


def test_drive_datalist_missing_label_names_file(tmp_path):
    for sub in ("images", "1st_manual", "mask"):
        (tmp_path / "training" / sub).mkdir(parents=True)
    Image.fromarray(_rgb()).save(tmp_path / "training" / "images" / "21_training.tif")
    with pytest.raises(
        FileNotFoundError, match=r"21_manual1\.gif: label for image 21_training\.tif not found"
    ):
        drive_datalist(tmp_path, "training")


def test_image_label_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(_rgb(40, 52)).save(tmp_path / "21_training.tif")
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "21_manual1.gif")
    data = LoadImaged(["image", "label"], reader="PILReader", image_only=True, ensure_channel_first=True)(
        {"image": str(tmp_path / "21_training.tif"), "label": str(tmp_path / "21_manual1.gif")}
    )
    with pytest.raises(ValueError) as e:
        CheckSameSized(["image", "label"])(data)
    msg = str(e.value)
    assert "21_training.tif" in msg and "21_manual1.gif" in msg
    assert "(52, 40)" in msg and "(50, 40)" in msg  # PILReader reverses to (W, H) by default


@pytest.fixture(scope="module")
def train_validate_preprocessing():
    """``validate#preprocessing`` of the merged retina training config (shared trainer + bundle)."""
    parser = ConfigParser()
    parser.read_config(
        [
            str(INFERENCE_CONFIG),
            str(ROOT / "configs" / "train_base.json"),
            str(BUNDLE / "configs" / "train.json"),
        ]
    )
    parser["bundle_root"] = str(BUNDLE)
    return parser.get_parsed_content("validate#preprocessing")


def _drive_case(tmp_path: Path, optimize: bool) -> dict[str, str]:
    lab = np.zeros((40, 52), np.uint8)
    lab[10:14, :] = 255
    fov = np.zeros((40, 52), np.uint8)
    fov[2:38, 2:50] = 255
    Image.fromarray(_rgb()).save(tmp_path / "21_training.tif")
    Image.fromarray(lab).save(tmp_path / "21_manual1.gif", optimize=optimize)
    Image.fromarray(fov).save(tmp_path / "21_training_mask.gif", optimize=optimize)
    names = {"image": "21_training.tif", "label": "21_manual1.gif", "mask": "21_training_mask.gif"}
    return {k: str(tmp_path / n) for k, n in names.items()}


def test_train_config_reads_grey_gif_labels(train_validate_preprocessing, tmp_path):
    out = train_validate_preprocessing(_drive_case(tmp_path, optimize=False))  # mode L, 0/255, like DRIVE
    assert float(out["label"].sum()) == 4 * 52
    assert float(out["mask"].sum()) == 36 * 48


def test_train_config_reads_palette_gif_labels(train_validate_preprocessing, tmp_path):
    case = _drive_case(tmp_path, optimize=True)
    assert Image.open(case["label"]).mode == "P"
    out = train_validate_preprocessing(case)
    assert float(out["label"].sum()) == 4 * 52
    assert float(out["mask"].sum()) == 36 * 48


def test_check_same_sized_passes_and_skips_missing():
    a = MetaTensor(torch.zeros(3, 8, 9), meta={"filename_or_obj": "a.png"})
    b = MetaTensor(torch.zeros(1, 8, 9), meta={"filename_or_obj": "b.png"})
    out = CheckSameSized(["image", "label", "mask"], allow_missing_keys=True)({"image": a, "label": b})
    assert out["image"] is a and out["label"] is b


# ---------------------------------------------------------------------------------------------- checkpoints


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_weights_text_file_rejected_naming_file(net, tmp_path):
    p = tmp_path / "model.pt"
    p.write_text("definitely not a checkpoint")
    with pytest.raises(ValueError, match=rf"{p}: not a readable PyTorch weights file"):
        load_state_dict_file(p, net)


def test_weights_malicious_pickle_not_executed(net, tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    p = tmp_path / "model.pt"
    torch.save({"network": exploit}, p)
    with pytest.raises(ValueError, match=rf"{p}: not a readable PyTorch weights file"):
        load_state_dict_file(p, net)
    assert not marker.exists()  # weights_only=True refused to run os.system


def test_weights_plain_pickle_rejected(net, tmp_path):
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    with pytest.raises(ValueError, match=rf"{p}: "):
        load_state_dict_file(p, net)


def test_weights_foreign_state_dict_rejected_naming_file(net, tmp_path):
    p = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), p)
    with pytest.raises(ValueError, match=rf"{p}: weights do not match RecurrentUNet: \d+ missing keys"):
        load_state_dict_file(p, net)


@pytest.mark.parametrize(
    "other",
    [
        lambda: build_network("unet_g"),
        lambda: build_network("dru", features=(8, 16, 32, 64, 128), steps=2),
    ],
    ids=["unet_g", "dru-wider"],
)
def test_weights_other_network_rejected_naming_file(net, tmp_path, other):
    p = tmp_path / "other.pt"
    torch.save(other().state_dict(), p)
    with pytest.raises(ValueError, match=rf"{p}: "):
        load_state_dict_file(p, net)


def test_weights_truncated_file_rejected(net, tmp_path):
    p = tmp_path / "cut.pt"
    torch.save(net.state_dict(), p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=rf"{p}: not a readable PyTorch weights file"):
        load_state_dict_file(p, net)


def test_weights_missing_file(net, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'none.pt'}: weights file not found"):
        load_state_dict_file(tmp_path / "none.pt", net)


def test_weights_good_checkpoint_roundtrip(net, tmp_path):
    p = tmp_path / "ckpt.pt"
    torch.save({"network": net.state_dict(), "epoch": 3}, p)
    other = build_network("dru", spatial_dims=2, in_channels=3, out_channels=2, features=SMALL, steps=2)
    load_state_dict_file(p, other)
    for k, v in net.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])


def test_resume_from_foreign_file_rejected(net, tmp_path):
    p = tmp_path / "checkpoint.pt"
    torch.save(net.state_dict(), p)  # a weights file, not a training checkpoint
    handler = ResumableCheckpoint(p, net, torch.optim.SGD(net.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=rf"{p}: not a monai_rurnet training checkpoint"):
        handler.load(engine=None)


def test_every_torch_load_in_package_is_weights_only():
    """Static check: each ``torch.load(...)`` call in the package passes ``weights_only=True``."""
    bad = []
    for path in (ROOT / "monai_rurnet").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, f"torch.load without weights_only=True: {bad}"
