"""Training with simulated interaction: ``StrokeInteraction`` priors, strokes and degraded views."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from monai_rurnet.data.strokes import stroked_errors
from monai_rurnet.engines import StrokeFocusLoss, StrokeInteraction
from monai_rurnet.engines.interaction import degrade
from monai_rurnet.networks import RecurrentUNet
from monai_rurnet.networks.guidance import NO_PRIOR, STROKE_BACKGROUND, STROKE_FOREGROUND


def _batch(b: int = 4, size: int = 48) -> dict:
    torch.manual_seed(0)
    label = torch.zeros(b, 1, size, size)
    label[:, :, size // 2 - 1 : size // 2 + 2, 4:-4] = 1  # a horizontal "vessel"
    label[:, :, 6:-6, 10:13] = 1  # a vertical one
    return {"image": torch.randn(b, 3, size, size), "label": label}


def _engine() -> SimpleNamespace:
    torch.manual_seed(0)
    return SimpleNamespace(network=RecurrentUNet(2, 3, 2, features=(4, 4, 4, 4, 4)).eval())


def test_no_interaction_leaves_items_as_they_are():
    batch = _batch()
    image = batch["image"].clone()
    StrokeInteraction(prob=0.0, degrade_prob=1.0).simulate(_engine(), batch)
    assert torch.equal(batch["image"], image)
    assert bool((batch["prior"] == NO_PRIOR).all()) and not bool(batch["strokes"].any())


@pytest.mark.parametrize("mode", ["constant", "prediction", "corrupted"])
def test_every_item_gets_its_prior_and_strokes_on_its_errors(mode):
    batch = _batch()
    StrokeInteraction(prob=1.0, max_strokes=10, prior_modes=[mode], seed=3).simulate(_engine(), batch)
    prior, strokes, label = batch["prior"], batch["strokes"], batch["label"] > 0
    assert prior.shape == strokes.shape == label.shape
    assert bool((prior == NO_PRIOR).all()) == (mode == "constant")
    if mode != "constant":
        assert float(prior.min()) >= 0.0 and float(prior.max()) <= 1.0
    # strokes are corrections: foreground strokes on vessel pixels, background strokes off them
    assert not bool(label[strokes == STROKE_BACKGROUND].any())
    assert bool(label[strokes == STROKE_FOREGROUND].all())
    assert bool(strokes.any())  # 0..10 strokes per item on 4 items (seeded)


def test_degrade_blurs_lowers_contrast_and_is_seeded():
    x = torch.randn(3, 64, 64)
    a, b = degrade(x, np.random.default_rng(1)), degrade(x, np.random.default_rng(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    quiet = degrade(x, np.random.default_rng(1), sigma=(2.0, 2.0), contrast=(0.5, 0.5), noise=(0.0, 0.0))
    assert float(quiet.std()) < 0.5 * float(x.std())  # white noise loses most of its spread to the blur
    assert torch.allclose(quiet.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=0.05)  # means are kept


def test_degrade_prob_degrades_only_interactive_items():
    batch = _batch(b=6)
    image = batch["image"].clone()
    sim = StrokeInteraction(prob=0.5, degrade_prob=1.0, seed=0)
    sim.simulate(_engine(), batch)
    interactive = (batch["prior"] != NO_PRIOR).flatten(1).any(1) | batch["strokes"].flatten(1).any(1)
    changed = (batch["image"] != image).flatten(1).any(1)
    assert bool(changed.any()) and not bool((changed & ~interactive).any())
    # degrade_prob 0 draws exactly what it drew before the option existed
    a, b = _batch(), _batch()
    StrokeInteraction(prob=0.5, seed=7).simulate(_engine(), a)
    StrokeInteraction(prob=0.5, degrade_prob=0.0, seed=7).simulate(_engine(), b)
    assert torch.equal(a["strokes"], b["strokes"]) and torch.equal(a["image"], b["image"])


@pytest.mark.parametrize(
    "kw", [{"prob": 1.5}, {"degrade_prob": -0.1}, {"prior_modes": ["oracle"]}, {"focus_weight": -1.0}]
)
def test_bad_options_are_refused(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        StrokeInteraction(**kw)


def test_interactive_training_teaches_the_stroke_channels():
    """One trainer epoch with simulated interaction (as the bundles' ``--interactive_training``) on a network with
    stroke input channels upgraded from weights without them: the zero-initialised stroke weights are trained."""
    from monai.engines import SupervisedTrainer
    from monai.losses import DiceCELoss

    from monai_rurnet.engines import PrepareGuidedBatch
    from monai_rurnet.losses import MultiStepLoss

    torch.manual_seed(0)
    old = RecurrentUNet(2, 3, 2, features=(4, 4, 4, 4, 4))
    net = RecurrentUNet(2, 3, 2, features=(4, 4, 4, 4, 4), stroke_channels=True, return_all_steps=True)
    net.load_state_dict(old.state_dict())
    assert not bool(net.encoder[0][0].weight[:, 3:5].any())
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[_batch() for _ in range(3)],
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), 1e-2),
        loss_function=MultiStepLoss(DiceCELoss(to_onehot_y=True, softmax=True)),
        prepare_batch=PrepareGuidedBatch(),
        iteration_update=StrokeInteraction(prob=1.0, max_strokes=5, prior_modes=["corrupted"], seed=0),
    )
    trainer.run()
    assert bool(net.encoder[0][0].weight[:, 3:5].any())


def test_stroked_errors_are_the_whole_errors_under_the_strokes():
    label = np.zeros((20, 20), bool)
    label[5, 2:18] = label[14, 2:18] = True  # two vessels, both missed
    strokes = np.zeros((20, 20), np.uint8)
    strokes[5, 8:11] = STROKE_FOREGROUND  # a stroke on the first only
    got = stroked_errors(np.zeros((20, 20), bool), label, strokes)
    assert np.array_equal(got, label & (np.arange(20)[:, None] == 5))
    assert not stroked_errors(np.zeros((20, 20), bool), label, np.zeros_like(strokes)).any()


def test_focus_loss_weighs_the_stroked_errors():
    batch = _batch()
    sim = StrokeInteraction(prob=1.0, max_strokes=10, prior_modes=["constant"], seed=3, focus_weight=2.0)
    sim.simulate(_engine(), batch)
    focus = sim.focus
    assert focus.shape == batch["label"].shape and bool(focus.any())
    # every stroke pixel lies on a recorded error, and recorded errors are errors of the label
    assert bool(focus[batch["strokes"] > 0].all())
    zero = lambda i, t: torch.zeros(())  # noqa: E731 (the term alone)
    loss = sim.focus_loss(zero)
    assert isinstance(loss, StrokeFocusLoss)
    label = batch["label"].long()
    right = torch.cat([1 - label, label], 1).float() * 20 - 10  # confident and right everywhere
    wrong = -right
    steps = torch.stack([wrong, right], 1)  # (B, T, C, H, W): only the last step counts
    assert loss(steps, label).item() < 1e-6 < loss(wrong, label).item()
    # errors marked void (255) do not count
    void = label.clone()
    void[focus] = 255
    assert loss(wrong, void).item() == 0.0
    # without focus_weight the trainer gets its loss unchanged, and nothing is recorded
    plain = StrokeInteraction(prob=1.0, seed=3)
    plain.simulate(_engine(), _batch())
    assert plain.focus_loss(zero) is zero and plain.focus is None
