"""The inference paths (eager, fast PyTorch, ONNX Runtime) share one anytime loop and agree with the network."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from monai_rurnet.inferers import (
    EagerPredictor,
    FastInferer,
    InferenceOptions,
    OnnxRuntimePredictor,
    TorchFastPredictor,
    build_predictor,
)
from monai_rurnet.networks import build_network, export_step_onnx

pytest.importorskip("onnxruntime")


def _net(name: str = "dru", seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(name, **kw).eval()
    # GroupNorm affine parameters away from (1, 0), so that the test also covers them
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


def _ref(net: torch.nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:
    with torch.inference_mode():
        return net(x, **kw)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    """``max |a - b| <= tol * max(1, max |b|)`` (float32 summation order differs between kernels)."""
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max abs diff {err} > {tol} * {scale}"


@pytest.mark.parametrize(
    "name,kw,channels_last,jit",
    [
        ("dru", {"level": 4, "steps": 3}, False, False),
        ("dru", {"level": 4, "steps": 3}, True, False),
        ("dru", {"level": 4, "steps": 3}, True, True),
        ("dru", {"level": 4, "steps": 3}, True, None),
        ("sru", {"level": 0, "steps": 2}, True, False),
    ],
)
def test_torch_fast_equals_reference(name, kw, channels_last, jit):
    net = _net(name, **kw)
    fast = TorchFastPredictor(net, channels_last=channels_last, jit=jit)
    assert isinstance(fast, TorchFastPredictor)
    for shape in [(2, 3, 32, 48), (1, 3, 64, 32)]:
        x = torch.randn(*shape)
        _close(fast(x), _ref(net, x), 1e-5)
        _close(fast(x, steps=1), _ref(net, x, steps=1), 1e-5)
    assert fast.last_steps == 1
    # the original network is untouched (eval mode, contiguous weights, gradients enabled)
    assert all(p.requires_grad for p in net.parameters())


def test_torch_fast_non_recurrent():
    net = _net("monai_basic_unet")
    x = torch.randn(1, 3, 32, 32)
    fast = TorchFastPredictor(net)
    _close(fast(x), _ref(net, x), 1e-5)
    assert not fast.jit  # a module's forward may branch on the input shape: not traced unless asked


def test_frozen_step_serves_every_size():
    """The default frozen trace of the step is made once, on a small input, and is exact for other batch and
    spatial sizes, in 2D and 3D (per-sample early exit, which shrinks the batch between steps, runs through it in
    ``test_per_sample_early_exit_matches_single_items``)."""
    for dims, shapes in ((2, [(3, 3, 48, 80), (1, 3, 96, 32)]), (3, [(2, 1, 32, 16, 48)])):
        net = _net("dru", level=4, steps=3, spatial_dims=dims, in_channels=shapes[0][1])
        fast, eager_steps = TorchFastPredictor(net), TorchFastPredictor(net, jit=False)
        assert fast.jit
        for shape in shapes:
            x = torch.randn(*shape)
            _close(fast(x), eager_steps(x), 1e-6)  # same kernels: the trace adds no error
            _close(fast(x), _ref(net, x), 1e-4)  # channels-last kernels sum in another order
        assert fast._traced is not None


def test_torch_fast_rejects_bad_size():
    fast = TorchFastPredictor(_net())
    with pytest.raises(ValueError, match="divisible by 16"):
        fast(torch.randn(1, 3, 30, 32))


@pytest.mark.parametrize("name,kw", [("dru", {"level": 4, "steps": 3}), ("unet_g", {})])
def test_onnxruntime_equals_torch(tmp_path, name, kw):
    import onnx

    net = _net(name, **kw)
    ort_pred = OnnxRuntimePredictor(net, intra_op_threads=1, onnx_path=tmp_path / "m.onnx")
    for shape in [(1, 3, 32, 48), (2, 3, 80, 64)]:  # two sizes, one exported model (dynamic axes)
        x = torch.randn(*shape)
        _close(ort_pred(x), _ref(net, x), 1e-4)
    if name == "dru":
        _close(ort_pred(x, steps=1), _ref(net, x, steps=1), 1e-4)
    # a saved model can be loaded again, with its recurrence settings from the metadata
    again = OnnxRuntimePredictor(onnx.load(tmp_path / "m.onnx"), intra_op_threads=1)
    _close(again(x), _ref(net, x), 1e-4)


def test_export_step_onnx_metadata(tmp_path):
    import onnx

    in_memory = export_step_onnx(_net())  # no file unless a path is given
    path = tmp_path / "step.onnx"
    export_step_onnx(_net(), path)
    model = onnx.load(str(path))
    assert model.graph == in_memory.graph
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["x", "mask", "h"]
    assert any(p.key == "monai_rurnet" for p in model.metadata_props)


def _mask_blind(net: torch.nn.Module) -> torch.nn.Module:
    """Make a DRU whose output does not depend on the previous mask nor on the hidden state: zero the first
    conv's mask weights and saturate the update gate (``z = sigmoid(-1e4) = 0``, so ``h_t = h_hat(e_t)``).
    Step 2 then reproduces step 1 exactly: the probabilities converge immediately."""
    with torch.no_grad():
        net.encoder[0][0].weight[:, net.in_channels :] = 0.0
        last = [m for m in net.unit.f_z.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.zero_()
        last.bias.fill_(-1e4)
    return net


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_early_exit(backend):
    x = torch.randn(1, 3, 32, 32)
    easy, hard = _mask_blind(_net(steps=4)), _net(steps=4)

    def make(net, tol):
        if backend == "torch":
            return TorchFastPredictor(net, tol=tol)
        return OnnxRuntimePredictor(net, tol=tol, intra_op_threads=1)

    # easy: converged after step 2 (the earliest possible exit), same result as running all steps
    pred = make(easy, 1e-3)
    out = pred(x)
    assert pred.last_steps == 2
    _close(out, _ref(easy, x), 1e-4)
    # hard: the probabilities still change by more than tol, so all steps run
    pred = make(hard, 1e-3)
    pred(x)
    assert pred.last_steps == 4
    # tol = 0 never stops early, even on the easy network
    pred = make(easy, 0.0)
    pred(x)
    assert pred.last_steps == 4
    # same decisions on the eager path (the network as it is)
    for net, steps in ((easy, 2), (hard, 4)):
        eager = EagerPredictor(net, tol=1e-3)
        eager(x)
        assert eager.last_steps == steps


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_fast_inferer_sliding_window(backend):
    net = _net(steps=2)
    x = torch.randn(1, 3, 72, 88)
    ref_inferer = FastInferer(
        SlidingWindowInferer((32, 32), 3, 0.25, mode="gaussian"), backend="eager", steps=2
    )
    with torch.inference_mode():
        ref = ref_inferer(x, net)
    inferer = FastInferer(SlidingWindowInferer((32, 32), 3, 0.25, mode="gaussian"), backend=backend, steps=2)
    _close(inferer(x, net), ref, 1e-4)
    assert inferer.last_steps == 2
    first = inferer.predictor(net)
    assert inferer.predictor(net) is first  # cached
    # new weights rebuild the predictor
    net.load_state_dict(_net(steps=2, seed=1).state_dict())
    with torch.inference_mode():
        ref = ref_inferer(x, net)
    _close(inferer(x, net), ref, 1e-4)
    assert inferer.predictor(net) is not first


def test_fast_inferer_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        FastInferer(backend="tensorrt")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("exit_stat", ["max", "mean"])
def test_per_sample_early_exit_matches_single_items(backend, exit_stat):
    """Each batch item (e.g. each sliding window) exits on its own: same steps and logits as running it alone."""
    net = _net(steps=4)
    torch.manual_seed(1)
    x = torch.cat([torch.randn(1, 3, 32, 32) * s for s in (0.3, 1.0, 3.0)])
    p1, p2 = (torch.softmax(_ref(net, x, steps=t), 1) for t in (1, 2))
    d = (p2 - p1).abs().flatten(1)
    change = (d.amax(1) if exit_stat == "max" else d.mean(1)).sort().values
    tol = (
        float(change[0] + change[1]) / 2
    )  # the item with the smallest change exits after step 2, others later
    if backend == "torch":
        pred = TorchFastPredictor(net, tol=tol, exit_stat=exit_stat)
    else:
        pred = OnnxRuntimePredictor(net, tol=tol, intra_op_threads=1, exit_stat=exit_stat)
    out = pred(x)
    ref = EagerPredictor(net, tol=tol, exit_stat=exit_stat)
    expected = []
    for i in range(3):
        _close(out[i : i + 1], ref(x[i : i + 1]), 1e-4)
        expected.append(ref.last_steps)
    assert pred.last_steps_per_sample == expected
    assert 2 in expected and max(expected) > 2
    # per_sample=False: the batch exits together (max: once every item has converged; mean: on the batch mean)
    pred.options = dataclasses.replace(pred.options, per_sample=False)
    pred(x)
    steps = pred.last_steps_per_sample
    assert len(set(steps)) == 1
    assert steps[0] == max(expected) if exit_stat == "max" else 2 <= steps[0] <= max(expected)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_windowed_raster_with_fast_predictor(tmp_path, backend):
    """The massroads windowed runner runs any inferer, e.g. a fast one, and gives the plain network's output."""
    rasterio = pytest.importorskip("rasterio")
    import numpy as np

    from monai_rurnet.data import write_geotiff
    from monai_rurnet.runners import segment_raster

    net = _net(steps=2)
    a = np.random.default_rng(0).integers(0, 255, (3, 60, 75), dtype=np.uint8)
    write_geotiff(tmp_path / "r.tif", a, transform=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), crs="EPSG:26986")
    fast = FastInferer(backend=backend, intra_op_threads=1)
    kw = {"roi_size": 32, "sw_batch_size": 3, "device": "cpu"}
    segment_raster(tmp_path / "r.tif", tmp_path / "fast", net, fast, window=32, **kw)
    segment_raster(tmp_path / "r.tif", tmp_path / "ref", net, window=4096, **kw)
    with (
        rasterio.open(tmp_path / "fast" / "r_prob.tif") as f,
        rasterio.open(tmp_path / "ref" / "r_prob.tif") as r,
    ):
        assert np.abs(f.read(1) - r.read(1)).max() <= 1e-4
        assert f.crs == r.crs and f.transform == r.transform


