"""Building blocks of the Recurrent U-Net: conv blocks, encoder-decoders and the recurrent cells."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool, split_args
from monai.networks.layers.utils import get_act_layer, get_norm_layer

__all__ = ["ConvBlock", "UpStage", "EncoderDecoder", "DRUCell", "SRUCell", "ConvGRUCell", "PlainUnit"]


def _norm_layer(norm: tuple | str, spatial_dims: int, channels: int) -> nn.Module:
    """``get_norm_layer`` that shrinks GroupNorm's ``num_groups`` to a divisor of ``channels``."""
    if not norm:
        return nn.Identity()
    name, args = split_args(norm)
    args = dict(args)
    if str(name).lower() == "group":
        groups = min(int(args.get("num_groups", 8)), channels)
        while channels % groups:
            groups -= 1
        args["num_groups"] = groups
    return get_norm_layer((name, args), spatial_dims=spatial_dims, channels=channels)


class ConvBlock(nn.Sequential):
    """Two ``3^d conv -> norm -> act`` layers (one U-Net level).

    With ``plain_output=True`` the second convolution is left without norm and activation, so the block
    produces pre-activations for a gate (sigmoid / tanh applied by the cell).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: tuple | str,
        act: tuple | str,
        plain_output: bool = False,
    ) -> None:
        conv = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = [
            conv(in_channels, out_channels, kernel_size=3, padding=1),
            _norm_layer(norm, spatial_dims, out_channels),
            get_act_layer(act),
            conv(out_channels, out_channels, kernel_size=3, padding=1),
        ]
        if not plain_output:
            layers += [_norm_layer(norm, spatial_dims, out_channels), get_act_layer(act)]
        super().__init__(*layers)


class UpStage(nn.Module):
    """Decoder level: ``2^d`` transposed conv, concatenate the skip, then a :class:`ConvBlock`.

    Shapes: ``d (B, in_channels, *S/2), skip (B, skip_channels, *S) -> (B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        norm: tuple | str,
        act: tuple | str,
        plain_output: bool = False,
    ) -> None:
        super().__init__()
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, skip_channels, kernel_size=2, stride=2)
        self.block = ConvBlock(spatial_dims, 2 * skip_channels, out_channels, norm, act, plain_output)

    def forward(self, d: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([skip, self.up(d)], dim=1))


class EncoderDecoder(nn.Module):
    """A U-Net from one level down to the bottleneck and back up to the same level.

    ``features`` are the widths of the levels it spans, top first (e.g. ``(64, 128)`` for the last two levels
    of the default backbone, ``(128,)`` for the bottleneck alone, which is then a single :class:`ConvBlock`).
    The last block outputs ``out_channels``; with ``plain_output`` it ends in a bare convolution.

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S)``, ``S`` divisible by ``2 ** (len(features) - 1)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: tuple | str,
        act: tuple | str,
        plain_output: bool = False,
    ) -> None:
        super().__init__()
        feats = list(features)
        depth = len(feats)
        encoder = []
        for i in range(depth - 1):
            encoder.append(
                ConvBlock(spatial_dims, in_channels if i == 0 else feats[i - 1], feats[i], norm, act)
            )
        self.encoder = nn.ModuleList(encoder)
        bottom_in = in_channels if depth == 1 else feats[depth - 2]
        bottom_out = out_channels if depth == 1 else feats[depth - 1]
        self.bottleneck = ConvBlock(
            spatial_dims, bottom_in, bottom_out, norm, act, plain_output and depth == 1
        )
        decoder = []
        for i in reversed(range(depth - 1)):
            last = i == 0
            decoder.append(
                UpStage(
                    spatial_dims,
                    feats[i + 1],
                    feats[i],
                    out_channels if last else feats[i],
                    norm,
                    act,
                    plain_output and last,
                )
            )
        self.decoder = nn.ModuleList(decoder)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for stage in self.decoder:
            x = stage(x, skips.pop())
        return x


class PlainUnit(nn.Module):
    """The non-recurrent middle part of a U-Net (no state): ``d_t = f(e_t)``."""

    def __init__(self, body: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.state_channels = out_channels

    def forward(self, e: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.body(e), h


class SRUCell(nn.Module):
    """Single-gated recurrent unit (paper Sec. 3.3).

    ``z = sigmoid(f_z(e)); h_hat = tanh(f_h(e)); h_t = z * h_{t-1} + (1 - z) * h_hat; d_t = f_s(h_t)``,
    where ``f_z, f_h`` are encoder-decoders with the architecture of the replaced part and ``f_s`` is a conv
    block (``state_block=True``) or the identity (default: the state already has the decoder's width).

    Shapes: ``e (B, in_channels, *S), h (B, out_channels, *S) -> (d, h)``, both ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: tuple | str,
        act: tuple | str,
        state_block: bool = False,
    ) -> None:
        super().__init__()
        self.state_channels = out_channels
        self.f_z = EncoderDecoder(
            spatial_dims, in_channels, out_channels, features, norm, act, plain_output=True
        )
        self.f_h = EncoderDecoder(
            spatial_dims, in_channels, out_channels, features, norm, act, plain_output=True
        )
        self.f_s = (
            ConvBlock(spatial_dims, out_channels, out_channels, norm, act) if state_block else nn.Identity()
        )

    def candidate(self, e: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.f_h(e))

    def forward(self, e: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.sigmoid(self.f_z(e))
        h_new = z * h + (1.0 - z) * self.candidate(e)
        return self.f_s(h_new), h_new


class DRUCell(SRUCell):
    """Dual-gated recurrent unit (paper Sec. 3.2): an :class:`SRUCell` whose candidate sees a reset input.

    ``r = sigmoid(f_r(e)); h_hat = tanh(f_h(r * e))``; ``f_r`` maps ``in_channels -> in_channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: tuple | str,
        act: tuple | str,
        state_block: bool = False,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, features, norm, act, state_block)
        self.f_r = EncoderDecoder(
            spatial_dims, in_channels, in_channels, features, norm, act, plain_output=True
        )

    def candidate(self, e: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.f_h(torch.sigmoid(self.f_r(e)) * e))


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al.) used by the Rec-Middle and Rec-Last baselines.

    ``z, r = sigmoid(conv([e, h])); h_hat = tanh(conv([e, r * h])); h_t = (1 - z) * h + z * h_hat``.
    With ``features`` spanning more than one level, the input is first passed through the encoder-decoder
    of the replaced part; the output is the new hidden state.

    Shapes: ``e (B, in_channels, *S), h (B, out_channels, *S) -> (h_t, h_t)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: tuple | str,
        act: tuple | str,
    ) -> None:
        super().__init__()
        self.state_channels = out_channels
        self.body: nn.Module = (
            EncoderDecoder(spatial_dims, in_channels, out_channels, features, norm, act)
            if len(features) > 1
            else nn.Identity()
        )
        x_ch = out_channels if len(features) > 1 else in_channels
        conv = Conv[Conv.CONV, spatial_dims]
        self.gates = conv(x_ch + out_channels, 2 * out_channels, kernel_size=3, padding=1)
        self.cand = conv(x_ch + out_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, e: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.body(e)
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        h_hat = torch.tanh(self.cand(torch.cat([x, r * h], dim=1)))
        h_new = (1.0 - z) * h + z * h_hat
        return h_new, h_new
