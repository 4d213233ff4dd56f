"""monai-rurnet: the Recurrent U-Net as a MONAI plugin."""

__version__ = "0.1.0"
