"""WithClDiceLoss: the soft clDice term on the foreground class, void pixels left out, weight 0 = the base loss."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from monai_rurnet.losses import MaskedDiceCELoss, MultiStepLoss, WithClDiceLoss, soft_cldice


def _vessel(shape=(1, 1, 32, 32)) -> torch.Tensor:
    t = torch.zeros(shape)
    t[..., 10:13, :] = 1.0  # a horizontal vessel, 3 px wide
    return t


def test_soft_cldice_is_low_for_the_truth_and_high_for_a_broken_vessel():
    target = _vessel()
    broken = target.clone()
    broken[..., 12:20] = 0.0  # a gap cuts the vessel in two
    assert soft_cldice(target, target).item() < 0.05
    assert soft_cldice(broken, target).item() > soft_cldice(target, target).item() + 0.05


def test_weight_zero_is_the_base_loss_and_the_term_adds_a_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 32, 32, requires_grad=True)
    target = _vessel((2, 1, 32, 32))
    base = DiceCELoss(to_onehot_y=True, softmax=True)
    assert torch.equal(WithClDiceLoss(base, weight=0.0)(logits, target), base(logits, target))
    loss = WithClDiceLoss(base, weight=0.5)(logits, target)
    assert loss.item() > base(logits, target).item()
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_void_pixels_do_not_count():
    target = _vessel()
    logits = torch.where(target.bool(), 5.0, -5.0).repeat(1, 2, 1, 1)
    logits[:, 0] = -logits[:, 1]
    wrong = logits.clone()
    wrong[..., 20:] = -wrong[..., 20:]  # wrong on the right part ...
    void = target.clone()
    void[..., 20:] = 255  # ... which is void
    loss = WithClDiceLoss(MaskedDiceCELoss(lambda_dice=0.0, lambda_ce=0.0), weight=1.0)
    assert loss(wrong, void).item() == pytest.approx(loss(logits, target).item(), abs=1e-3)


def test_sigmoid_output_and_multi_step_input():
    target = _vessel((1, 1, 32, 32))
    good = torch.where(target.bool(), 6.0, -6.0)
    term = WithClDiceLoss(torch.nn.BCEWithLogitsLoss(), weight=1.0)
    assert term(good, target).item() < term(-good, target).item()
    steps = torch.stack([good, good, good], dim=1)  # (B, T, C, H, W)
    assert MultiStepLoss(term)(steps, target).item() == pytest.approx(
        sum(0.4**k for k in range(3)) * term(good, target).item(), rel=1e-5
    )


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="weight must be >= 0"):
        WithClDiceLoss(DiceCELoss(), weight=-1.0)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        WithClDiceLoss(DiceCELoss(), iters=0)


def test_two_class_probability_targets_match_the_index_target():
    """A two-class coverage target (hands training) scores the clDice term as its argmax index target does."""
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 32, 32)
    index = _vessel((2, 1, 32, 32))
    probs = torch.cat([1 - index, index], dim=1)
    zero = lambda i, t: torch.zeros(())  # noqa: E731 (the term alone)
    term = WithClDiceLoss(zero, weight=1.0)
    assert term(logits, probs).item() == pytest.approx(term(logits, index).item(), rel=1e-6)
