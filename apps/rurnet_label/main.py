"""MONAI Label app entry point (label environment). Serve it with our server, which adds the safety checks
and the inference worker of ``docs/monai_label.md``::

    python -m monai_rurnet.label.server --app apps/rurnet_label --studies DIR --conf bundle_dir bundles \
        --conf models retina_drive,massroads,handseg

(``monailabel start_server --app apps/rurnet_label ...`` also runs it, without those checks.) The app's own copy
of each model's weights goes to ``apps/rurnet_label/model/<name>/model.pt``. Prefer
``python -m monai_rurnet.label.serve``, which lays out a scratch copy of this app outside the repository.
"""

from monai_rurnet.label.application import RurnetLabelApp

__all__ = ["RurnetLabelApp"]
