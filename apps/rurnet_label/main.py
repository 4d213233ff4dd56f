"""MONAI Label app entry point: ``monailabel start_server --app apps/rurnet_label --studies DIR
--conf bundle_dir bundles --conf models retina_drive --host 127.0.0.1`` (run in the label environment).

Prefer ``python -m monai_rurnet.label.serve``, which prepares a scratch copy of this app outside the repo.
"""

from monai_rurnet.label.application import RurnetLabelApp

__all__ = ["RurnetLabelApp"]
