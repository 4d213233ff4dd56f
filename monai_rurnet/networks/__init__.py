"""Recurrent U-Net networks and the paper's baselines."""

from monai_rurnet.networks.blocks import ConvBlock, ConvGRUCell, DRUCell, EncoderDecoder, SRUCell, UpStage
from monai_rurnet.networks.export import StepModule, export_step_onnx, load_step_onnx, recurrent_info
from monai_rurnet.networks.registry import NETWORKS, available_networks, build_network, register_network
from monai_rurnet.networks.rurnet import RecurrentUNet, check_spatial_size, valid_sizes

__all__ = [
    "StepModule",
    "export_step_onnx",
    "load_step_onnx",
    "recurrent_info",
    "ConvBlock",
    "ConvGRUCell",
    "DRUCell",
    "EncoderDecoder",
    "SRUCell",
    "UpStage",
    "NETWORKS",
    "available_networks",
    "build_network",
    "register_network",
    "RecurrentUNet",
    "check_spatial_size",
    "valid_sizes",
]
