"""MultiStepLoss: weights gamma^(T-t), list/stacked/plain inputs, 2D and 3D, MONAI losses."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from monai_rurnet.losses import MultiStepLoss


def test_weights_put_the_most_on_the_last_step():
    loss = MultiStepLoss(torch.nn.MSELoss(), gamma=0.4)
    assert loss.weights(3) == pytest.approx([0.16, 0.4, 1.0])
    assert sum(MultiStepLoss(torch.nn.MSELoss(), 0.4, normalize=True).weights(3)) == pytest.approx(1.0)


@pytest.mark.parametrize("spatial", [(8, 8), (4, 6, 8)])
def test_matches_manual_sum_for_dicece(spatial):
    torch.manual_seed(0)
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    preds = torch.randn(2, 3, 2, *spatial)
    target = torch.randint(0, 2, (2, 1, *spatial)).float()
    expected = sum(0.4 ** (3 - t) * base(preds[:, t - 1], target) for t in (1, 2, 3))
    loss = MultiStepLoss(base, gamma=0.4)
    assert torch.allclose(loss(preds, target), expected)
    assert torch.allclose(loss(list(preds.unbind(1)), target), expected)


def test_plain_prediction_and_cross_entropy():
    ce = torch.nn.CrossEntropyLoss()
    pred, target = torch.randn(2, 2, 8, 8), torch.randint(0, 2, (2, 8, 8))
    loss = MultiStepLoss(ce, target_has_channel=False)
    assert torch.allclose(loss(pred, target), ce(pred, target))
    steps = torch.randn(2, 3, 2, 8, 8)
    assert torch.allclose(
        loss(steps, target), sum(w * ce(steps[:, i], target) for i, w in enumerate(loss.weights(3)))
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="gamma"):
        MultiStepLoss(torch.nn.MSELoss(), gamma=0.0)
    with pytest.raises(ValueError, match="MultiStepLoss expects"):
        MultiStepLoss(torch.nn.MSELoss())(torch.randn(2, 8), torch.randn(2, 2, 8, 8))
