"""The simulated annotator: strokes on the largest errors, always right; corrupted masks."""

from __future__ import annotations

import numpy as np

from monai_rurnet.data.strokes import add_strokes, apply_strokes, corrupt_mask, error_components
from monai_rurnet.networks.guidance import STROKE_BACKGROUND, STROKE_FOREGROUND


def _scene():
    label = np.zeros((64, 64), dtype=bool)
    label[10:13, 5:60] = True  # a long vessel
    label[40:60, 30:32] = True  # a short one
    pred = label.copy()
    pred[10:13, 20:50] = False  # a missed segment (90 px)
    pred[30:34, 5:15] = True  # a false blob (40 px)
    return pred, label


def test_strokes_go_on_the_largest_errors_with_the_right_kind():
    pred, label = _scene()
    strokes = add_strokes(pred, label, 1, length=10)
    fg = strokes == STROKE_FOREGROUND
    assert fg.any() and not (strokes == STROKE_BACKGROUND).any()
    assert bool(label[fg].all()) and not bool(pred[fg].any())  # inside the missed segment only
    assert 8 <= fg.sum() <= 12  # a short connected line
    assert error_components(fg, np.zeros_like(fg))[1].tolist() == [fg.sum()]
    strokes = add_strokes(pred, label, 2, length=10)  # one per component: the segment, then the false blob
    bg = strokes == STROKE_BACKGROUND
    assert bg.any() and bool(pred[bg].all()) and not bool(label[bg].any())


def test_a_shifted_result_gets_strokes_of_the_right_kind():
    """A thin vessel found two pixels off: its missed and false pixels touch, yet are separate errors."""
    label = np.zeros((48, 64), dtype=bool)
    label[20:22, 4:60] = True
    pred = np.roll(label, 2, axis=0)  # rows 20-21 missed, 22-23 false: touching
    comps, sizes = error_components(pred, label)
    assert sizes.tolist() == [112, 112]
    strokes = add_strokes(pred, label, 2, length=12)
    fg, bg = strokes == STROKE_FOREGROUND, strokes == STROKE_BACKGROUND
    assert fg.any() and bg.any()
    assert bool(label[fg].all()) and not bool(label[bg].any())


def test_no_stroke_outside_valid_or_on_correct_pixels():
    pred, label = _scene()
    valid = np.ones_like(label)
    valid[:, :18] = False
    valid[20:, :] = False
    strokes = add_strokes(pred, label, 5, valid=valid)
    marked = strokes > 0
    assert marked.any() and not marked[~valid].any()
    assert bool((pred[marked] != label[marked]).all())
    assert not add_strokes(label, label, 3).any()  # nothing to correct


def test_apply_strokes_and_components():
    pred, label = _scene()
    strokes = add_strokes(pred, label, 2)
    pasted = apply_strokes(pred, strokes)
    assert (pasted != label).sum() < (pred != label).sum()
    comps, sizes = error_components(pred, label, strokes)
    assert sizes.sum() == (pred != label).sum() - (strokes > 0).sum()
    assert comps.max() == len(sizes)


def test_corrupt_mask_is_a_plausible_wrong_result():
    label = np.zeros((128, 128), dtype=bool)
    label[20:23, :] = True
    label[:, 60:63] = True
    label[90:95, 10:120] = True
    wrong = corrupt_mask(label, np.random.default_rng(0), drop=0.5)
    assert wrong.shape == label.shape and wrong.dtype == bool
    changed = (wrong != label).sum()
    assert 0 < changed < label.sum()
    assert not corrupt_mask(np.zeros((32, 32), bool), np.random.default_rng(0)).any()
