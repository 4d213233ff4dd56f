"""Losses for the Recurrent U-Net."""

from monai_rurnet.losses.multi_step import MultiStepLoss

__all__ = ["MultiStepLoss"]
from monai_rurnet.losses.masked import IgnoreValueLoss, MaskedDiceCELoss

__all__ += ["IgnoreValueLoss", "MaskedDiceCELoss"]
from monai_rurnet.losses.cldice import WithClDiceLoss, soft_cldice

__all__ += ["WithClDiceLoss", "soft_cldice"]
