"""benchmarks/cv_drive.py: folds, training commands, resumption, scoring and aggregation, without DRIVE data."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser
from monai.networks.nets import BasicUNet
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cv_drive  # noqa: E402
import robustness_drive  # noqa: E402
from robustness_drive import CONDITIONS  # noqa: E402

from monai_rurnet.networks import RecurrentUNet  # noqa: E402
from monai_rurnet.transforms import FOVRescaler  # noqa: E402

SMALL = (4, 8, 16, 32, 64)


def _arg(cmd: list[str], flag: str):
    """The value after ``flag`` in ``cmd``, parsed as the bundle's command line (python-fire) parses it."""
    assert cmd.count(flag) == 1, cmd
    return DefaultParseValue(cmd[cmd.index(flag) + 1])


def test_folds_are_disjoint_cover_all_ids_and_hold_no_neighbours():
    vals = [cv_drive.fold_ids(k)[1] for k in range(cv_drive.N_FOLDS)]
    assert [len(v) for v in vals] == [4] * 5
    assert sorted(i for v in vals for i in v) == list(range(21, 41))
    for k, v in enumerate(vals):
        train, val = cv_drive.fold_ids(k)
        assert val == v and sorted(train + val) == list(range(21, 41)) and len(train) == 16
        assert all(b - a > 1 for a, b in zip(v, v[1:]))
    assert vals[0] == [21, 26, 31, 36] and vals[4] == [25, 30, 35, 40]
    with pytest.raises(ValueError, match="0..4"):
        cv_drive.fold_ids(5)


@pytest.mark.parametrize("recipe", sorted(cv_drive.RECIPES))
def test_train_command_builds_the_recipe_network_with_the_fold_ids(recipe, tmp_path):
    cmd = cv_drive.train_command(recipe, 2, tmp_path / "f2", Path("/data/DRIVE"), {"cldice_weight": "0.3"})
    assert cmd[1:4] == ["-m", "monai.bundle", "run"]
    files = _arg(cmd, "--config_file")
    assert all((ROOT / f).is_file() for f in files)
    assert _arg(cmd, "--val_ids") == [23, 28, 33, 38]
    assert _arg(cmd, "--train_ids") == [i for i in range(21, 41) if i not in (23, 28, 33, 38)]
    assert _arg(cmd, "--ckpt_dir") == str(tmp_path / "f2") and _arg(cmd, "--dataset_dir") == "/data/DRIVE"
    assert _arg(cmd, "--cldice_weight") == 0.3
    # the network the bundle builds from these files and overrides
    parser = ConfigParser()
    parser.read_config([str(ROOT / f) for f in files])
    flags = [a for a in cmd if a.startswith("--network_def")]
    parser.update({f[2:]: _arg(cmd, f) for f in flags})
    net = parser.get_parsed_content("network_def")
    if recipe == "basicunet":
        assert isinstance(net, BasicUNet) and not hasattr(net, "return_all_steps")
    else:
        # U-Net-G's network_def replaces train.json's, return_all_steps included: one step, one output
        assert isinstance(net, RecurrentUNet) and net.return_all_steps == (recipe != "unetg")
        expected = {"dru4": ("dru", 4), "sru0": ("sru", 0), "unetg": ("none", 4)}[recipe]
        assert (net.cell_name, net.level) == expected


def test_fold_field_in_an_override_becomes_the_fold_number(tmp_path):
    over = {"init_weights": "runs/init/fold{fold}.pt", "cldice_weight": "0.3"}
    for fold in (0, 3):
        cmd = cv_drive.train_command("dru4", fold, tmp_path, Path("/data/DRIVE"), over)
        assert _arg(cmd, "--init_weights") == f"runs/init/fold{fold}.pt"
        assert _arg(cmd, "--cldice_weight") == 0.3
    # one run folder for all folds: the name keeps the field, not a fold number
    assert (
        cv_drive.fold_dir(tmp_path, "dru4", over, 3).parent
        == cv_drive.fold_dir(tmp_path, "dru4", over, 0).parent
    )


def test_user_overrides_win_and_only_network_ones_reach_inference():
    over = cv_drive.recipe_overrides("sru0", {"network_def#level": "2", "max_epochs": "10"})
    assert over == {"network_def#cell": "sru", "network_def#level": "2", "max_epochs": "10"}
    assert cv_drive.inference_overrides(over) == {"network_def#cell": "sru", "network_def#level": 2}
    with pytest.raises(KeyError, match="available"):
        cv_drive.recipe_overrides("unet", {})


