"""`python -m monai_rurnet.evaluate`: numbers against an independent numpy computation, the bundle evaluation,
dataset naming, and every bad input (non-zero exit, the file named)."""

from __future__ import annotations

import builtins
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from scipy import ndimage, stats

from monai_rurnet.errors import root_cause
from monai_rurnet.evaluate import EvaluationError, evaluate_folders, main

ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _float_tif(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype="float32"
    ) as dst:
        dst.write(arr.astype(np.float32), 1)
    return path


def _random_set(root: Path, n: int = 3, shape=(48, 60), seed: int = 0, as_float: bool = False):
    """Random probability maps (correlated with random labels) and masks; returns the arrays used."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        lab = ndimage.binary_dilation(rng.random(shape) > 0.93, iterations=1)
        prob = np.clip(0.35 * lab + rng.random(shape) * 0.75, 0, 1)
        if as_float:
            _float_tif(root / "pred" / f"c{i}_prob.tif", prob)
        else:
            prob = np.round(prob * 255).astype(np.uint8)
            _png(root / "pred" / f"c{i}_prob.png", prob)
            prob = prob / 255.0
        mask = np.zeros(shape, bool)
        mask[3:-4, 5:-2] = True
        _png(root / "label" / f"c{i}.png", lab.astype(np.uint8) * 255)
        _png(root / "mask" / f"c{i}.png", mask.astype(np.uint8) * 255)
        cases.append((prob.astype(np.float64), lab, mask))
    return cases


def _reference(cases, threshold=0.5, rho=3):
    """Independent numpy computation of every metric, pooled over the cases (inside the masks)."""
    p = np.concatenate([c[0][c[2]] for c in cases])
    y = np.concatenate([c[1][c[2]] for c in cases])
    pred = p >= threshold
    tp, fp = np.sum(pred & y), np.sum(pred & ~y)
    fn, tn = np.sum(~pred & y), np.sum(~pred & ~y)
    iou = [tn / (tn + fn + fp), tp / (tp + fp + fn)]
    rec = [tn / (tn + fp), tp / (tp + fn)]
    prec = [tn / (tn + fn), tp / (tp + fp)]
    f1 = [2 * tn / (2 * tn + fn + fp), 2 * tp / (2 * tp + fp + fn)]
    ranks = stats.rankdata(p)
    n_pos, n_neg = y.sum(), (~y).sum()
    auc = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    disk = np.hypot(*np.mgrid[-rho : rho + 1, -rho : rho + 1]) <= rho
    ok_p = n_p = ok_g = n_g = 0
    for prob, lab, mask in cases:
        pm, gm = (prob >= threshold) & mask, lab & mask
        ok_p += np.sum(pm & ndimage.binary_dilation(gm, disk))
        ok_g += np.sum(gm & ndimage.binary_dilation(pm, disk))
        n_p, n_g = n_p + pm.sum(), n_g + gm.sum()
    return {
        "mIoU": np.mean(iou),
        "mRec": np.mean(rec),
        "mPrec": np.mean(prec),
        "mF1": np.mean(f1),
        "vessel_F1": f1[1],
        "Se": rec[1],
        "Sp": rec[0],
        "Acc": (tp + tn) / (tp + tn + fp + fn),
        "vessel_AUC": auc,
        "relaxed_precision": ok_p / n_p,
        "relaxed_recall": ok_g / n_g,
    }


@pytest.mark.parametrize("as_float", [False, True])
def test_metrics_match_an_independent_numpy_computation(tmp_path, as_float):
    cases = _random_set(tmp_path, as_float=as_float)
    res = evaluate_folders(
        tmp_path / "pred", tmp_path / "label", tmp_path / "mask", metrics="paper,vessel,pr,relaxed"
    )
    ref = _reference(cases)
    assert res["n_images"] == 3 and len(res["per_image"]) == 3
    for k, v in ref.items():
        tol = 1e-3 if k == "vessel_AUC" else 1e-6
        assert res[k] == pytest.approx(v, abs=tol), k
    for row, case in zip(res["per_image"], cases):
        one = _reference([case])
        assert row["vessel_F1"] == pytest.approx(one["vessel_F1"], abs=1e-6)
        assert row["mIoU"] == pytest.approx(one["mIoU"], abs=1e-6)
    # without a mask every metric covers the whole image
    whole = evaluate_folders(tmp_path / "pred", tmp_path / "label", metrics="paper")
    full = [(p, y, np.ones_like(m)) for p, y, m in cases]
    assert whole["mIoU"] == pytest.approx(_reference(full)["mIoU"], abs=1e-6)
    assert set(whole) == {"mIoU", "mRec", "mPrec", "mF1", "n_images", "per_image"}


def test_pr_breakeven_matches_numpy(tmp_path):
    cases = _random_set(tmp_path, seed=3, as_float=True)
    res = evaluate_folders(tmp_path / "pred", tmp_path / "label", tmp_path / "mask", metrics="pr")
    p = np.concatenate([c[0][c[2]] for c in cases])
    y = np.concatenate([c[1][c[2]] for c in cases])
    bins = np.minimum((p * 100).astype(int), 99)
    prec, rec = [], []
    for k in range(100):
        pred = bins >= k
        tp, fp, fn = np.sum(pred & y), np.sum(pred & ~y), np.sum(~pred & y)
        prec.append(tp / (tp + fp) if tp + fp else np.nan)
        rec.append(tp / (tp + fn))
    d = np.array(prec) - np.array(rec)
    k = next(i for i in range(99) if d[i] * d[i + 1] < 0)
    s = d[k] / (d[k] - d[k + 1])
    assert res["PR_breakeven_road"] == pytest.approx(prec[k] + s * (prec[k + 1] - prec[k]), abs=1e-6)
    assert 0 < res["PR_breakeven"] <= 1


def test_cli_outputs_json_csv_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _random_set(tmp_path)
    out, csv_path, plot = tmp_path / "m.json", tmp_path / "m.csv", tmp_path / "pr.png"
    argv = [
        "--pred",
        str(tmp_path / "pred"),
        "--label",
        str(tmp_path / "label"),
        "--mask",
        str(tmp_path / "mask"),
    ]
    rc = main(
        [*argv, "--metrics", "vessel,pr", "--out", str(out), "--csv", str(csv_path), "--plot", str(plot)]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert set(printed) == {
        "vessel_F1",
        "vessel_AUC",
        "Se",
        "Sp",
        "Acc",
        "PR_breakeven",
        "PR_breakeven_road",
        "n_images",
        "per_image",
    }
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("name,pred,label,mask,vessel_F1")
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 200  # PR and ROC side by side


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    _random_set(tmp_path, n=1)
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    rc = main(
        [
            "--pred",
            str(tmp_path / "pred"),
            "--label",
            str(tmp_path / "label"),
            "--plot",
            str(tmp_path / "p.png"),
        ]
    )
    assert rc != 0 and "pip install" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_labels_01_and_0255_agree(tmp_path):
    _random_set(tmp_path, n=2)
    a = evaluate_folders(tmp_path / "pred", tmp_path / "label", metrics="paper,vessel")
    for f in (tmp_path / "label").iterdir():
        arr = np.asarray(Image.open(f))
        _png(f, (arr > 0).astype(np.uint8))
    b = evaluate_folders(tmp_path / "pred", tmp_path / "label", metrics="paper,vessel")
    assert a["vessel_F1"] == b["vessel_F1"] and a["mIoU"] == b["mIoU"]


def test_prob_wins_over_seg_and_overlays_are_not_predictions(tmp_path, caplog):
    _random_set(tmp_path, n=2)
    for i in range(2):
        _png(tmp_path / "pred" / f"c{i}_seg.png", np.zeros((48, 60), np.uint8))
        _png(tmp_path / "pred" / f"c{i}_overlay.png", np.zeros((48, 60, 3), np.uint8))
    res = evaluate_folders(tmp_path / "pred", tmp_path / "label", metrics="vessel")
    assert [Path(r["pred"]).name for r in res["per_image"]] == ["c0_prob.png", "c1_prob.png"]
    assert [r["name"] for r in res["per_image"]] == ["c0", "c1"]
    # superseded files are reported, not dropped silently
    assert "2 prediction file(s) not scored" in caplog.text
    # a _seg-only folder is scored from the masks
    for i in range(2):
        (tmp_path / "pred" / f"c{i}_prob.png").unlink()
    res = evaluate_folders(tmp_path / "pred", tmp_path / "label", metrics="vessel")
    assert res["n_images"] == 2 and res["vessel_F1"] == 0.0


def _gray(path: Path, value: int = 255, shape=(20, 24)) -> None:
    arr = np.zeros(shape, np.uint8)
    arr[5:15, 6:18] = value
    _png(path, arr)


@pytest.mark.parametrize(
    "dataset, preds, labels, masks",
    [
        (
            "drive",
            ["01_test_prob.png", "02_test_seg.png", "02_test_overlay.png"],
            ["01_manual1.gif", "02_manual1.gif"],
            ["01_test_mask.gif", "02_test_mask.gif"],
        ),
        (
            "chase",
            ["Image_01L_prob.png", "Image_11R.png"],
            ["Image_01L_1stHO.png", "Image_11R_1stHO.png"],
            None,
        ),
        (
            "stare",
            ["im0001_prob.png", "im0082.ppm"],
            ["im0001.ah.ppm", "im0082.ah.ppm"],
            ["im0001.png", "im0082.png"],
        ),
        (
            "massroads",
            ["10828720_15_prob.tif", "23429080_15_seg.tif"],
            ["10828720_15.tif", "23429080_15.tif"],
            None,
        ),
    ],
)
def test_dataset_naming(tmp_path, dataset, preds, labels, masks):
    for name in preds:
        _gray(tmp_path / "pred" / name, 200)
    for name in labels:
        _gray(tmp_path / "label" / name)
    for name in masks or []:
        _gray(tmp_path / "mask" / name, 255, (20, 24))
    mask_dir = tmp_path / "mask" if masks else None
    res = evaluate_folders(tmp_path / "pred", tmp_path / "label", mask_dir, dataset=dataset, metrics="paper")
    assert res["n_images"] == 2
    assert res["mIoU"] == pytest.approx(1.0)
    got = {(Path(r["pred"]).name, Path(r["label"]).name) for r in res["per_image"]}
    assert got == {(p, lab) for p, lab in zip([p for p in preds if "overlay" not in p], labels)}
    if masks:
        assert {Path(r["mask"]).name for r in res["per_image"]} == set(masks)


def test_dataset_defaults_pick_the_fields_metrics(tmp_path):
    _gray(tmp_path / "pred" / "t1_prob.tif", 200)
    _gray(tmp_path / "label" / "t1.tif")
    res = evaluate_folders(tmp_path / "pred", tmp_path / "label", dataset="massroads")
    assert {"mIoU", "PR_breakeven", "relaxed_precision"} <= set(res) and "vessel_F1" not in res


# --- bad inputs: a non-zero exit and the file(s) named ------------------------------------------------


def _run(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_prediction_without_label(tmp_path, capsys):
    _random_set(tmp_path, n=2)
    (tmp_path / "label" / "c1.png").unlink()
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "c1_prob.png" in err and "without a label" in err
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label", "--allow_missing")
    assert rc == 0 and "c1_prob.png" in err  # skipped with a warning that lists it


def test_label_without_prediction(tmp_path, capsys):
    _random_set(tmp_path, n=2)
    (tmp_path / "pred" / "c0_prob.png").unlink()
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "c0.png" in err and "without a prediction" in err


def test_missing_mask(tmp_path, capsys):
    _random_set(tmp_path, n=2)
    (tmp_path / "mask" / "c1.png").unlink()
    rc, err = _run(
        capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label", "--mask", tmp_path / "mask"
    )
    assert rc != 0 and "c1_prob.png" in err and "without a mask" in err


def test_size_mismatch_names_both_files(tmp_path, capsys):
    _random_set(tmp_path, n=1)
    _png(tmp_path / "label" / "c0.png", np.zeros((10, 12), np.uint8))
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "c0_prob.png" in err and "c0.png" in err and "size mismatch" in err
    _random_set(tmp_path, n=1)
    _png(tmp_path / "mask" / "c0.png", np.ones((10, 12), np.uint8))
    rc, err = _run(
        capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label", "--mask", tmp_path / "mask"
    )
    assert rc != 0 and "mask" in err and str(tmp_path / "mask" / "c0.png") in err


def test_nan_prediction(tmp_path, capsys):
    _random_set(tmp_path, n=1)
    (tmp_path / "pred" / "c0_prob.png").unlink()
    arr = np.full((48, 60), 0.3, np.float32)
    arr[4:9, 4:9] = np.nan
    _float_tif(tmp_path / "pred" / "c0_prob.tif", arr)
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "c0_prob.tif" in err and "NaN" in err


def test_float_prediction_out_of_range(tmp_path, capsys):
    _random_set(tmp_path, n=1)
    (tmp_path / "pred" / "c0_prob.png").unlink()
    _float_tif(tmp_path / "pred" / "c0_prob.tif", np.full((48, 60), 200.0, np.float32))
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "c0_prob.tif" in err and "[0, 1]" in err


def test_empty_mask(tmp_path, capsys):
    _random_set(tmp_path, n=2)
    _png(tmp_path / "mask" / "c1.png", np.zeros((48, 60), np.uint8))
    rc, err = _run(
        capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label", "--mask", tmp_path / "mask"
    )
    assert rc != 0 and "c1.png" in err and "empty" in err


def test_empty_set(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    (tmp_path / "label").mkdir()
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "nothing to score" in err
    rc, err = _run(capsys, "--pred", tmp_path / "nope", "--label", tmp_path / "label")
    assert rc != 0 and "nope" in err


def test_non_binary_label_fails_unless_a_threshold_is_given(tmp_path, capsys):
    cases = _random_set(tmp_path, n=1)
    grey = (cases[0][1] * 200 + 30).astype(np.uint8)  # values 30 and 230
    grey[0, :5] = 100  # a third value
    _png(tmp_path / "label" / "c0.png", grey)
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label", "--metrics", "paper")
    assert rc != 0 and "c0.png" in err and "not binary" in err
    rc, err = _run(
        capsys,
        "--pred",
        tmp_path / "pred",
        "--label",
        tmp_path / "label",
        "--metrics",
        "paper",
        "--label_threshold",
        128,
    )
    assert rc == 0


def test_two_label_files_for_one_case(tmp_path, capsys):
    _random_set(tmp_path, n=1)
    _png(tmp_path / "label" / "c0.gif", np.zeros((48, 60), np.uint8))
    rc, err = _run(capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label")
    assert rc != 0 and "c0.gif" in err and "c0.png" in err


def test_unknown_metric_group(tmp_path, capsys):
    _random_set(tmp_path, n=1)
    rc, err = _run(
        capsys, "--pred", tmp_path / "pred", "--label", tmp_path / "label", "--metrics", "paper,dice"
    )
    assert rc != 0 and "dice" in err
    with pytest.raises(EvaluationError):
        evaluate_folders(tmp_path / "pred", tmp_path / "label", metrics="")


# --- the bundle evaluation: same numbers, and its label fixes --------------------------------------------


def _fake_drive(
    root: Path, ids=(37, 38), size=(96, 112), label_scale: int = 255, empty_mask: bool = False
) -> Path:
    from monai_rurnet.data import synthetic_vessel_image

    for i in ids:
        img, lab, fov = synthetic_vessel_image(size, seed=i)
        _png(root / "training" / "images" / f"{i}_training.tif", img.transpose(1, 2, 0))
        _png(root / "training" / "1st_manual" / f"{i}_manual1.gif", lab.astype(np.uint8) * label_scale)
        fov = np.zeros_like(fov) if empty_mask else fov
        _png(root / "training" / "mask" / f"{i}_training_mask.gif", fov.astype(np.uint8) * 255)
    return root


def _bundle_evaluation(dataset_dir: Path, out_dir: Path, pred_dir: Path | None = None) -> dict:
    """Run the retina bundle's evaluation on ``dataset_dir`` (ids 37, 38); save its probabilities as float
    TIFFs in ``pred_dir``; return its metrics JSON."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    bundle = ROOT / "bundles" / "retina_drive"
    parser = ConfigParser()
    parser.read_config(
        [
            str(bundle / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(bundle / "configs" / "train.json"),
            str(ROOT / "configs" / "evaluate_base.json"),
            str(bundle / "configs" / "evaluate.json"),
        ]
    )
    parser.update(
        {
            "bundle_root": str(bundle),
            "dataset_dir": str(dataset_dir),
            "val_ids": [37, 38],
            "eval_output_dir": str(out_dir),
            "show_progress": False,
            "device": torch.device("cpu"),
        }
    )
    evaluator = parser.get_parsed_content("validate#evaluator")
    if pred_dir is not None:

        def save(engine):
            for out in engine.state.output:
                name = Path(out["image"].meta["filename_or_obj"]).stem
                prob = out["pred"][1].detach().cpu().numpy().T  # (W, H) in MONAI's PIL layout -> (H, W)
                _float_tif(pred_dir / f"{name}_prob.tif", prob)

        evaluator.add_event_handler(Events.ITERATION_COMPLETED, save)
    parser.get_parsed_content("initialize")  # seed and the shipped weights
    evaluator.run()
    return json.loads((out_dir / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_cli_reproduces_the_bundle_evaluation(tmp_path):
    data = _fake_drive(tmp_path / "DRIVE")
    preds = tmp_path / "preds"
    bundle = _bundle_evaluation(data, tmp_path / "eval", preds)
    inside = evaluate_folders(
        preds,
        data / "training" / "1st_manual",
        data / "training" / "mask",
        dataset="drive",
        metrics="vessel",
    )
    assert inside["n_images"] == 2
    for ours, theirs in (
        ("vessel_F1", "f1"),
        ("vessel_AUC", "auc"),
        ("Se", "sensitivity"),
        ("Sp", "specificity"),
    ):
        assert inside[ours] == pytest.approx(bundle[theirs], abs=1e-4), ours
    whole = evaluate_folders(preds, data / "training" / "1st_manual", dataset="drive", metrics="paper")
    for k in ("mIoU", "mRec", "mPrec", "mF1"):
        assert whole[k] == pytest.approx(bundle[k], abs=1e-4), k


@pytest.mark.slow
def test_bundle_evaluation_reads_01_labels_and_refuses_bad_ones(tmp_path):
    ref = _bundle_evaluation(_fake_drive(tmp_path / "a"), tmp_path / "ea")
    ones = _bundle_evaluation(_fake_drive(tmp_path / "b", label_scale=1), tmp_path / "eb")
    assert ones["f1"] == pytest.approx(ref["f1"], abs=1e-9) and ones["mIoU"] == pytest.approx(
        ref["mIoU"], abs=1e-9
    )
    grey = _fake_drive(tmp_path / "c")
    lab = tmp_path / "c" / "training" / "1st_manual" / "38_manual1.gif"
    arr = np.asarray(Image.open(lab).convert("L")).copy()
    arr[:4, :4] = 128
    _png(lab, arr)
    with pytest.raises(Exception) as err:
        _bundle_evaluation(grey, tmp_path / "ec")
    assert re.search(r"38_manual1\.gif.*not binary", str(root_cause(err.value)))
    with pytest.raises(Exception) as err:
        _bundle_evaluation(_fake_drive(tmp_path / "d", empty_mask=True), tmp_path / "ed")
    assert re.search(r"_training_mask\.gif.*empty", str(root_cause(err.value)))
    assert not (tmp_path / "ed" / "metrics.json").exists()
