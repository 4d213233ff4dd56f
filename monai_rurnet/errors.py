"""Error reporting for the command-line entries: the cause first, with the file it names, then (on request) the
traceback.

MONAI's config parser wraps every error raised while it builds or runs a component in ``RuntimeError("Failed to
instantiate ...")`` / ``"Failed to evaluate ConfigExpression ..."``, so ``python -m monai.bundle run`` used to end
a 40-line traceback with that wrapper instead of the cause. When this package is imported by that command, an
exception hook prints ``error: <cause>`` first; the traceback follows only with ``--debug true`` or
``MONAI_RURNET_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType

__all__ = ["root_cause", "report_error", "install_bundle_error_hook"]


_MONAI_WRAPPERS = ("Failed to instantiate", "Failed to evaluate", "applying transform")


def root_cause(error: BaseException) -> BaseException:
    """The error under MONAI's wrappers (``RuntimeError("Failed to instantiate ...")``, ``"applying transform
    ..."``): the first error of the ``raise ... from`` chain that is not one of them, so that our own messages,
    which name the file, are kept even when they wrap a library's error in turn."""
    while (
        error.__cause__ is not None
        and isinstance(error, RuntimeError)
        and str(error).lstrip().startswith(_MONAI_WRAPPERS)
    ):
        error = error.__cause__
    return error


def _truthy(text: str) -> bool:
    """``text`` as a boolean with :func:`~monai_rurnet.utils.as_bool`'s spellings; anything else is False."""
    from monai_rurnet.utils import as_bool  # imported on the error path only (it pulls in torch)

    try:
        return as_bool(text)
    except ValueError:
        return False


def _debug_requested(argv: list[str]) -> bool:
    if _truthy(os.environ.get("MONAI_RURNET_DEBUG", "")):
        return True
    for i, arg in enumerate(argv):
        if arg == "--debug":
            return i + 1 >= len(argv) or _truthy(argv[i + 1])
        if arg.startswith("--debug="):
            return _truthy(arg.split("=", 1)[1])
    return False


def report_error(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None, argv: list[str] | None = None
) -> None:
    """Print ``error: <root cause>`` to stderr, then the traceback when debugging was asked for."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    cause = root_cause(exc)
    print(f"error: {cause}" if str(cause) else f"error: {type(cause).__name__}", file=sys.stderr)
    if _debug_requested(sys.argv if argv is None else argv):
        traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
    else:
        print(
            f"({type(cause).__name__}; add --debug true, or set MONAI_RURNET_DEBUG=1, for the traceback)",
            file=sys.stderr,
        )


def install_bundle_error_hook() -> bool:
    """Install :func:`report_error` as ``sys.excepthook`` when the process is ``python -m monai.bundle``
    (also under ``torchrun -m monai.bundle``); returns whether it did."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None or not str(spec.name).startswith("monai.bundle"):
        return False
    sys.excepthook = report_error
    return True
