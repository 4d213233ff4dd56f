"""The Recurrent U-Net (Wang, Yu & Fua, "Recurrent U-Net for Resource-Constrained Segmentation", ICCV 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from monai_rurnet.networks.blocks import (
    ConvBlock,
    ConvGRUCell,
    DRUCell,
    EncoderDecoder,
    PlainUnit,
    SRUCell,
    UpStage,
)
from monai_rurnet.networks.guidance import (
    STROKE_INPUT_CHANNELS,
    add_stroke_inputs,
    append_stroke_channels,
    check_binary,
    clamp_mask,
    honour_strokes,
    prior_mask,
    stroke_masks,
    strokes_from_masks,
)
from monai_rurnet.utils import as_bool

__all__ = ["RecurrentUNet", "CELLS", "check_spatial_size", "valid_sizes"]

CELLS = ("dru", "sru", "convgru", None)


def valid_sizes(size: int, divisor: int) -> tuple[int, int]:
    """The nearest multiples of ``divisor`` below (at least ``divisor``) and above ``size``."""
    lower = max(divisor, (size // divisor) * divisor)
    upper = -(-size // divisor) * divisor
    return lower, upper


def check_spatial_size(shape: Sequence[int], divisor: int) -> None:
    """Raise a ``ValueError`` naming the size and the nearest valid sizes when a dim is not divisible."""
    bad = [int(s) for s in shape if int(s) % divisor != 0 or int(s) == 0]
    if bad:
        hints = ", ".join(f"{s} -> {valid_sizes(s, divisor)[0]} or {valid_sizes(s, divisor)[1]}" for s in bad)
        raise ValueError(
            f"Input spatial size {tuple(int(s) for s in shape)} must be divisible by {divisor} in every dim "
            f"({hints}). Pad the input (e.g. monai.transforms.DivisiblePad(k={divisor})) or use "
            f"monai_rurnet.inferers, which pad and crop back."
        )


class RecurrentUNet(nn.Module):
    """Recurrent U-Net with mask recurrence and a recurrent unit (DRU / SRU / ConvGRU) at level ``level``.

    At step ``t = 1..T`` the network input is ``cat(x, s_{t-1})`` where ``s_{t-1}`` is the softmax (sigmoid for
    one output channel) of the previous step's logits and ``s_0 = init_value``. The part of the U-Net from
    encoder level ``level`` down to the bottleneck and back up to decoder level ``level`` is replaced by the
    recurrent cell, whose hidden state (initialised to ``state_init``) has the width of decoder level ``level``.
    ``level=4`` puts only the bottleneck block inside the unit, ``level=0`` the whole U-Net.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: number of classes (logits).
        features: widths of the 5 levels (base 8 as in the paper).
        cell: ``"dru"``, ``"sru"``, ``"convgru"`` (Rec-Middle at level 4, Rec-Last at level 0 with
            ``mask_recurrence=False``) or ``None`` (plain U-Net; with ``mask_recurrence`` this is Rec-Simple).
        level: 0..len(features)-1, where the recurrent unit starts.
        steps: number of recurrent steps T (overridable at call time).
        init_value: value of the initial mask ``s_0`` (paper: 1.0).
        state_init: value of the initial hidden state ``h_0`` (default: ``init_value``).
        mask_recurrence: concatenate the previous mask to the input.
        state_block: use a conv block ``f_s`` after the state (paper eq. 5); default identity, as the
            state already has the decoder's width.
        norm: MONAI norm spec, e.g. ``("group", {"num_groups": 8})`` (U-Net-G) or ``"batch"`` (U-Net-B).
        act: MONAI activation spec.
        return_all_steps: in training mode return all steps stacked as ``(B, T, C, *S)`` for
            :class:`~monai_rurnet.losses.MultiStepLoss` (opt-in, like MONAI ``DynUNet``'s deep supervision; the
            bundles' training configs turn it on).
        stroke_channels: interactive refinement: the annotator's strokes also enter every step as two extra input
            channels (foreground, background; zero without strokes), besides being clamped into the mask, so the
            network can tell a stroke from a confident prior pixel. Weights trained without them load through
            :meth:`load_state_dict` with zero weights for the new channels (level >= 1).

    Shapes:
        input ``(B, in_channels, *S)`` with ``S`` divisible by ``2 ** (len(features) - 1)``; eval output
        ``(B, out_channels, *S)`` (last step's logits); training output the same, or ``(B, T, out_channels, *S)``
        with ``return_all_steps``.

    Example::

        net = RecurrentUNet(2, 3, 2, cell="dru", level=4, steps=3).eval()
        logits = net(torch.rand(1, 3, 64, 64))          # (1, 2, 64, 64)
        logits = net(torch.rand(1, 3, 64, 64), steps=1)  # anytime: one step only
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (8, 16, 32, 64, 128),
        cell: str | None = "dru",
        level: int = 4,
        steps: int = 3,
        init_value: float = 1.0,
        state_init: float | None = None,
        mask_recurrence: bool = True,
        state_block: bool = False,
        norm: tuple | str = ("group", {"num_groups": 8}),
        act: tuple | str = ("relu", {"inplace": True}),
        return_all_steps: bool = False,
        stroke_channels: bool = False,
    ) -> None:
        super().__init__()
        feats = tuple(int(f) for f in features)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if cell not in CELLS:
            raise ValueError(f"Unknown cell {cell!r}; choose one of {CELLS}.")
        if not 0 <= level < len(feats):
            raise ValueError(f"level must be in 0..{len(feats) - 1} for features={feats}, got {level}.")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}.")
        # flags from the command line ("--network_def#mask_recurrence false") arrive as strings
        mask_recurrence = as_bool(mask_recurrence, "mask_recurrence")
        state_block = as_bool(state_block, "state_block")
        return_all_steps = as_bool(return_all_steps, "return_all_steps")
        stroke_channels = as_bool(stroke_channels, "stroke_channels")
        if stroke_channels and not mask_recurrence:
            raise ValueError(
                "stroke_channels=True needs mask_recurrence=True: strokes guide the mask recurrence (refine)."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = feats
        self.cell_name = cell or "none"
        self.level = level
        self.steps = steps
        self.init_value = float(init_value)
        self.state_init = float(init_value if state_init is None else state_init)
        self.mask_recurrence = mask_recurrence
        self.return_all_steps = return_all_steps
        self.stroke_channels = stroke_channels
        self.divisor = 2 ** (len(feats) - 1)

        step_in = in_channels + (STROKE_INPUT_CHANNELS if stroke_channels else 0)
        net_in = step_in + (out_channels if mask_recurrence else 0)
        self.encoder = nn.ModuleList(
            [
                ConvBlock(spatial_dims, net_in if i == 0 else feats[i - 1], feats[i], norm, act)
                for i in range(level)
            ]
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        unit_in = net_in if level == 0 else feats[level - 1]
        unit_feats = feats[level:]
        unit_out = feats[level]
        if cell == "dru":
            self.unit: nn.Module = DRUCell(
                spatial_dims, unit_in, unit_out, unit_feats, norm, act, state_block
            )
        elif cell == "sru":
            self.unit = SRUCell(spatial_dims, unit_in, unit_out, unit_feats, norm, act, state_block)
        elif cell == "convgru":
            self.unit = ConvGRUCell(spatial_dims, unit_in, unit_out, unit_feats, norm, act)
        else:
            self.unit = PlainUnit(
                EncoderDecoder(spatial_dims, unit_in, unit_out, unit_feats, norm, act), unit_out
            )
        self.state_channels = int(self.unit.state_channels)
        self.decoder = nn.ModuleList(
            [
                UpStage(spatial_dims, feats[i + 1], feats[i], feats[i], norm, act)
                for i in reversed(range(level))
            ]
        )
        self.head = Conv[Conv.CONV, spatial_dims](feats[0], out_channels, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (Kaiming) initialisation of every convolution, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"Expected a {self.spatial_dims + 2}D input (B, C, *spatial) for spatial_dims={self.spatial_dims}, "
                f"got shape {list(x.shape)}."
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"Expected {self.in_channels} input channels, got {x.shape[1]} (shape {list(x.shape)})."
            )
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            check_spatial_size(x.shape[2:], self.divisor)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.out_channels == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """As :meth:`torch.nn.Module.load_state_dict`; with ``stroke_channels``, weights of the same network
        without them get zero weights for the stroke input channels (same outputs until trained)."""
        if self.stroke_channels:
            state_dict = add_stroke_inputs(dict(state_dict), self.state_dict(), self.in_channels)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def step(self, x: torch.Tensor, mask: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: ``(x, s_{t-1}, h_{t-1}) -> (logits_t, h_t)``; ``h`` empty means ``h_0``.

        With ``stroke_channels``, ``x`` carries the two stroke channels after the image
        (:func:`~monai_rurnet.networks.guidance.append_stroke_channels`)."""
        e = torch.cat([x, mask], dim=1) if self.mask_recurrence else x
        skips: list[torch.Tensor] = []
        for block in self.encoder:
            e = block(e)
            skips.append(e)
            e = self.pool(e)
        if h.numel() == 0:
            shape = [e.shape[0], self.state_channels] + list(e.shape[2:])
            h = torch.full(shape, self.state_init, dtype=e.dtype, device=e.device)
        d, h = self.unit(e, h)
        for stage in self.decoder:
            d = stage(d, skips.pop())
        return self.head(d), h

    def initial_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``s_0``: ``(B, out_channels, *S)`` filled with ``init_value``."""
        shape = [x.shape[0], self.out_channels] + list(x.shape[2:])
        return torch.full(shape, self.init_value, dtype=x.dtype, device=x.device)

    def forward(
        self,
        x: torch.Tensor,
        steps: int | None = None,
        prior: torch.Tensor | None = None,
        strokes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``steps`` recurrent steps (default: ``self.steps``). Eval: the last step's logits ``(B, C, *S)``;
        training with ``return_all_steps``: every step's logits ``(B, T, C, *S)``.

        ``prior`` ``(B, 1, *S)`` (foreground probability, negative for "none") starts the steps from it instead of
        the constant ``s_0``; ``strokes`` ``(B, 1, *S)`` (0 none, 1 background, 2 foreground) are clamped into the
        mask at every step and honoured in the output (see :mod:`monai_rurnet.networks.guidance` and
        :meth:`refine`). Training with simulated interaction passes both (``monai_rurnet.engines.StrokeInteraction``).

        Anytime inference with early exit (``tol``) runs the step through
        :class:`~monai_rurnet.inferers.FastInferer` (any backend, ``"eager"`` for this module as it is).
        """
        self._check_input(x)
        n_steps = self.steps if steps is None else int(steps)
        if n_steps < 1:
            raise ValueError(f"steps must be >= 1, got {n_steps}.")
        guided = prior is not None or strokes is not None
        if guided and not self.mask_recurrence:
            raise ValueError(
                "prior and strokes steer the mask recurrence; this network has mask_recurrence=False."
            )
        mask = self.initial_mask(x)
        if prior is not None:
            mask = prior_mask(prior.to(x.dtype), self.out_channels, self.init_value)
        fg = bg = torch.zeros(0, dtype=torch.bool, device=x.device)
        if strokes is not None:
            fg, bg = stroke_masks(strokes)
            mask = clamp_mask(mask, fg, bg)
        if self.stroke_channels:
            x = append_stroke_channels(x, fg, bg)
        h = torch.empty(0, dtype=x.dtype, device=x.device)
        outputs: list[torch.Tensor] = []
        for _ in range(n_steps):
            logits, h = self.step(x, mask, h)
            outputs.append(logits)
            mask = self._probabilities(logits)
            if strokes is not None:
                mask = clamp_mask(mask, fg, bg)
        out = torch.stack(outputs, dim=1) if self.training and self.return_all_steps else outputs[-1]
        return honour_strokes(out, fg, bg) if strokes is not None else out

    def refine(
        self,
        image: torch.Tensor,
        prior: torch.Tensor | None,
        fg: torch.Tensor,
        bg: torch.Tensor,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Interactive refinement: run the steps from ``s_0 = prior`` with the strokes enforced at every step.

        Args:
            image: ``(B, in_channels, *S)``, preprocessed as for :meth:`forward`.
            prior: ``(B, 1, *S)`` foreground probability in [0, 1] (e.g. the current result), or ``None`` for the
                network's own ``s_0`` (strokes only).
            fg: ``(B, 1, *S)`` boolean, foreground stroke pixels.
            bg: ``(B, 1, *S)`` boolean, background stroke pixels.
            steps: recurrent steps (default: ``self.steps``).

        Returns:
            the last step's logits ``(B, out_channels, *S)``; stroke pixels are honoured (``±STROKE_LOGIT``).
        """
        check_binary(self.out_channels)
        expected = [image.shape[0], 1] + list(image.shape[2:])
        for name, t in (("prior", prior), ("fg", fg), ("bg", bg)):
            if t is not None and list(t.shape) != expected:
                raise ValueError(
                    f"{name} must have shape {expected} (B, 1, *S) for this image, got {list(t.shape)}."
                )
        if prior is not None and bool(((prior < 0) | (prior > 1)).any()):
            raise ValueError("prior must hold foreground probabilities in [0, 1].")
        strokes = strokes_from_masks(fg.to(image.device), bg.to(image.device))
        out = self.forward(image, steps, None if prior is None else prior.to(image.device), strokes)
        return out[:, -1] if out.dim() == image.dim() + 1 else out  # training with return_all_steps: the last
