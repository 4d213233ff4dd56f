"""Interactive refinement of the Recurrent U-Net: ``refine`` and ``forward(prior=, strokes=)``."""

from __future__ import annotations

import pytest
import torch

from monai_rurnet.networks import RecurrentUNet
from monai_rurnet.networks.guidance import STROKE_LOGIT, prior_mask, strokes_from_masks


def _net(out_channels: int = 2, **kw) -> RecurrentUNet:
    torch.manual_seed(0)
    return RecurrentUNet(2, 3, out_channels, features=(8, 8, 8, 8, 8), **kw).eval()


def _strokes(shape=(1, 1, 32, 32)):
    fg = torch.zeros(shape, dtype=torch.bool)
    bg = torch.zeros(shape, dtype=torch.bool)
    fg[..., 5, 3:12] = True
    bg[..., 20:22, 20:22] = True
    return fg, bg


def test_without_guidance_forward_is_unchanged():
    net, x = _net(), torch.rand(2, 3, 32, 32)
    ref = net(x)
    assert torch.equal(net(x, prior=torch.full((2, 1, 32, 32), -1.0)), ref)  # negative prior: the own s_0
    assert torch.equal(net(x, strokes=torch.zeros(2, 1, 32, 32, dtype=torch.uint8)), ref)


@pytest.mark.parametrize("out_channels", [1, 2])
def test_refine_honours_strokes(out_channels):
    net, x = _net(out_channels), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    logits = net.refine(x, torch.rand(1, 1, 32, 32), fg, bg)
    assert logits.shape == (1, out_channels, 32, 32)
    fg_score = logits[:, -1] if out_channels == 1 else logits[:, 1] - logits[:, 0]
    assert bool((fg_score[fg[:, 0]] >= STROKE_LOGIT).all()) and bool(
        (fg_score[bg[:, 0]] <= -STROKE_LOGIT).all()
    )


def test_refine_steers_the_recurrence():
    """The prior and the strokes reach every step: results differ from a plain run away from the strokes too."""
    net, x = _net(), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    away = torch.ones(32, 32, dtype=torch.bool)
    away[:12, :] = False
    away[16:26, 16:26] = False
    plain = net(x)
    refined = net.refine(x, None, fg, bg)
    from_prior = net.refine(x, torch.zeros(1, 1, 32, 32), torch.zeros_like(fg), torch.zeros_like(bg))
    assert not torch.allclose(refined[..., away], plain[..., away])
    assert not torch.allclose(from_prior, plain)


def test_forward_with_strokes_equals_refine_and_keeps_all_steps_in_training():
    net, x = _net(), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    prior = torch.rand(1, 1, 32, 32)
    ref = net.refine(x, prior, fg, bg)
    assert torch.allclose(net(x, prior=prior, strokes=strokes_from_masks(fg, bg)), ref)
    net.train()
    net.return_all_steps = True
    out = net(x, prior=prior, strokes=strokes_from_masks(fg, bg))
    assert out.shape == (1, 3, 2, 32, 32)
    assert bool((out[:, :, 1][fg[:, 0].expand(1, 3, 32, 32)] == STROKE_LOGIT).all())
    assert net.refine(x, prior, fg, bg).shape == (1, 2, 32, 32) and net.return_all_steps


def test_prior_mask_two_classes():
    p = torch.tensor([[[[0.2, -1.0]]]])
    m = prior_mask(p, 2, 1.0)
    assert torch.allclose(m[0, :, 0, 0], torch.tensor([0.8, 0.2])) and torch.equal(
        m[0, :, 0, 1], torch.ones(2)
    )


def test_refine_is_torchscript_safe():
    net, x = _net(), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    strokes, prior = strokes_from_masks(fg, bg), torch.rand(1, 1, 32, 32)
    scripted = torch.jit.script(net)
    assert torch.allclose(scripted(x, None, prior, strokes), net(x, prior=prior, strokes=strokes), atol=1e-5)


