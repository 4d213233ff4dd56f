"""A registry of the paper's network variants, built by name with overrides (as configs name them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn
from monai.networks.nets import BasicUNet

from monai_rurnet.networks.rurnet import RecurrentUNet

__all__ = ["NETWORKS", "build_network", "register_network", "available_networks"]

NETWORKS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], str]] = {}


def register_network(name: str, builder: Callable[..., nn.Module], description: str, **defaults: Any) -> None:
    """Register ``builder`` (called with ``defaults`` updated by the user's overrides) under ``name``."""
    if name in NETWORKS:
        raise KeyError(f"Network {name!r} is already registered.")
    NETWORKS[name] = (builder, defaults, description)


def available_networks() -> dict[str, str]:
    """Names of the registered variants and what each is."""
    return {name: desc for name, (_, _, desc) in NETWORKS.items()}


def build_network(name: str, **overrides: Any) -> nn.Module:
    """Build a registered variant, e.g. ``build_network("dru", level=4)`` or ``build_network("unet_g")``.

    Overrides are passed to the builder (``spatial_dims``, ``in_channels``, ``out_channels``, ``features``,
    ``steps``, ...). Unknown names raise a ``KeyError`` listing the available ones.
    """
    key = name.lower().replace("-", "_")
    if key not in NETWORKS:
        raise KeyError(f"Unknown network {name!r}. Available: {', '.join(sorted(NETWORKS))}.")
    builder, defaults, _ = NETWORKS[key]
    kwargs = {**defaults, **overrides}
    try:
        return builder(**kwargs)
    except TypeError as e:
        raise TypeError(f"Cannot build network {name!r} with arguments {sorted(kwargs)}: {e}") from e


def _monai_basic_unet(
    spatial_dims: int = 2,
    in_channels: int = 3,
    out_channels: int = 2,
    features: tuple[int, ...] = (8, 16, 32, 64, 128, 8),
    **kwargs: Any,
) -> nn.Module:
    return BasicUNet(spatial_dims, in_channels, out_channels, features=features, **kwargs)


_GN = ("group", {"num_groups": 8})
register_network(
    "dru", RecurrentUNet, "Ours-DRU(l): dual-gated recurrent unit, mask recurrence", cell="dru", level=4
)
register_network(
    "sru", RecurrentUNet, "Ours-SRU(l): single-gated recurrent unit, mask recurrence", cell="sru", level=0
)
register_network(
    "unet_g",
    RecurrentUNet,
    "U-Net-G: plain U-Net with GroupNorm",
    cell=None,
    mask_recurrence=False,
    steps=1,
    norm=_GN,
)
register_network(
    "unet_b",
    RecurrentUNet,
    "U-Net-B: plain U-Net with BatchNorm",
    cell=None,
    mask_recurrence=False,
    steps=1,
    norm="batch",
)
register_network(
    "rec_simple", RecurrentUNet, "Rec-Simple: mask recurrence only", cell=None, mask_recurrence=True, steps=3
)
register_network(
    "rec_last",
    RecurrentUNet,
    "Rec-Last: ConvGRU after the U-Net output",
    cell="convgru",
    level=0,
    mask_recurrence=False,
)
register_network(
    "rec_middle",
    RecurrentUNet,
    "Rec-Middle: ConvGRU at the bottleneck",
    cell="convgru",
    level=4,
    mask_recurrence=False,
)
register_network(
    "monai_basic_unet", _monai_basic_unet, "MONAI BasicUNet(features=(8,16,32,64,128,8)), the peer baseline"
)
