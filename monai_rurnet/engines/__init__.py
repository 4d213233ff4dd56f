"""Shared training/evaluation machinery (ignite handlers) used by every bundle."""

from monai_rurnet.engines.distributed import (
    init_distributed_from_env,
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

__all__ = [
    "announce_evaluation",
    "BestModelSaver",
    "GradientClipHandler",
    "MetricsJsonWriter",
    "NaNLossGuard",
    "OverlaySaver",
    "ResumableCheckpoint",
    "init_distributed_from_env",
    "shard_spec",
    "shutdown_distributed",
    "sum_across_ranks",
    "take_shard",
]
