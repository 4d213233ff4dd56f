from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_rurnet.metrics import (
    PaperSegMetrics,
    PaperSegMetricsHandler,
    PRBreakEven,
    RelaxedPrecisionRecall,
    VesselMetrics,
    VesselMetricsHandler,
    apply_fov,
    apply_ignore,
    breakeven_point,
)


def _pair(pred, lab):
    return torch.as_tensor(pred, dtype=torch.float32)[None, None], torch.as_tensor(lab, dtype=torch.float32)[
        None, None
    ]


def test_paper_metrics_known_confusion():
    # truth: 6 fg, 10 bg; pred: tp=4, fn=2, fp=1, tn=9
    lab = np.array([1] * 6 + [0] * 10).reshape(4, 4)
    pred = np.array([1, 1, 1, 1, 0, 0] + [1] + [0] * 9, float).reshape(4, 4)
    m = PaperSegMetrics()
    m(*_pair(pred, lab))
    r = m.aggregate()
    tp, fn, fp, tn = 4, 2, 1, 9
    iou = (tp / (tp + fp + fn) + tn / (tn + fn + fp)) / 2
    assert r["mIoU"] == pytest.approx(iou)
    assert r["mRec"] == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)
    assert r["mPrec"] == pytest.approx((tp / (tp + fp) + tn / (tn + fn)) / 2)
    assert r["mF1"] == pytest.approx((2 * tp / (2 * tp + fp + fn) + 2 * tn / (2 * tn + fn + fp)) / 2)
    assert m.aggregate("mIoU") == pytest.approx(iou)
    # pooled over calls, two-channel input gives the same
    m2 = PaperSegMetrics(metric_name="mIoU")
    p2 = torch.stack([1 - torch.as_tensor(pred), torch.as_tensor(pred)])[None].float()
    m2(p2[:, :, :2], _pair(pred, lab)[1][:, :, :2])
    m2(p2[:, :, 2:], _pair(pred, lab)[1][:, :, 2:])
    assert m2.aggregate() == pytest.approx(iou)


def test_ignore_is_respected():
    lab = np.zeros((8, 8))
    lab[:4] = 1
    pred = lab.copy()
    pred[6:] = 1  # wrong, but we ignore those rows
    ignore = np.zeros((8, 8), bool)
    ignore[6:] = True
    for metric, key in (
        (PaperSegMetrics(), "mIoU"),
        (VesselMetrics(), "f1"),
        (RelaxedPrecisionRecall(rho=0), "relaxed_precision"),
    ):
        metric(*_pair(pred, apply_ignore(lab, ignore)))
        assert metric.aggregate(key) == pytest.approx(1.0), metric
    m = VesselMetrics()
    m(*_pair(pred, lab), valid=torch.as_tensor(~ignore)[None, None])
    assert m.aggregate("accuracy") == 1.0
    m = PaperSegMetrics()
    m(*_pair(pred, apply_fov(torch.as_tensor(lab), torch.as_tensor(~ignore))))
    assert m.aggregate("mF1") == pytest.approx(1.0)


def _exact_auc(scores, labels):
    from scipy.stats import rankdata

    r = rankdata(scores)
    npos = labels.sum()
    nneg = len(labels) - npos
    return (r[labels == 1].sum() - npos * (npos + 1) / 2) / (npos * nneg)


