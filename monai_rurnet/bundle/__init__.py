"""Bundle utilities: offline metadata/layout/network checks of the MONAI bundles under ``bundles/``."""

from monai_rurnet.bundle.verify import (
    REQUIRED_FILES,
    SCHEMA_FILE,
    SCHEMA_MD5,
    missing_bundle_files,
    verify_bundle,
    verify_metadata_offline,
    verify_net_in_out_offline,
)

__all__ = [
    "REQUIRED_FILES",
    "SCHEMA_FILE",
    "SCHEMA_MD5",
    "missing_bundle_files",
    "verify_bundle",
    "verify_metadata_offline",
    "verify_net_in_out_offline",
]