@pytest.mark.parametrize("spin", [False, True])
def test_onnxruntime_spinning_option(spin):
    """ONNX Runtime's worker threads do not busy-wait after a call unless asked (they would slow the next work)."""
    pred = OnnxRuntimePredictor(_net("unet_g"), allow_spinning=spin)
    entry = pred.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert entry == ("1" if spin else "0")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("steps,tol", [(3, None), (1, None), (5, 1e-3), (4, 0.05)])
def test_eager_and_fast_paths_agree(backend, steps, tol):
    """For the same ``steps``/``tol`` every backend runs the same loop: same steps per item, logits within float
    tolerance of the eager path (the network as it is; exact two-pass group norms on the torch path, whose default
    channels-last group-norm kernel drifts by ~1e-3 on inputs of large magnitude)."""
    net = _net(steps=3)
    torch.manual_seed(2)
    x = torch.cat([torch.randn(1, 3, 48, 32) * s for s in (0.2, 1.0, 4.0)])
    eager = build_predictor(net, "eager", InferenceOptions(steps=steps, tol=tol))
    extra = {"exact_norms": True} if backend == "torch" else {"intra_op_threads": 1}
    fast = FastInferer(backend=backend, steps=steps, tol=tol, **extra).predictor(net)
    _close(fast(x), eager(x), 1e-4)
    assert fast.last_steps_per_sample == eager.last_steps_per_sample
    if tol is None:
        assert eager.last_steps == steps
        _close(eager(x), _ref(net, x, steps=steps), 1e-6)  # the network's own forward: the same recurrence