def test_parse_overrides_and_run_names():
    assert cv_drive.parse_overrides(["cldice_weight=0.3", "--aug_zoom_range=[0.8, 1.2]"]) == {
        "cldice_weight": "0.3",
        "aug_zoom_range": "[0.8, 1.2]",
    }
    with pytest.raises(ValueError, match="cldice_weight"):
        cv_drive.parse_overrides(["cldice_weight"])
    with pytest.raises(ValueError, match="val_ids is set by this script"):
        cv_drive.parse_overrides(["val_ids=[21]"])
    assert cv_drive.run_name("dru4", {}) == "dru4"
    assert cv_drive.run_name("dru4", {"cldice_weight": "0.3"}) == "dru4+cldice_weight=0.3"
    odd = [cv_drive.run_name("dru4", {"network_def#norm": v}) for v in ("batch", "instance")]
    assert odd[0] != odd[1] and all("#" not in n and "/" not in n for n in odd)


def _fake_result(fold: int, f1: float) -> dict:
    return {
        "fold": fold,
        "f1": f1,
        "auc": 0.97 + f1 / 100,
        "robustness": f1 - 0.1,
        "train_s": 60.0 * fold,
        "params": 7,
    }


def test_summarise_means_sample_std_and_range():
    f1 = [0.80, 0.82, 0.81, 0.83, 0.79]
    s = cv_drive.summarise([_fake_result(k, v) for k, v in reversed(list(enumerate(f1)))])
    assert s["folds"] == [0, 1, 2, 3, 4] and s["params"] == 7
    assert s["f1"]["mean"] == pytest.approx(0.81) and s["f1"]["std"] == pytest.approx(statistics.stdev(f1))
    assert (s["f1"]["min"], s["f1"]["max"]) == (0.79, 0.83)
    assert s["robustness"]["mean"] == pytest.approx(0.71) and s["train_s"]["mean"] == pytest.approx(120.0)
    one = cv_drive.summarise([_fake_result(3, 0.8)])
    assert math.isnan(one["f1"]["std"])
    with pytest.raises(ValueError):
        cv_drive.summarise([])


def _never(*args):
    raise AssertionError(f"called with {args}")


def test_finished_fold_is_skipped_and_report_tables_it(tmp_path):
    calls = []

    def train(cmd, out, threads):
        calls.append(("train", out))
        return 12.5

    def evaluate(model, overrides, data, val):
        calls.append(("evaluate", model))
        return {"f1": 0.8, "auc": 0.97, "robustness": 0.7, "params": 7}

    over = {"cldice_weight": "0.3"}
    first = cv_drive.run_fold("dru4", 1, tmp_path, tmp_path, over, train=train, evaluate=evaluate)
    out = tmp_path / "dru4+cldice_weight=0.3" / "fold1"
    assert calls == [("train", out), ("evaluate", out / "model.pt")]
    assert (
        first["val_ids"] == [22, 27, 32, 37]
        and first["train_s"] == 12.5
        and "--cldice_weight" in first["command"]
    )
    assert json.loads((out / "result.json").read_text()) == first
    again = cv_drive.run_fold("dru4", 1, tmp_path, tmp_path, over, train=_never, evaluate=_never)
    assert again == first and len(calls) == 2
    cv_drive.run_fold(
        "dru4", 3, tmp_path, tmp_path, over, train=train, evaluate=lambda *a: {**evaluate(*a), "f1": 0.9}
    )
    text = cv_drive.report([out.parent], tmp_path, repeats=0, threads=1)
    row = next(line for line in text.splitlines() if line.startswith("| dru4"))
    assert "`cldice_weight=0.3`" in row and "1,3" in row and "0.8500 ± 0.0707 (0.8000..0.9000)" in row


def test_train_fold_keeps_time_across_failures_and_does_not_rerun_when_done(tmp_path):
    out = tmp_path / "fold0"
    fail = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match="train.log"):
        cv_drive.train_fold(fail, out, threads=1)
    spent = json.loads((out / "train_time.json").read_text())["train_s"]
    assert spent > 0 and "boom" in (out / "train.log").read_text() and not (out / "trained.json").exists()
    with pytest.raises(RuntimeError, match="no model.pt"):
        cv_drive.train_fold([sys.executable, "-c", "pass"], out, threads=1)
    ok = [sys.executable, "-c", f"open({str(out / 'model.pt')!r}, 'w')"]
    total = cv_drive.train_fold(ok, out, threads=1)
    assert total > spent and json.loads((out / "trained.json").read_text())["train_s"] == total
    assert "OMP_NUM_THREADS=1" in (out / "command.txt").read_text()
    assert cv_drive.train_fold(fail, out, threads=1) == total  # finished: not run again


