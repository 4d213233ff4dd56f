"""Warm-start a Recurrent U-Net from the weights of its plain backbone (U-Net-G: ``cell=None``, no mask recurrence).

On few training images the plain backbone learns faster than the recurrent network from scratch (massroads docs,
issue 23): training U-Net-G first, then the recurrent network from its weights, gives the recurrent network the
backbone's features. :func:`recurrent_from_plain` maps a U-Net-G ``state_dict`` onto a DRU / SRU network of the same
``features`` and ``norm``:

- encoder, decoder and head: copied;
- first convolution: the image channels copied, the extra mask-recurrence (and stroke) input channels zero, so the
  first step sees the image as the backbone did;
- the recurrent unit: ``f_h`` (the candidate) and every layer of ``f_z`` but its output convolution take the
  backbone's middle part (``unit.body``) wherever the shapes agree; the output convolutions of the gates ``f_z``
  and ``f_r`` (DRU) get zero weights and constant biases ``z_bias`` / ``r_bias``, so each gate starts at a constant
  (``sigmoid(z_bias)``; the state update is ``h_t = z * h_{t-1} + (1 - z) * h_hat``). Layers of the unit that
  match no backbone tensor keep the network's own initialisation.

Command line (writes a ``state_dict`` that ``--init_weights`` loads strictly)::

    python -m monai_rurnet.networks.warm_start UNET_G.pt OUT.pt --cell dru --level 4 --z_bias 3
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

import torch

from monai_rurnet.networks.rurnet import RecurrentUNet
from monai_rurnet.utils import atomic_torch_save, load_state_dict_file

__all__ = ["recurrent_from_plain", "main"]


def _output_conv(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    """Key prefix (without ``.weight``) of the last convolution under ``prefix``."""
    convs = [
        k[: -len(".weight")]
        for k, v in state.items()
        if k.startswith(prefix) and k.endswith(".weight") and v.dim() > 2
    ]
    if not convs:
        raise ValueError(f"No convolution under {prefix!r}.")
    return convs[-1]


def recurrent_from_plain(
    plain: Mapping[str, torch.Tensor], network: RecurrentUNet, z_bias: float = -3.0, r_bias: float = 3.0
) -> dict[str, torch.Tensor]:
    """A ``state_dict`` for ``network`` (a DRU or SRU :class:`RecurrentUNet`) built from ``plain``, the
    ``state_dict`` of the U-Net-G of the same ``features``/``norm`` (``build_network("unet_g")``).

    Args:
        plain: the backbone's weights; every one of its encoder / decoder / head tensors must fit ``network``.
        network: the recurrent network to start; its own initialisation fills what ``plain`` has no tensor for.
        z_bias: bias of the update gate's output convolution (weights zero): ``-3`` starts with
            ``h_t ~ h_hat`` (the candidate, i.e. the backbone's middle part under ``tanh``), ``+3`` with the state
            kept near its initial value.
        r_bias: bias of the DRU reset gate's output convolution (weights zero): ``+3`` passes the input through.

    Raises:
        ValueError: ``network`` has no DRU/SRU unit or has it at level 0 (the unit would hold the first
            convolution), ``plain`` is not a U-Net-G's, or a backbone tensor does not fit (other ``features`` or
            ``level``).
    """
    if network.cell_name not in ("dru", "sru"):
        raise ValueError(f"recurrent_from_plain starts a DRU or SRU network, got cell={network.cell_name!r}.")
    if network.level < 1:
        raise ValueError(
            "recurrent_from_plain needs the unit below the first level (level >= 1), got level 0."
        )
    if not any(k.startswith("unit.body.") for k in plain):
        raise ValueError(
            "not the weights of a plain U-Net-G (no 'unit.body.' tensors; got e.g. "
            f"{sorted(k for k in plain if k.startswith('unit.'))[:2]}): train build_network('unet_g') first."
        )
    state = {k: v.clone() for k, v in network.state_dict().items()}
    first = "encoder.0.0.weight"
    for key, value in plain.items():
        if key.startswith("unit."):
            continue
        if key not in state:
            raise ValueError(
                f"Backbone tensor {key!r} has no place in the {network.cell_name.upper()} network: "
                "build both with the same features and level."
            )
        target = state[key]
        if target.shape == value.shape:
            state[key] = value.clone()
        elif key == first and target.shape[0] == value.shape[0] and target.shape[1] > value.shape[1]:
            target.zero_()
            target[:, : value.shape[1]] = value
        else:
            raise ValueError(
                f"Backbone tensor {key!r} has shape {tuple(value.shape)}, the network needs {tuple(target.shape)}: "
                "build both with the same features and norm."
            )
    gates = ["f_z"] + (["f_r"] if network.cell_name == "dru" else [])
    outputs = {g: _output_conv(state, f"unit.{g}.") for g in gates}
    for key, value in plain.items():
        if not key.startswith("unit.body."):
            continue
        rest = key[len("unit.body.") :]
        for name in (f"unit.f_h.{rest}", f"unit.f_z.{rest}"):
            if name.startswith(f"{outputs['f_z']}."):
                continue
            if name in state and state[name].shape == value.shape:
                state[name] = value.clone()
    for gate, bias in (("f_z", z_bias), ("f_r", r_bias)):
        if gate in outputs:
            state[f"{outputs[gate]}.weight"].zero_()
            state[f"{outputs[gate]}.bias"].fill_(float(bias))
    return state


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m monai_rurnet.networks.warm_start PLAIN OUT [--cell dru --level 4 --steps 3 --z_bias 3]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plain", help="U-Net-G weights (state_dict or checkpoint)")
    ap.add_argument("out", help="where to write the recurrent network's state_dict")
    ap.add_argument("--cell", choices=("dru", "sru"), default="dru")
    ap.add_argument("--level", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--spatial_dims", type=int, default=2)
    ap.add_argument("--in_channels", type=int, default=3)
    ap.add_argument("--out_channels", type=int, default=2)
    ap.add_argument("--z_bias", type=float, default=-3.0)
    ap.add_argument("--r_bias", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0, help="seed of the layers the backbone has no weights for")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    net = RecurrentUNet(
        args.spatial_dims,
        args.in_channels,
        args.out_channels,
        cell=args.cell,
        level=args.level,
        steps=args.steps,
    )
    try:
        plain = load_state_dict_file(args.plain)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    try:
        state = recurrent_from_plain(plain, net, args.z_bias, args.r_bias)
    except ValueError as e:
        raise SystemExit(f"error: {args.plain}: {e}") from e
    atomic_torch_save(state, args.out)
    print(f"{args.out}: {args.cell.upper()}({args.level}) weights from the backbone {args.plain}")


if __name__ == "__main__":
    main()
