"""handseg bundle: output size equals input size; 1-epoch training on synthetic hands; evaluation of a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import run
from PIL import Image

from monai_rurnet.data import make_synthetic_hands, synthetic_hand_image
from monai_rurnet.networks import build_network

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "handseg"
BASE = ROOT / "configs"
NET_ARGS = {"network_def#steps": 2, "network_def#features": [4, 4, 8, 8, 8]}


def test_inference_output_size_equals_input(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i, (h, w) in enumerate([(72, 100), (130, 50)]):
        img, _ = synthetic_hand_image((h, w), seed=i)
        Image.fromarray(img).save(inp / f"hand{i}.png")
    Image.fromarray(np.zeros((40, 60), np.uint8)).convert("RGB").save(inp / "gray.jpg")
    torch.manual_seed(0)
    net = build_network("dru", spatial_dims=2, in_channels=3, out_channels=2, level=4, steps=3)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    out = tmp_path / "out"
    run(
        config_file=str(BUNDLE / "configs" / "inference.json"),
        bundle_root=str(BUNDLE),
        dataset_dir=str(inp),
        output_dir=str(out),
        model_file=str(tmp_path / "model.pt"),
        image_size=[64, 64],
        progress=False,
    )
    for name, (h, w) in (("hand0", (72, 100)), ("hand1", (130, 50)), ("gray", (40, 60))):
        seg = np.asarray(Image.open(out / f"{name}_seg.png"))
        assert seg.shape == (h, w)
        assert set(np.unique(seg)) <= {0, 255}
        assert np.asarray(Image.open(out / f"{name}_prob.png")).shape == (h, w)


def test_train_synthetic_then_evaluate_folder(tmp_path, capsys):
    common = {
        "bundle_root": str(BUNDLE),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "tb"),
        "image_size": [64, 64],
        "batch_size": 2,
        **NET_ARGS,
        "show_progress": False,
    }
    train = [
        str(BUNDLE / "configs" / "inference.json"),
        str(BASE / "train_base.json"),
        str(BUNDLE / "configs" / "train.json"),
    ]
    # pairs rendered larger than the network's size and resized by the transforms, as inference resizes images
    run(
        config_file=train,
        max_epochs=1,
        num_synthetic_train=4,
        num_synthetic_val=2,
        synthetic_size=[80, 80],
        **common,
    )
    assert (tmp_path / "models" / "model.pt").is_file()
    rendered = sorted((tmp_path / "tb" / "synthetic_hands" / "train" / "images").iterdir())
    assert len(rendered) == 4 and Image.open(rendered[0]).size == (80, 80)

    # a real dataset in the nested layout of shared/data/Hands: <subset>/images + <subset>/masks
    for subset, seed in (("A", 5), ("B", 6)):
        make_synthetic_hands(tmp_path / "real" / subset, n=2, size=(48, 80), seed=seed)
    evaluate = train + [str(BASE / "evaluate_base.json"), str(BUNDLE / "configs" / "evaluate.json")]
    run(
        config_file=evaluate,
        dataset_dir=str(tmp_path / "real"),
        eval_output_dir=str(tmp_path / "eval"),
        model_file=str(tmp_path / "models" / "model.pt"),  # evaluation scores the shipped weights by default
        **common,
    )
    import json

    announced = (
        capsys.readouterr().out
    )  # the evaluation names its weights and images, and whether they are held out
    assert (
        f"Evaluating {tmp_path / 'models' / 'model.pt'} on 4 images" in announced and "held out" in announced
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert len(metrics["images"]) == 4
    assert 0.0 <= metrics["metrics"]["val_mIoU"] <= 1.0


def test_hand_dataset_option_selects_a_published_layout(tmp_path):
    from monai.bundle import ConfigParser

    for i in range(10):
        img, mask = synthetic_hand_image((24, 32), seed=i)
        for sub, arr, ext in (("images_resized", img, "jpg"), ("masks", mask * 255, "png")):
            (tmp_path / "hof" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(tmp_path / "hof" / sub / f"{i}.{ext}")
    parser = ConfigParser()
    parser.read_config(
        [
            str(BUNDLE / "configs" / "inference.json"),
            str(BASE / "train_base.json"),
            str(BUNDLE / "configs" / "train.json"),
        ]
    )
    parser.update({"bundle_root": str(BUNDLE), "dataset_dir": str(tmp_path / "hof"), "hand_dataset": "hof"})
    assert len(parser.get_parsed_content("train_datalist")) == 9
    assert len(parser.get_parsed_content("val_datalist")) == 1
    parser = ConfigParser()
    parser.read_config(
        [
            str(BUNDLE / "configs" / "inference.json"),
            str(BASE / "train_base.json"),
            str(BUNDLE / "configs" / "train.json"),
        ]
    )
    parser.update(
        {"bundle_root": str(BUNDLE), "dataset_dir": str(tmp_path / "missing"), "hand_dataset": "eyth"}
    )
    with pytest.raises(Exception) as err:  # the config parser wraps the datalist's error
        parser.get_parsed_content("train_datalist")
    assert isinstance(err.value.__cause__, FileNotFoundError) and "missing" in str(err.value.__cause__)


SAMPLE_SEEDS = {"synthetic_hand_1": 2_000_000, "synthetic_hand_2": 2_000_009}  # never used in training


def test_samples_are_generator_images():
    """The bundle's samples are ``synthetic_hand_image((256, 256), seed)`` at the seeds the docs name."""
    for stem, seed in SAMPLE_SEEDS.items():
        img, _ = synthetic_hand_image((256, 256), seed=seed)
        np.testing.assert_array_equal(np.asarray(Image.open(BUNDLE / "sample_data" / f"{stem}.png")), img)