def _fake_drive(root: Path, ids: list[int], size: int = 96) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    fov = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2 - 4) ** 2).astype(np.uint8) * 255
    for sub in ("images", "1st_manual", "mask"):
        (root / "training" / sub).mkdir(parents=True)
    for i in ids:
        vessels = ((xx + i) % 12 < 2).astype(np.uint8) * 255 & fov
        img = np.stack([fov * 0.8, fov * 0.4 - vessels * 0.2, fov * 0.2], -1) + rng.integers(
            0, 20, (size, size, 3)
        )
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / "training" / "images" / f"{i}_training.tif"
        )
        Image.fromarray(vessels).save(root / "training" / "1st_manual" / f"{i}_manual1.gif")
        Image.fromarray(fov).save(root / "training" / "mask" / f"{i}_training_mask.gif")


def test_evaluate_fold_scores_every_condition_through_the_bundle_runner(tmp_path, monkeypatch):
    _fake_drive(tmp_path, [21])
    # the bundle's FOV rescaling, to this fake camera's FOV (88 px) instead of DRIVE's 539 px: a small, fast test
    monkeypatch.setattr(robustness_drive, "FOVRescaler", lambda: FOVRescaler(88.0))
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    net = RecurrentUNet(2, 3, 2, features=SMALL, cell="sru", level=0)
    torch.save(net.state_dict(), model)
    over = cv_drive.recipe_overrides("sru0", {"network_def#features": str(list(SMALL)), "max_epochs": "3"})
    r = cv_drive.evaluate_fold(model, over, tmp_path, [21])
    assert set(r["conditions"]) == set(CONDITIONS)
    assert (
        r["f1"] == r["conditions"]["DRIVE as is"]["f1"] and r["auc"] == r["conditions"]["DRIVE as is"]["auc"]
    )
    shifted = [m["f1"] for c, m in r["conditions"].items() if c != "DRIVE as is"]
    assert len(shifted) == 7 and r["robustness"] == pytest.approx(statistics.fmean(shifted))
    assert r["params"] == sum(p.numel() for p in net.parameters()) and 0 <= r["f1"] <= 1


def test_main_refuses_missing_recipe_and_data(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cv_drive.main(["--data", str(tmp_path)])
    with pytest.raises(SystemExit):
        cv_drive.main(["--recipe", "dru4", "--data", str(tmp_path / "nope")])
    assert "not a DRIVE folder" in capsys.readouterr().err


def test_main_trains_scores_reports_and_resumes(tmp_path, monkeypatch):
    _fake_drive(tmp_path / "DRIVE", [21])
    trained = []

    def train(cmd, out, threads):
        trained.append((out.parent.name, out.name, _arg(cmd, "--max_epochs"), _arg(cmd, "--val_interval")))
        if "basicunet" in str(out) and out.name == "fold1":
            raise RuntimeError(f"training of {out} failed")
        return 3.0

    devices = set()

    def evaluate(model, overrides, data, val, device):
        devices.add(device)
        return {"f1": 0.8 + val[0] / 1000, "auc": 0.97, "robustness": 0.7, "params": 7}

    monkeypatch.setattr(cv_drive, "train_fold", train)
    monkeypatch.setattr(cv_drive, "evaluate_fold", evaluate)
    args = ["--recipe", "dru4", "basicunet", "--folds", "0", "1", "--epochs", "2", "--repeats", "0"]
    args += [
        "--device",
        "meta",
        "--data",
        str(tmp_path / "DRIVE"),
        "--work",
        str(tmp_path / "cv"),
        "--out",
        str(tmp_path / "cv.md"),
    ]
    assert cv_drive.main([*args, "--jobs", "2"]) == 1  # one fold failed, the others are done
    names = {"dru4+max_epochs=2+val_interval=2", "basicunet+max_epochs=2+val_interval=2"}
    assert {t[0] for t in trained} == names and {t[2:] for t in trained} == {(2, 2)}
    table = (tmp_path / "cv.md").read_text()
    assert "| dru4 " in table and "0,1" in table and "| basicunet " in table
    assert devices == {"meta"}  # --device reaches the scoring
    trained.clear()
    assert cv_drive.main(args) == 1  # finished folds skipped, the failed one retried
    assert trained == [("basicunet+max_epochs=2+val_interval=2", "fold1", 2, 2)]
