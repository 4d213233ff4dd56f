"""Serve bundles from MONAI Label: ``python -m monai_rurnet.label.serve --bundle bundles/retina_drive
--studies DIR [--port 8000]``.

Runs in any environment: the server itself runs with the label environment's python (``--python``,
``$MONAI_RURNET_LABEL_PYTHON``, ``$MONAI_RURNET_LABEL_VENV`` or ``./.venv-label``). Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from monai_rurnet.label.app import (
    find_label_python,
    is_loopback,
    prepare_app,
    server_command,
    server_env,
    start_server,
    stop_server,
)

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    p = argparse.ArgumentParser(
        prog="python -m monai_rurnet.label.serve", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--bundle", action="append", required=True, help="bundle folder (repeat for several models)"
    )
    p.add_argument("--studies", required=True, help="folder of images (png/jpg/tif) to label")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workdir", default=None, help="where the app folder is laid out (default: a temp dir)")
    p.add_argument("--python", default=None, help="the label environment's python")
    p.add_argument("--copy", action="store_true", help="copy bundles into the app instead of symlinking")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="app conf")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (MONAI Label 0.8.5 has a known path-traversal advisory: don't)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the server command and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    """Prepare the app folder and run the server in the foreground until interrupted."""
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"Refusing to bind {args.host}: MONAI Label 0.8.5 must stay on 127.0.0.1 (see docs/monai_label.md)."
        )
        return 2
    python = args.python or find_label_python(check=not args.dry_run)
    if not python:
        print(
            "No MONAI Label environment found: run `bash .ci/label_env.sh` or set MONAI_RURNET_LABEL_PYTHON."
        )
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rurnet-label-"))
    app = prepare_app(workdir, args.bundle, copy=args.copy)
    models = [Path(b).resolve().name for b in args.bundle]
    Path(args.studies).mkdir(parents=True, exist_ok=True)
    cmd = server_command(
        python, app, Path(args.studies).resolve(), models, args.host, args.port, dict(args.conf)
    )
    print(" ".join(cmd), flush=True)
    if args.dry_run:
        return 0
    proc = start_server(
        cmd, log_file=None, env=server_env({"MONAI_LABEL_SESSION_PATH": str(workdir / "sessions")})
    )

    def _stop(signum: int, frame: object) -> None:
        stop_server(proc)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