def test_auc_within_bound():
    rng = np.random.default_rng(0)
    lab = (rng.random((3, 1, 64, 64)) < 0.15).astype(np.float32)
    prob = np.clip(rng.normal(0.35 + 0.3 * lab, 0.2), 0, 1).astype(np.float32)
    m = VesselMetrics()
    for i in range(3):
        m(torch.as_tensor(prob[i : i + 1]), torch.as_tensor(lab[i : i + 1]))
    r = m.aggregate()
    exact = _exact_auc(prob.ravel(), lab.ravel())
    assert r["auc_error_bound"] < 1e-3
    assert abs(r["auc"] - exact) <= r["auc_error_bound"] + 1e-12
    # threshold metrics
    pred = prob >= 0.5
    tp, fp = (pred & (lab == 1)).sum(), (pred & (lab == 0)).sum()
    fn = (~pred & (lab == 1)).sum()
    assert r["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert r["sensitivity"] == pytest.approx(tp / (tp + fn))


def test_breakeven_perfect_and_interpolated():
    lab = np.zeros((1, 1, 10, 10), np.float32)
    lab[..., :3, :] = 1
    m = PRBreakEven()
    m(torch.as_tensor(lab * 0.9 + 0.05), torch.as_tensor(lab))
    r = m.aggregate()
    assert r["breakeven"] == pytest.approx(1.0) and r["breakeven_road"] == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    lab = (rng.random((1, 1, 64, 64)) < 0.2).astype(np.float32)
    prob = np.clip(rng.normal(0.3 + 0.3 * lab, 0.2), 0, 1).astype(np.float32)
    m = PRBreakEven()
    m(torch.as_tensor(prob), torch.as_tensor(lab))
    r = m.aggregate()
    assert 0.5 < r["breakeven"] < 1.0 and 0.0 < r["breakeven_road"] < 1.0
    assert 0.0 < r["threshold"] < 1.0


def test_relaxed_pr_shifted_line():
    lab = np.zeros((32, 32))
    lab[10:12, :] = 1
    pred = np.roll(lab, 2, axis=0)
    relaxed = RelaxedPrecisionRecall(rho=3)
    relaxed(*_pair(pred, lab))
    r = relaxed.aggregate()
    assert r["relaxed_precision"] == 1.0 and r["relaxed_recall"] == 1.0
    strict = PaperSegMetrics()
    strict(*_pair(pred, lab))
    assert strict.aggregate()["Prec_per_class"][1] < 1.0
    far = RelaxedPrecisionRecall(rho=1)
    far(*_pair(pred, lab))
    assert far.aggregate("relaxed_precision") < 1.0


def test_handlers_in_evaluator():
    from ignite.engine import Engine

    rng = np.random.default_rng(2)
    lab = (rng.random((4, 1, 16, 16)) < 0.3).astype(np.float32)
    batches = [(torch.as_tensor(lab[i : i + 2]), torch.as_tensor(lab[i : i + 2])) for i in (0, 2)]
    engine = Engine(lambda e, b: b)
    PaperSegMetricsHandler(metric_name="mIoU").attach(engine, "mIoU")
    VesselMetricsHandler(metric_name=None).attach(engine, "vessel")
    engine.run(batches)
    assert engine.state.metrics["mIoU"] == pytest.approx(1.0)
    assert engine.state.metrics["vessel"]["f1"] == pytest.approx(1.0)


def test_decollated_lists_like_evaluator():
    from ignite.engine import Engine
    from monai.handlers import from_engine

    lab = torch.zeros(1, 16, 16)
    lab[:, 4:8] = 1
    pred = torch.cat([1 - lab, lab])  # 2-channel softmax
    batch = [{"pred": pred, "label": apply_ignore(lab, torch.zeros_like(lab, dtype=torch.bool))}] * 2
    engine = Engine(lambda e, b: b)
    from monai_rurnet.metrics import PRBreakEvenHandler, RelaxedPRHandler

    PRBreakEvenHandler(output_transform=from_engine(["pred", "label"])).attach(engine, "be")
    RelaxedPRHandler(output_transform=from_engine(["pred", "label"])).attach(engine, "rf1")
    engine.run([batch])
    assert engine.state.metrics["be"] == pytest.approx(1.0)
    assert engine.state.metrics["rf1"] == pytest.approx(1.0)


def test_breakeven_point_interpolates_the_crossing():
    thr = np.array([0.25, 0.5, 0.75])
    value, t = breakeven_point(np.array([0.4, 0.6, 0.8]), np.array([0.8, 0.5, 0.3]), thr)
    # p - r = -0.4, 0.1: crosses 4/5 of the way from 0.25 to 0.5
    assert value == pytest.approx(0.4 + 0.8 * 0.2) and t == pytest.approx(0.25 + 0.8 * 0.25)
    assert breakeven_point(np.array([0.5, np.nan]), np.array([0.5, 0.1]), thr[:2]) == (0.5, 0.25)
    value, t = breakeven_point(
        np.array([0.2, 0.3]), np.array([0.6, 0.4]), thr[:2]
    )  # no crossing: closest point
    assert value == pytest.approx(0.35) and t == 0.5
    assert all(np.isnan(breakeven_point(np.array([np.nan]), np.array([0.5]), thr[:1])))
