"""The bundle contract (design note section 4), checked offline for every bundle under ``bundles/``.

Metadata against the shipped MONAI schema, the model-zoo layout, ``verify_net_in_out``, and TorchScript / ONNX
export round trips through ``monai.bundle`` (with the shipped weights, or random ones while none are shipped).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, onnx_export, verify_metadata

from monai_rurnet.bundle import (
    REQUIRED_FILES,
    SCHEMA_FILE,
    SCHEMA_MD5,
    verify_metadata_offline,
    verify_net_in_out_offline,
)

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if p.is_dir() and (p / "configs").is_dir())
IDS = [p.name for p in BUNDLES]


def _configs(bundle: Path) -> tuple[Path, Path]:
    meta, inference = bundle / "configs" / "metadata.json", bundle / "configs" / "inference.json"
    if not inference.is_file():
        pytest.skip(f"{bundle.name} has no configs/inference.json yet (the layout test reports it)")
    return meta, inference


def _network(bundle: Path, inference: Path) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(inference))
    parser["bundle_root"] = str(bundle)
    return parser.get_parsed_content("network_def").eval()


def _weights(bundle: Path, inference: Path, tmp_path: Path) -> Path:
    """The shipped ``models/model.pt``, or a random-init state_dict while no weights are shipped."""
    shipped = bundle / "models" / "model.pt"
    if shipped.is_file():
        return shipped
    torch.manual_seed(0)
    path = tmp_path / "random_model.pt"
    torch.save(_network(bundle, inference).state_dict(), path)
    return path


def check_onnx(
    path: Path, net: torch.nn.Module, inputs: list[torch.Tensor], atol: float, rtol: float
) -> None:
    """The ONNX file run by onnxruntime gives the network's outputs on each input (any batch and spatial size)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in inputs:
        with torch.no_grad():
            ref = net.eval()(x).numpy()
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=atol, rtol=rtol)


def test_bundles_found():
    assert {"retina_drive", "massroads"} <= set(IDS)


def test_schema_is_the_released_one():
    # meta_schema_20240725.json of MONAI-extra-test-data 0.8.1, shipped verbatim
    assert hashlib.md5(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_MD5


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_metadata_valid_offline(bundle):
    meta = bundle / "configs" / "metadata.json"
    content = verify_metadata_offline(meta)
    assert content["schema"].endswith("meta_schema_20240725.json")
    assert content["data_license"]
    fmt = content["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 3
    assert fmt["outputs"]["pred"]["num_channels"] == 2
    # MONAI's own command, pointed at the shipped schema: no download happens when the file exists
    verify_metadata(meta_file=str(meta), filepath=str(SCHEMA_FILE), hash_val=SCHEMA_MD5)


def test_invalid_metadata_is_reported(tmp_path):
    meta = json.loads((BUNDLES[0] / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["dtype"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="dtype"):
        verify_metadata_offline(bad)


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_layout(bundle):
    missing = [f for f in REQUIRED_FILES if f != "models/model.pt" and not (bundle / f).is_file()]
    assert not missing, f"{bundle.name} lacks {missing}"
    if not (bundle / "models" / "model.pt").is_file():
        pytest.skip(f"{bundle.name}: models/model.pt not shipped yet (trained weights come later)")


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_verify_net_in_out(bundle):
    _configs(bundle)
    verify_net_in_out_offline(bundle, device="cpu", n=4)  # "16*n" -> 64 x 64


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_ckpt_export_round_trip(bundle, tmp_path):
    meta, inference = _configs(bundle)
    ckpt = _weights(bundle, inference, tmp_path)
    ts_file = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(ckpt),
        meta_file=str(meta),
        config_file=str(inference),
        bundle_root=str(bundle),
    )
    extra = {"metadata.json": "", "inference.json": ""}
    ts = torch.jit.load(str(ts_file), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == json.loads(meta.read_text())["version"]
    net = _network(bundle, inference)
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    with torch.no_grad():
        for shape in [(1, 3, 64, 64), (2, 3, 48, 96)]:
            x = torch.rand(*shape)
            torch.testing.assert_close(ts(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_onnx_export_round_trip(bundle, tmp_path):
    pytest.importorskip("onnxruntime")
    meta, inference = _configs(bundle)
    ckpt = _weights(bundle, inference, tmp_path)
    onnx_file = tmp_path / "model.onnx"
    onnx_export(
        net_id="network_def",
        filepath=str(onnx_file),
        ckpt_file=str(ckpt),
        meta_file=str(meta),
        config_file=str(inference),
        bundle_root=str(bundle),
        input_shape=[1, 3, 64, 64],
        use_trace=True,
        converter_kwargs={
            "dynamo": False,
            "opset_version": 17,
            "input_names": ["image"],
            "output_names": ["pred"],
            "dynamic_axes": {"image": [0, 2, 3], "pred": [0, 2, 3]},
        },
    )
    net = _network(bundle, inference)
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    check_onnx(onnx_file, net, [torch.rand(1, 3, 64, 64), torch.rand(2, 3, 48, 96)], atol=1e-4, rtol=1e-4)
