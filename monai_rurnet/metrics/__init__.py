"""Segmentation metrics of the Recurrent U-Net paper and the retina / roads literature, with ignite handlers."""

from __future__ import annotations

from monai_rurnet.metrics.handlers import (
    PaperSegMetricsHandler,
    PRBreakEvenHandler,
    RelaxedPRHandler,
    VesselMetricsHandler,
)
from monai_rurnet.metrics.segmentation import (
    PaperSegMetrics,
    PRBreakEven,
    RelaxedPrecisionRecall,
    VesselMetrics,
    auc_from_histograms,
    breakeven_from_histograms,
    breakeven_point,
    paper_metrics_from_confusion,
    pr_curve_from_histograms,
    roc_curve_from_histograms,
)
from monai_rurnet.metrics.utils import (
    IGNORE_VALUE,
    apply_fov,
    apply_ignore,
    binarize_label,
    prepare_binary,
)

__all__ = [
    "IGNORE_VALUE",
    "PRBreakEven",
    "PRBreakEvenHandler",
    "PaperSegMetrics",
    "PaperSegMetricsHandler",
    "RelaxedPRHandler",
    "RelaxedPrecisionRecall",
    "VesselMetrics",
    "VesselMetricsHandler",
    "apply_fov",
    "apply_ignore",
    "auc_from_histograms",
    "binarize_label",
    "breakeven_from_histograms",
    "breakeven_point",
    "paper_metrics_from_confusion",
    "pr_curve_from_histograms",
    "prepare_binary",
    "roc_curve_from_histograms",
]
