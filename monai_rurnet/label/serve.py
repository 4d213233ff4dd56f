"""Serve bundles from MONAI Label: ``python -m monai_rurnet.label.serve --bundle bundles/retina_drive
[--bundle bundles/massroads ...] --studies DIR [--port 8000] [--workdir DIR]``.

Runs in any environment: the server itself (:mod:`monai_rurnet.label.server`) runs with the label environment's
python (``--python``, ``$MONAI_RURNET_LABEL_PYTHON``, ``$MONAI_RURNET_LABEL_VENV`` or ``./.venv-label``). Binds 127.0.0.1
unless told otherwise. The app folder, with the app's own copy of each bundle's weights (which ``POST /train``
replaces), is ``--workdir``/app; without ``--workdir`` it is a temporary folder removed at exit. The server's
temporary files go to ``<workdir>/tmp``, removed at exit. SIGTERM/SIGINT stop everything within about 2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
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

#: seconds between SIGTERM and SIGKILL of the server's process group.
STOP_TIMEOUT = 1.5


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise _Stop(signum)


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
    p.add_argument(
        "--workdir", default=None, help="where the app folder is kept (default: a temp dir removed at exit)"
    )
    p.add_argument("--python", default=None, help="the label environment's python")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="app conf")
    p.add_argument(
        "--allow_model_upload",
        action="store_true",
        help="allow PUT/DELETE /model/<name> (off by default: MONAI Label has no authentication by default)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (MONAI Label 0.8.5 has no authentication by default: don't)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the server command and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    """Prepare the app folder and run the server in the foreground until it exits or is interrupted."""
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"Refusing to bind {args.host}: MONAI Label 0.8.5 must stay on 127.0.0.1 (see docs/monai_label.md)."
        )
        return 2
    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rurnet-label-")).resolve()
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    old_tmpdir = os.environ.get("TMPDIR")
    try:
        # every temporary file of this run, also the label environment check's (torch caches), goes to tmp
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None
        python = args.python or find_label_python(check=not args.dry_run)
        if not python:
            print(
                "No MONAI Label environment found: run `bash .ci/label_env.sh` or set MONAI_RURNET_LABEL_PYTHON."
            )
            return 2
        app = prepare_app(workdir, args.bundle)
        Path(args.studies).mkdir(parents=True, exist_ok=True)
        cmd = server_command(
            python,
            app,
            Path(args.studies).resolve(),
            args.bundle,
            args.host,
            args.port,
            dict(args.conf),
            args.allow_model_upload,
        )
        print(" ".join(cmd), flush=True)
        if args.dry_run:
            return 0
        proc = start_server(cmd, log_file=None, env=server_env())

        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            return proc.wait()
        except _Stop as e:  # raised out of wait(), so stop_server can reap the child
            stop_server(proc, timeout=STOP_TIMEOUT)
            return 128 + e.signum
    finally:
        shutil.rmtree(workdir if own_workdir else tmp, ignore_errors=True)
        if old_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmpdir
        tempfile.tempdir = None


if __name__ == "__main__":
    sys.exit(main())
