"""Losses for the Recurrent U-Net."""

from monai_rurnet.losses.cldice import WithClDiceLoss, soft_cldice
from monai_rurnet.losses.masked import IgnoreValueLoss, MaskedDiceCELoss
from monai_rurnet.losses.multi_step import MultiStepLoss

__all__ = ["MultiStepLoss", "IgnoreValueLoss", "MaskedDiceCELoss", "WithClDiceLoss", "soft_cldice"]
