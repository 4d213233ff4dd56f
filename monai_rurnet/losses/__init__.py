"""Losses for the Recurrent U-Net."""

from monai_rurnet.losses.multi_step import MultiStepLoss

__all__ = ["MultiStepLoss"]