@pytest.mark.parametrize(
    "case,message",
    [
        ("shape", "must have shape"),
        ("range", "in \\[0, 1\\]"),
        ("both", "both a foreground and a background"),
        ("classes", "binary model"),
    ],
)
def test_refine_errors_say_what_is_wrong(case, message):
    net, x = _net(3 if case == "classes" else 2), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    prior = torch.rand(1, 1, 32, 32)
    if case == "shape":
        prior = torch.rand(1, 1, 16, 16)
    elif case == "range":
        prior = prior + 1.0
    elif case == "both":
        bg = bg | fg
    with pytest.raises(ValueError, match=message):
        net.refine(x, prior, fg, bg)


def test_guidance_needs_mask_recurrence():
    net = _net(cell=None, mask_recurrence=False)
    with pytest.raises(ValueError, match="mask_recurrence"):
        net(torch.rand(1, 3, 32, 32), strokes=torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="stroke_channels=True needs mask_recurrence"):
        _net(cell=None, mask_recurrence=False, stroke_channels=True)


def test_stroke_channels_from_the_command_line():
    """``--network_def#stroke_channels false`` arrives as the string "false": no stroke channels (the same for the
    other flags)."""
    assert _net(stroke_channels="false").encoder[0][0].weight.shape[1] == 3 + 2
    assert _net(cell=None, mask_recurrence="false").encoder[0][0].weight.shape[1] == 3
    assert _net(return_all_steps="False").return_all_steps is False
    assert _net(stroke_channels="true").encoder[0][0].weight.shape[1] == 3 + 2 + 2
    with pytest.raises(ValueError, match="stroke_channels must be true or false"):
        _net(stroke_channels="maybe")


def test_weights_without_stroke_channels_load_with_the_same_outputs():
    """Upgrading trained weights to ``stroke_channels``: zero weights for the new inputs, same results."""
    old, x = _net(), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    prior = torch.rand(1, 1, 32, 32)
    new = _net(stroke_channels=True)
    new.load_state_dict(old.state_dict())
    first = new.encoder[0][0].weight
    assert first.shape[1] == 3 + 2 + 2 and not bool(first[:, 3:5].any())
    assert torch.allclose(new(x), old(x), atol=1e-5)
    assert torch.allclose(new.refine(x, prior, fg, bg), old.refine(x, prior, fg, bg), atol=1e-5)


def test_stroke_channels_reach_every_step_and_not_the_unguided_run():
    net, x = _net(stroke_channels=True), torch.rand(1, 3, 32, 32)
    fg, bg = _strokes()
    blind = _net(stroke_channels=True)
    blind.load_state_dict(net.state_dict())
    with torch.no_grad():
        blind.encoder[0][0].weight[:, 3:5] = 0.0  # strokes clamped into the mask only
    assert torch.allclose(net(x), blind(x), atol=1e-6)  # no strokes: zero channels
    away = torch.ones(32, 32, dtype=torch.bool)
    away[:12, :] = False
    away[16:26, 16:26] = False
    assert not torch.allclose(
        net.refine(x, None, fg, bg)[..., away], blind.refine(x, None, fg, bg)[..., away]
    )
    strokes = strokes_from_masks(fg, bg)
    scripted = torch.jit.script(net)
    assert torch.allclose(scripted(x, None, None, strokes), net(x, strokes=strokes), atol=1e-5)


def test_stroke_channels_at_level_0_train_from_scratch_but_do_not_upgrade_old_weights():
    net = _net(stroke_channels=True, level=0)
    fg, bg = _strokes()
    assert net.refine(torch.rand(1, 3, 32, 32), None, fg, bg).shape == (1, 2, 32, 32)
    with pytest.raises(RuntimeError, match="size mismatch"):  # the reset gate outputs the input's width
        net.load_state_dict(_net(level=0).state_dict())
