"""Weight averaging for training: an exponential moving average (EMA) of the network's weights."""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine, Events
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from monai_rurnet.engines.handlers import _logger, _unwrap

__all__ = ["WeightAverage", "WeightAverageHandler"]


class WeightAverage:
    """Keep an EMA of the trained network's weights (and buffers) after every iteration.

    The averaged copy (:attr:`evaluated`) is what validation scores and what the best-model file holds; the
    optimizer keeps training the raw weights. Its state travels in the resumable checkpoint
    (:class:`~monai_rurnet.engines.ResumableCheckpoint`'s ``averaged``). ``decay=0`` turns it off: :attr:`evaluated` is
    then the network itself and nothing is averaged.

    Args:
        network: the trained network (a ``DistributedDataParallel`` wrapper is unwrapped).
        decay: EMA decay per iteration in [0, 1), e.g. 0.999 (an average over about 1000 iterations).
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.0) -> None:
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 turns averaging off), got {decay}.")
        self.network = network
        self.decay = decay
        self.averaged = (
            AveragedModel(_unwrap(network), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
            if decay > 0
            else None
        )

    @property
    def evaluated(self) -> torch.nn.Module:
        """The module to validate and save: the averaged copy, or the network when averaging is off."""
        return self.network if self.averaged is None else self.averaged.module

    def update(self) -> None:
        """Fold the current weights into the average (the first update copies them); nothing when off."""
        if self.averaged is not None:
            self.averaged.update_parameters(_unwrap(self.network))

    def state_dict(self) -> dict[str, Any]:
        return {} if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the average; an empty state (a checkpoint saved without averaging) starts it afresh."""
        if self.averaged is None:
            return
        if state:
            self.averaged.load_state_dict(state)
        else:
            _logger().info("The checkpoint has no weight average: averaging starts afresh.")


class WeightAverageHandler:
    """Update a :class:`WeightAverage` after every training iteration (attach to the trainer)."""

    def __init__(self, average: WeightAverage) -> None:
        self.average = average

    def attach(self, engine: Engine) -> None:
        if self.average.averaged is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: self.average.update())
