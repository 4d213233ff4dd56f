"""The fast PyTorch inference path: inference mode, channels-last, a frozen TorchScript trace of the step."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn as nn

from monai_rurnet.inferers.norms import channels_last_norms
from monai_rurnet.inferers.precision import compute_dtype, float32_norms, native_bfloat16_cpu
from monai_rurnet.inferers.steps import InferenceOptions, TorchStepLoop
from monai_rurnet.networks.export import StepModule

__all__ = ["TorchFastPredictor"]


class TorchFastPredictor(TorchStepLoop):
    """Optimised PyTorch inference of a deep copy of ``network`` through the anytime loop.

    The copy is in eval mode with gradients off and, following ``options`` (:class:`InferenceOptions`):

    - ``channels_last``: the channels-last memory format (faster oneDNN convolutions and pooling on CPU); instance
      norms then run as :class:`~monai_rurnet.inferers.norms.TwoPassGroupNorm` (same outputs; PyTorch's
      channels-last instance norm is 4-6x slower), and group norms too with ``exact_norms`` (PyTorch's fast
      channels-last group norm drifts by up to ~4e-3 of the logits on large images, masks unchanged; exact costs
      +11-14% time at 224x304-576x576 with 2 threads, benchmarks/README.md).
    - ``jit``: a frozen TorchScript trace of the step, made once on a small input and serving every batch and
      spatial size (``None``: on for a :class:`~monai_rurnet.networks.RecurrentUNet`, off for other modules,
      whose forward may branch on the input shape). DRU(4) T=3, 2 threads: 7% faster at 224x304.
    - ``precision="bfloat16"``: the network in bfloat16, its one-channel-per-group norms in float32
      (:class:`~monai_rurnet.inferers.precision.Float32Norm`); early-exit test and logits in float32. Warns on a
      CPU without native bfloat16.
    """

    def __init__(self, network: nn.Module, options: InferenceOptions | None = None, **overrides: Any) -> None:
        options = InferenceOptions.build(options, **overrides)
        self.compute_dtype = compute_dtype(options.precision)
        net = copy.deepcopy(network).eval()
        bf16_on_cpu = self.compute_dtype is not None and all(p.device.type == "cpu" for p in net.parameters())
        if bf16_on_cpu and not native_bfloat16_cpu():
            warnings.warn(
                "precision='bfloat16': this CPU has no native bfloat16 (AVX512-BF16/AMX); oneDNN emulates it and "
                "CPU inference will be slower than float32.",
                stacklevel=2,
            )
        if self.compute_dtype is not None:
            net = net.to(dtype=self.compute_dtype)
        if options.channels_last:  # after the cast: the two-pass norms keep float32 parameters
            channels_last_norms(net, exact=options.exact_norms)
        if self.compute_dtype is not None:  # the one-channel-per-group group norms still left
            float32_norms(net)
        for p in net.parameters():
            p.requires_grad_(False)
        if options.channels_last:
            dims = getattr(net, "spatial_dims", 2)
            self.memory_format = torch.channels_last if dims == 2 else torch.channels_last_3d
            net = net.to(memory_format=self.memory_format)
        super().__init__(net, options)
        self.jit = self.info["recurrent"] if options.jit is None else bool(options.jit)
        self._traced: Any = None

    def _module(self, example: tuple[torch.Tensor, ...]) -> Any:
        base: nn.Module = StepModule(self.network) if self.info["recurrent"] else self.network
        if not self.jit:
            return base
        if self._traced is None:
            if self.info["recurrent"]:  # the step has no shape-dependent branch: trace it on a small input
                example = self._small_example(example)
            with torch.no_grad(), warnings.catch_warnings():
                # torch >= 2.10 marks TorchScript deprecated; the step's only branch (h given) is traced as taken
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(base, example, check_trace=False)
                self._traced = torch.jit.freeze(traced.eval())
        return self._traced

    def _small_example(self, example: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``(x, mask, h)`` of batch 1 at twice the network's size divisor, in the tensors' dtype and layout."""
        like = example[0]
        size = [2 * int(self.info["divisor"])] * (like.dim() - 2)
        return (self._full((1, int(like.shape[1]), *size), 0.0, like), *self._initial_state(1, size, like))
