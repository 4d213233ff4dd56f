"""Ignite handlers for the pooled metrics, usable in ``SupervisedEvaluator`` ``key_val_metric`` / ``additional_metrics``.

``output_transform`` must return ``(y_pred, y)`` (e.g. ``from_engine(["pred", "label"])``) with ignored
pixels encoded as 255 in ``y``. With ``metric_name=None`` the handler returns the whole dict, and ignite also
stores each entry in ``engine.state.metrics``; key metrics need a scalar, so the defaults name one.
"""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import IgniteMetricHandler

from monai_rurnet.metrics.segmentation import (
    PaperSegMetrics,
    PRBreakEven,
    RelaxedPrecisionRecall,
    VesselMetrics,
)

__all__ = ["PaperSegMetricsHandler", "PRBreakEvenHandler", "VesselMetricsHandler", "RelaxedPRHandler"]


class PaperSegMetricsHandler(IgniteMetricHandler):
    """Handler for :class:`PaperSegMetrics`; ``metric_name`` in {mIoU, mRec, mPrec, mF1} or ``None`` (dict)."""

    def __init__(
        self,
        metric_name: str | None = "mIoU",
        threshold: float = 0.5,
        output_transform: Callable = lambda x: x,
        save_details: bool = False,
    ) -> None:
        super().__init__(
            metric_fn=PaperSegMetrics(threshold=threshold, metric_name=metric_name),
            output_transform=output_transform,
            save_details=save_details,
        )


class PRBreakEvenHandler(IgniteMetricHandler):
    """Handler for :class:`PRBreakEven`; ``metric_name`` in {breakeven, breakeven_road, threshold, ...}."""

    def __init__(
        self,
        metric_name: str | None = "breakeven",
        num_thresholds: int = 100,
        output_transform: Callable = lambda x: x,
        save_details: bool = False,
    ) -> None:
        super().__init__(
            metric_fn=PRBreakEven(num_thresholds=num_thresholds, metric_name=metric_name),
            output_transform=output_transform,
            save_details=save_details,
        )


class VesselMetricsHandler(IgniteMetricHandler):
    """Handler for :class:`VesselMetrics`; ``metric_name`` in {f1, sensitivity, specificity, accuracy, auc}."""

    def __init__(
        self,
        metric_name: str | None = "f1",
        threshold: float = 0.5,
        num_bins: int = 10000,
        output_transform: Callable = lambda x: x,
        save_details: bool = False,
    ) -> None:
        super().__init__(
            metric_fn=VesselMetrics(threshold=threshold, num_bins=num_bins, metric_name=metric_name),
            output_transform=output_transform,
            save_details=save_details,
        )


class RelaxedPRHandler(IgniteMetricHandler):
    """Handler for :class:`RelaxedPrecisionRecall`; ``metric_name`` in {relaxed_precision, relaxed_recall, relaxed_f1}."""

    def __init__(
        self,
        metric_name: str | None = "relaxed_f1",
        rho: float = 3,
        threshold: float = 0.5,
        output_transform: Callable = lambda x: x,
        save_details: bool = False,
    ) -> None:
        super().__init__(
            metric_fn=RelaxedPrecisionRecall(rho=rho, threshold=threshold, metric_name=metric_name),
            output_transform=output_transform,
            save_details=save_details,
        )
