"""MONAI Label integration: serve monai-rurnet bundles (``python -m monai_rurnet.label.serve``).

This package's top level needs only the standard library; ``segment`` and ``finetune`` need torch/MONAI;
``application``, ``infer``, ``train`` and ``server`` need ``monailabel`` (the separate label environment, see
``docs/monai_label.md``).
"""

from monai_rurnet.label.app import (
    LABEL_PYTHON_ENV,
    app_model_file,
    copy_file_atomic,
    find_label_python,
    free_port,
    is_loopback,
    prepare_app,
    server_command,
    server_env,
    start_server,
    stock_sample_app,
    stop_server,
    wait_until_ready,
)

__all__ = [
    "LABEL_PYTHON_ENV",
    "app_model_file",
    "copy_file_atomic",
    "find_label_python",
    "free_port",
    "is_loopback",
    "prepare_app",
    "server_command",
    "server_env",
    "start_server",
    "stock_sample_app",
    "stop_server",
    "wait_until_ready",
]
