"""Shared training/evaluation machinery (ignite handlers) used by every bundle."""

from monai_rurnet.engines.distributed import shutdown_distributed
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
    "shutdown_distributed",
]
