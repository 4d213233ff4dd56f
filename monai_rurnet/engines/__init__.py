"""Shared training/evaluation machinery (ignite handlers) used by every bundle."""

from monai_rurnet.engines.averaging import WeightAverage, WeightAverageHandler
from monai_rurnet.engines.distributed import (
    all_ranks_ok,
    init_distributed_from_env,
    rank_and_world,
    shard_spec,
    shutdown_distributed,
    sum_across_ranks,
    take_shard,
)
from monai_rurnet.engines.evaluation import announce_evaluation
from monai_rurnet.engines.handlers import (
    BestModelSaver,
    GradientClipHandler,
    MetricsJsonWriter,
    NaNLossGuard,
    OverlaySaver,
    ResumableCheckpoint,
)
from monai_rurnet.engines.interaction import PrepareGuidedBatch, StrokeFocusLoss, StrokeInteraction

__all__ = [
    "announce_evaluation",
    "BestModelSaver",
    "GradientClipHandler",
    "MetricsJsonWriter",
    "NaNLossGuard",
    "OverlaySaver",
    "ResumableCheckpoint",
    "PrepareGuidedBatch",
    "StrokeFocusLoss",
    "StrokeInteraction",
    "WeightAverage",
    "WeightAverageHandler",
    "all_ranks_ok",
    "init_distributed_from_env",
    "rank_and_world",
    "shard_spec",
    "shutdown_distributed",
    "sum_across_ranks",
    "take_shard",
]
