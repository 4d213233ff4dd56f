"""Interactive refinement in the one anytime loop: a packed guided input (``[image, prior + 1, strokes]``) runs on
every backend as ``RecurrentUNet.forward(x, prior=, strokes=)`` does, through sliding windows and flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer

from monai_rurnet.inferers import FastInferer, FlipEnsembleInferer, build_predictor
from monai_rurnet.networks import build_network
from monai_rurnet.networks.guidance import NO_PRIOR, pack_guidance, unpack_guidance
from monai_rurnet.transforms import FOVRescaler

pytest.importorskip("onnxruntime")


def _net(out_channels: int = 2, stroke_channels: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(
        "dru", out_channels=out_channels, features=(4, 8, 8, 16, 16), steps=3, stroke_channels=stroke_channels
    ).eval()


def _guidance(b: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    prior = rng.random((b, *shape)).astype(np.float32)
    prior[0, :8] = NO_PRIOR  # no prior on a band of the first item
    strokes = np.zeros((b, *shape), np.uint8)
    strokes[:, 10, 4:30] = 2
    strokes[:, 20:23, 8:12] = 1
    return prior, strokes


def _packed(x: torch.Tensor, prior: np.ndarray, strokes: np.ndarray) -> torch.Tensor:
    g = np.stack([pack_guidance(p, s, p.shape) for p, s in zip(prior, strokes)])
    return torch.cat([x, torch.from_numpy(g)], dim=1)


@pytest.mark.parametrize("backend", ["eager", "torch", "onnxruntime"])
@pytest.mark.parametrize("out_channels,stroke_channels", [(1, False), (2, False), (2, True)])
def test_packed_guidance_equals_forward(backend, out_channels, stroke_channels):
    net = _net(out_channels, stroke_channels)
    x = torch.randn(2, 3, 32, 48)
    prior, strokes = _guidance(2, (32, 48))
    with torch.inference_mode():
        ref = net(x, prior=torch.from_numpy(prior)[:, None], strokes=torch.from_numpy(strokes)[:, None])
        plain = net(x)
    predictor = build_predictor(net, backend)
    out = predictor(_packed(x, prior, strokes))
    # the stroke-channel net's random weights make the torch backend's channels-last group norms drift by 2.3e-4
    tol = 5e-4 if stroke_channels else 2e-4
    assert float((out - ref).abs().max()) < tol
    assert float((predictor(x) - plain).abs().max()) < tol  # unguided input: as before
    prob = torch.sigmoid(out[:, -1]) if out_channels == 1 else torch.softmax(out, 1)[:, 1]
    assert (prob[torch.from_numpy(strokes == 2)] > 0.999).all()
    assert (prob[torch.from_numpy(strokes == 1)] < 0.001).all()


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
@pytest.mark.parametrize("stroke_channels", [False, True])
def test_per_sample_early_exit_with_guidance(backend, stroke_channels):
    """Items leaving the loop early keep their guidance aligned (the rest run on with their own strokes)."""
    net = _net(stroke_channels=stroke_channels)
    x = torch.randn(3, 3, 32, 32)
    prior, strokes = _guidance(3, (32, 32))
    packed = _packed(x, prior, strokes)
    predictor = build_predictor(net, backend)
    together = predictor(packed, tol=0.05)
    used = list(predictor.last_steps_per_sample)
    for i in range(3):
        alone = predictor(packed[i : i + 1], steps=used[i])
        assert float((together[i] - alone[0]).abs().max()) < 2e-4


def test_sliding_windows_and_flips_carry_the_guidance():
    """Zero padding of the windows reads as no prior / no stroke; flips flip the guidance with the image."""
    net = _net()
    x = torch.randn(1, 3, 40, 56)
    prior, strokes = _guidance(1, (40, 56))
    packed = _packed(x, prior, strokes)
    sw = FastInferer(SlidingWindowInferer((32, 32), 4, overlap=0.5), backend="eager")
    out = sw(packed, net)
    flipped = FlipEnsembleInferer(sw)(packed, net)
    for o in (out, flipped):
        prob = torch.softmax(o, 1)[0, 1]
        assert (prob[torch.from_numpy(strokes[0] == 2)] > 0.999).all()
        assert (prob[torch.from_numpy(strokes[0] == 1)] < 0.001).all()
    assert not torch.allclose(out, sw(x, net), atol=1e-3)


def test_unpack_and_padding():
    g = torch.zeros(1, 5, 4, 4)  # all zero: what padding adds
    image, prior, strokes = unpack_guidance(g, 3)
    assert image.shape == (1, 3, 4, 4) and (prior == NO_PRIOR).all() and (strokes == 0).all()
    assert unpack_guidance(torch.zeros(1, 3, 4, 4), 3) is None
    packed = torch.from_numpy(
        pack_guidance(np.array([[0.0, 0.5, 1.0, -1.0]]), np.array([[0, 1, 2, 0]]), (1, 4))
    )
    _, prior, strokes = unpack_guidance(torch.cat([torch.zeros(3, 1, 4), packed])[None], 3)
    assert prior.flatten().tolist() == [0.0, 0.5, 1.0, NO_PRIOR]
    assert strokes.flatten().tolist() == [0, 1, 2, 0]


def test_guidance_refused_by_a_non_binary_model():
    net = _net(out_channels=3)
    x = torch.randn(1, 3 + 2, 32, 32)
    with pytest.raises(ValueError, match="binary model"):
        build_predictor(net, "eager")(x)


def test_fov_rescaler_resizes_strokes_nearest():
    image = torch.zeros(4, 40, 40)
    image[3, 10, :] = 2.0  # a one-pixel foreground stroke line
    image[3, 20:22, 5:9] = 1.0
    small = FOVRescaler.resize(image, 0.5, nearest=1)
    assert small.shape == (4, 20, 20)
    assert set(small[3].unique().tolist()) == {0.0, 1.0, 2.0}
    assert (small[3, 5] == 2).all()  # the one-pixel line survives the shrinking
    large = FOVRescaler.resize(image, 1.5, nearest=1)
    assert set(large[3].unique().tolist()) == {0.0, 1.0, 2.0} and (large[3] == 2).sum() == 60
    assert torch.equal(FOVRescaler.resize(image[:3], 0.5), small[:3])
