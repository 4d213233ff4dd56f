"""monai-rurnet: the Recurrent U-Net as a MONAI plugin."""

from monai_rurnet.errors import install_bundle_error_hook

__version__ = "0.1.0"

install_bundle_error_hook()  # `python -m monai.bundle run`: the cause first, not MONAI's wrapper
