"""MONAI's standard bundle properties (what MONAI Label, MONAI Deploy and federated learning drive bundles by):
every inference config passes ``check_properties`` for ``"inference"``, every merged train config for ``"train"``;
``network_def`` is one ``_target_`` dict per bundle, read by inference and training alike, overridable per key."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

from monai_rurnet.networks import RecurrentUNet

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ["retina_drive", "massroads", "handseg"]


def _train_files(bundle: str) -> list[str]:
    b = ROOT / "bundles" / bundle / "configs"
    return [str(b / "inference.json"), str(ROOT / "configs" / "train_base.json"), str(b / "train.json")]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_properties(bundle):
    wf = ConfigWorkflow(
        config_file=str(ROOT / "bundles" / bundle / "configs" / "inference.json"),
        workflow_type="inference",
        bundle_root=str(ROOT / "bundles" / bundle),
    )
    wf.initialize()
    assert wf.check_properties() == []
    assert [d["image"] for d in wf.dataset.data]  # the shipped samples
    assert wf.parser["network_def"]["_target_"] == "monai_rurnet.networks.RecurrentUNet"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_train_properties_and_one_network_def(bundle, tmp_path):
    fake = [{"image": "x.png", "label": "x.png", "mask": "x.png"}]  # never read: nothing is cached
    lazy = {"train#dataset#cache_rate": 0, "validate#dataset#cache_rate": 0}
    wf = ConfigWorkflow(
        config_file=_train_files(bundle),
        workflow_type="train",
        bundle_root=str(ROOT / "bundles" / bundle),
        train_datalist=fake,
        val_datalist=fake,
        output_dir=str(tmp_path),  # TensorBoard logs; the checkpoints' default folder is checked below
        **lazy,
        **{"network_def#steps": 2},
    )
    wf.initialize()
    assert wf.check_properties() == []
    net = wf.parser.get_parsed_content("network_def")
    assert isinstance(net, RecurrentUNet) and net.steps == 2 and net.return_all_steps  # opt-in for training
    inference = ConfigWorkflow(
        config_file=_train_files(bundle)[0],
        workflow_type="inference",
        bundle_root=str(ROOT / "bundles" / bundle),
    )
    assert not inference.parser.get_parsed_content("network_def").return_all_steps
    ckpt = Path(wf.parser.get_parsed_content("ckpt_dir"))
    assert ckpt.parts[-2:] == ("runs", bundle) and ckpt != ROOT / "bundles" / bundle / "models"
    assert Path(wf.parser.get_parsed_content("model_file")).parent == ckpt
