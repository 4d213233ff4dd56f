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
    paper_metrics_from_confusion,
)
from monai_rurnet.metrics.utils import (
    IGNORE_VALUE,
    apply_fov,
    apply_ignore,
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
    "breakeven_from_histograms",
    "paper_metrics_from_confusion",
    "prepare_binary",
]
