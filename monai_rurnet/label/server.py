"""MONAI Label's server with our safety checks and inference off the event loop (needs the label environment).

``python -m monai_rurnet.label.server --app APP --studies DIR [--host 127.0.0.1] [--port 8000] [--conf K V ...]
[--allow_model_upload]`` serves MONAI Label's own FastAPI app (``monailabel.app``) with these changes:

* every image id, label id and tag in a query is a plain name (:func:`~monai_rurnet.label.safety.is_safe_name`),
  else 400; an image id that is not in the datastore is 404 (except for ``PUT /datastore/image``, which adds
  one), and so is a model that is not served; nothing is read or written for a refused request;
* ``PUT``/``DELETE /model/<name>`` answer 403 unless ``--allow_model_upload``; sessions, WSI inference and the
  DICOM proxy (not used by our 2D bundles) answer 404;
* malformed JSON ``params``/``info`` fields or train options answer 422; an uploaded file must be a plain name
  with a raster suffix (400), and the JSON ``params`` of ``/infer`` cannot change the image or the label tag;
* ``POST /infer/<bundle>_refine`` also takes ``label`` (the current label) and ``strokes`` (0/1/2) uploads; a bad
  refinement request (malformed points, points outside the image, images of the wrong size) answers 422;
* ``POST /infer/<model>`` runs in a worker thread, one inference at a time in arrival order, so the server
  keeps answering (``GET /info/``) while it runs; each request's files live in a folder removed after the answer;
* SIGTERM/SIGINT stop it within about a second (MONAI Label's own server waits for its 30 s session timer).
"""

# no ``from __future__ import annotations``: FastAPI reads the route functions' annotations at run time
import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import tempfile
from argparse import Namespace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from monai_rurnet.label.safety import (
    check_image_ids,
    check_name,
    check_upload_name,
    is_safe_name,
    parse_params,
)

__all__ = ["NAME_PARAMS", "build_parser", "guard", "create_app", "main"]

logger = logging.getLogger(__name__)

