"""Inferers: tensors in, tensors out. One anytime loop (steps, early exit) for the eager, fast PyTorch and ONNX
Runtime paths behind :class:`FastInferer`; test-time mirroring, fixed-size resizing, mixed precision.
File I/O lives in :mod:`monai_rurnet.runners` and :mod:`monai_rurnet.data`."""

from monai_rurnet.inferers.autocast import AutocastInferer
from monai_rurnet.inferers.ensemble import FlipEnsembleInferer
from monai_rurnet.inferers.fast import BACKENDS, FastInferer, build_predictor
from monai_rurnet.inferers.memory import freed_memory_reused, reuse_freed_memory
from monai_rurnet.inferers.norms import TwoPassGroupNorm
from monai_rurnet.inferers.onnx_runtime import OnnxRuntimePredictor
from monai_rurnet.inferers.patchwise import PatchwiseInferer
from monai_rurnet.inferers.precision import PRECISIONS, Float32Norm, compute_dtype
from monai_rurnet.inferers.probability import foreground_probability
from monai_rurnet.inferers.resize import ResizeInferer
from monai_rurnet.inferers.steps import EagerPredictor, InferenceOptions, StepLoop
from monai_rurnet.inferers.torch_fast import TorchFastPredictor

__all__ = [
    "AutocastInferer",
    "BACKENDS",
    "EagerPredictor",
    "FastInferer",
    "FlipEnsembleInferer",
    "Float32Norm",
    "InferenceOptions",
    "OnnxRuntimePredictor",
    "PatchwiseInferer",
    "PRECISIONS",
    "ResizeInferer",
    "StepLoop",
    "TorchFastPredictor",
    "TwoPassGroupNorm",
    "build_predictor",
    "compute_dtype",
    "foreground_probability",
    "freed_memory_reused",
    "reuse_freed_memory",
]