#: query parameters holding an image id, a label id or a tag.
NAME_PARAMS = ("image", "id", "label", "tag", "label_tag")
#: routes that are not served (not needed by 2D bundles; sessions unpack uploads, WSI inference takes paths).
BLOCKED = re.compile(r"^/(session|proxy)(/|$)|^/infer/wsi")
MODEL_ROUTE = re.compile(r"^/(infer|train|model|model/info|batch/infer)/([^/]+)/?$")
#: ``/infer`` params that the server sets itself.
RESERVED_PARAMS = (
    "model", "image", "file", "label", "strokes", "prior_source", "session", "session_id", "save_label"
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The server's arguments."""
    p = argparse.ArgumentParser(
        prog="python -m monai_rurnet.label.server", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--app", required=True, help="the app folder (holds main.py)")
    p.add_argument("--studies", required=True, help="the studies folder (MONAI Label's local datastore)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help="app conf")
    p.add_argument("--allow_model_upload", action="store_true", help="allow PUT/DELETE /model/<name>")
    p.add_argument("--log_level", default="info")
    return p


def guard(
    method: str, path: str, query: dict[str, list[str]], served: Any, allow_model_upload: bool
) -> tuple[int, str] | None:
    """``(status, reason)`` when a request must be refused before it reaches MONAI Label, else ``None``.

    ``served`` gives ``models()``, ``trainers()`` and ``images()`` (sets of names) on demand.
    """
    path = "/" + path.strip("/")
    if BLOCKED.match(path):
        return 404, f"{path} is not served by monai-rurnet"
    for key in NAME_PARAMS:
        for value in query.get(key, []):
            if not is_safe_name(value):
                return (
                    400,
                    f"invalid {key} {value!r}: a plain name is expected (no '..', separator or absolute path)",
                )
    m = MODEL_ROUTE.match(path)
    if m:
        kind, name = m.groups()
        if kind == "model" and method in ("PUT", "DELETE") and not allow_model_upload:
            return 403, "model upload and deletion are off (start the server with --allow_model_upload)"
        known = served.trainers() if kind == "train" else served.models()
        if name not in known:
            return 404, f"no {'trainer' if kind == 'train' else 'model'} named {name!r}"
    adds_image = method == "PUT" and path in ("/datastore", "/datastore/image")
    if path.startswith("/datastore") and not adds_image or path.startswith("/infer/"):
        ids = [v for key in ("image", "id", "label") for v in query.get(key, [])]
        if ids:
            images = served.images()
            for value in ids:
                if value not in images:
                    return 404, f"image {value!r} is not in the datastore"
    return None


class _Served:
    """What the running app serves, looked up when a request needs it."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def models(self) -> set[str]:
        return set(self.instance._infers)

    def trainers(self) -> set[str]:
        return set(self.instance._trainers)

    def images(self) -> set[str]:
        return set(self.instance.datastore().list_images())


def _init_settings(args: Namespace) -> None:
    """MONAI Label's own settings step of ``start_server`` (also exported to the environment, which the
    training subprocess reads)."""
    from monailabel.main import Main

    os.environ.setdefault("MONAI_LABEL_SESSIONS", "false")
    ns = Namespace(conf=args.conf, port=args.port, app=str(Path(args.app).resolve()), dryrun=False)
    ns.studies = str(Path(args.studies).resolve())
    Main().start_server_init_settings(ns)


def create_app(allow_model_upload: bool = False) -> Any:
    """MONAI Label's FastAPI app with our routes and checks (settings must be initialised first)."""
    from fastapi import BackgroundTasks, Depends, File, Form, HTTPException, UploadFile
    from fastapi.responses import JSONResponse
    from monailabel.app import app
    from monailabel.config import settings
    from monailabel.endpoints import datastore as datastore_ep
    from monailabel.endpoints import train as train_ep
    from monailabel.endpoints.infer import ResultType, send_response
    from monailabel.endpoints.user.auth import RBAC, User
    from monailabel.interfaces.exception import ImageNotFoundException
    from monailabel.interfaces.utils.app import app_instance
    from starlette.concurrency import run_in_threadpool

    from monai_rurnet.label.finetune import check_options
    from monai_rurnet.label.infer import RurnetRefineTask
    from monai_rurnet.label.refine import RefineRequestError

    infer_lock = asyncio.Lock()  # FIFO: concurrent /infer requests are queued, each is answered
    user_role = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))
    annotator_role = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR))
    admin_role = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))

    def bad(status: int, error: Exception) -> HTTPException:
        return HTTPException(status_code=status, detail=str(error))

    def upload_suffix(upload: Any, what: str) -> str:
        """The upload's suffix (``""`` without one; 400 for a bad file name)."""
        try:
            return check_upload_name(upload.filename, what) if upload else ""
        except ValueError as e:
            raise bad(400, e) from e

    def check_form(params: str, upload: Any, what: str) -> tuple[dict[str, Any], str]:
        """The form's JSON params (422 when malformed) and the upload's suffix (400 for a bad file name)."""
        try:
            p = parse_params(params)
        except ValueError as e:
            raise bad(422, e) from e
        return p, upload_suffix(upload, what)

    async def infer(
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        params: str = Form("{}"),
        file: UploadFile = File(None),
        label: UploadFile = File(None),
        strokes: UploadFile = File(None),
        output: ResultType | None = None,
        user: User = user_role,
    ):
        p, suffix = check_form(params, file, "uploaded image")
        uploads = {"image": (file, suffix)}
        uploads.update(
            {k: (u, upload_suffix(u, f"uploaded {k}")) for k, u in (("label", label), ("strokes", strokes))}
        )
        try:
            if p.get("label_tag") is not None:
                check_name(p["label_tag"], "label_tag")
        except ValueError as e:
            raise bad(422, e) from e
        if not file and not image:
            raise HTTPException(status_code=422, detail="give an image id (?image=ID) or upload a file")
        instance = app_instance()
        if (label or strokes) and not isinstance(instance._infers.get(model), RurnetRefineTask):
            raise HTTPException(
                status_code=422, detail=f"{model} takes no label or strokes (use a _refine model)"
            )
        work = tempfile.mkdtemp(prefix="rurnet-request-")
        result: dict[str, Any] = {}
        try:
            request = dict(instance.info().get("config", {}).get("infer", {}))
            request.update({k: v for k, v in p.items() if k not in RESERVED_PARAMS})
            request.update({"model": model, "image": image})
            for key, (upload, ext) in uploads.items():
                if upload:
                    request[key] = os.path.join(work, f"{'upload' if key == 'image' else key}{ext}")
                    await run_in_threadpool(_save_upload, upload, request[key])
            if label:
                request["prior_source"] = "uploaded label"
            async with infer_lock:
                result = await run_in_threadpool(instance.infer, request)
            background_tasks.add_task(shutil.rmtree, work, True)
            return send_response(instance.datastore(), result, output, background_tasks)
        except Exception as e:
            shutil.rmtree(work, ignore_errors=True)
            if result.get("file"):
                Path(result["file"]).unlink(missing_ok=True)
            if isinstance(e, HTTPException):
                raise
            if isinstance(e, RefineRequestError):
                raise bad(422, e) from e
            logger.exception(f"inference of {image or 'an uploaded file'} with {model} failed")
            raise HTTPException(status_code=500, detail=f"{type(e).__name__}: {e}") from e

    async def add_image(
        background_tasks: BackgroundTasks,
        image: str | None = None,
        params: str = Form("{}"),
        file: UploadFile = File(...),
        user: User = annotator_role,
    ):
        _, suffix = check_form(params, file, "uploaded image")
        try:
            image = image or check_name(file.filename[: -len(suffix)], "image id")
        except ValueError as e:
            raise bad(400, e) from e
        return await run_in_threadpool(
            datastore_ep.add_image, background_tasks, image, params, file, user.username
        )

    async def save_label(
        background_tasks: BackgroundTasks,
        image: str,
        params: str = Form("{}"),
        tag: str = "final",
        label: UploadFile = File(...),
        user: User = annotator_role,
    ):
        check_form(params, label, "uploaded label")
        return await run_in_threadpool(
            datastore_ep.save_label, background_tasks, image, params, tag, label, user.username
        )

    async def train(
        model: str,
        params: dict | None = None,
        run_sync: bool = False,
        enqueue: bool = False,
        user: User = admin_role,
    ):
        try:
            check_options(params or {})
            if (params or {}).get("images") is not None:
                missing = set(check_image_ids(params["images"])) - _Served(app_instance()).images()
                if missing:
                    raise HTTPException(
                        status_code=404, detail=f"images not in the datastore: {sorted(missing)}"
                    )
        except ValueError as e:
            raise bad(422, e) from e
        return await run_in_threadpool(train_ep.run_model, model, params, run_sync, enqueue)

    _replace_route(app, "/infer/{model}", "POST", infer)
    _replace_route(app, "/datastore/image", "PUT", add_image)
    _replace_route(app, "/datastore/", "PUT", add_image)
    _replace_route(app, "/datastore/label", "PUT", save_label)
    _replace_route(app, "/train/{model}", "POST", train)

    async def json_error(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"malformed JSON: {exc}"}, status_code=422)

    async def not_found(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    app.add_exception_handler(json.JSONDecodeError, json_error)
    app.add_exception_handler(ImageNotFoundException, not_found)
    app.add_middleware(_GuardMiddleware, allow_model_upload=allow_model_upload)
    return app


def _save_upload(file: Any, path: str) -> None:
    with open(path, "wb") as out:
        shutil.copyfileobj(file.file, out)


def _replace_route(app: Any, path: str, method: str, endpoint: Any) -> None:
    """Serve ``method path`` with ``endpoint`` instead of MONAI Label's route: ours is put first, so it matches
    first and shadows theirs."""
    app.add_api_route(path, endpoint, methods=[method])
    app.router.routes.insert(0, app.router.routes.pop())


class _GuardMiddleware:
    """ASGI middleware refusing requests with :func:`guard` before any route runs."""

    def __init__(self, app: Any, allow_model_upload: bool = False) -> None:
        self.app = app
        self.allow_model_upload = allow_model_upload

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from fastapi.responses import JSONResponse
            from monailabel.interfaces.utils.app import app_instance

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            refused = guard(
                scope["method"], scope["path"], query, _Served(app_instance()), self.allow_model_upload
            )
            if refused is not None:
                status, reason = refused
                logger.warning(f"refused {scope['method']} {scope['path']}: {status} {reason}")
                await JSONResponse({"detail": reason}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT, then exit at once (background threads are not waited for)."""
    args = build_parser().parse_args(argv)
    _init_settings(args)
    import uvicorn

    app = create_app(allow_model_upload=args.allow_model_upload)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=1
    )
    code = 0
    try:
        uvicorn.Server(config).run()
    except BaseException:  # startup failures: report, then exit without waiting for MONAI Label's threads
        logger.exception("the MONAI Label server failed")
        code = 1
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
