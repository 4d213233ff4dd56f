"""Small shared utilities: atomic writes and safe checkpoint loading."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "as_bool",
    "TEMP_MARK",
    "atomic_path",
    "clean_stale_temp_files",
    "temp_name",
    "atomic_write",
    "atomic_torch_save",
    "atomic_json_dump",
    "load_state_dict_file",
]


#: Every temp file we write is named ``.<name>.rurnet-tmp-<host>-<pid>-<random><suffix>`` (hidden, beside its
#: destination), so a cleanup can recognise ours and tell which process owns one.
TEMP_MARK = ".rurnet-tmp-"
_TEMP_RE = re.compile(r"^\..+\.rurnet-tmp-(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)-[^/]*$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def temp_name(name: str) -> str:
    """A hidden temp-file name for ``name`` owned by this process, recognised by :func:`clean_stale_temp_files`
    (``.<name>.rurnet-tmp-<host>-<pid>-part<suffix>``)."""
    return f".{name}{TEMP_MARK}{_host()}-{os.getpid()}-part{Path(name).suffix}"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield a temp file path beside ``path``; on success it is renamed over ``path``, on error removed.

    An interrupted or failing write leaves no partial file at ``path``. The temp file's name carries
    :data:`TEMP_MARK`, the host and the process id (see :func:`clean_stale_temp_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}{TEMP_MARK}{_host()}-{os.getpid()}-",
        suffix=suffix or path.suffix,
        dir=path.parent,
    )
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def clean_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temp files that :func:`atomic_path` left in ``folder`` when its process was killed.

    Only files named by :func:`atomic_path` are considered, and only those of a process of this host that no
    longer runs; another run's temp files (alive, or on another host sharing the folder) and every other file
    are left alone. Returns the removed paths.
    """
    removed = []
    host = _host()
    for p in Path(folder).iterdir():
        m = _TEMP_RE.match(p.name)
        if not m or m["host"] != host or not p.is_file() or p.is_symlink():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _process_alive(pid):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path`` and rename it over ``path`` only on success."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_json_dump(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    return atomic_write(path, _write)


def load_state_dict_file(path: str | os.PathLike, network: torch.nn.Module | None = None) -> dict[str, Any]:
    """Load a weights file with ``torch.load(weights_only=True)`` and, given ``network``, load it strictly.

    Accepts a bare ``state_dict`` or a checkpoint dict holding one under ``"network"``/``"model"``/``"state_dict"``.
    Raises a ``ValueError`` naming the file when it is not a checkpoint of this network or holds NaN/Inf weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-torch files
        raise ValueError(f"{path}: not a readable PyTorch weights file ({type(e).__name__}: {e}).") from e
    if isinstance(obj, dict):
        for key in ("network", "model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: does not hold a state_dict (a dict of tensors).")
    bad = [k for k, v in obj.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(
            f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[:3]}); the file is "
            "corrupt or comes from a diverged training run. Use another checkpoint."
        )
    if network is not None:
        try:
            result = network.load_state_dict(obj, strict=False)
        except RuntimeError as e:
            raise ValueError(
                f"{path}: weights do not match {type(network).__name__} (tensor shapes differ): {str(e)[:300]} "
                "Check that the network variant and its arguments match the ones the weights were trained with."
            ) from e
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{path}: weights do not match {type(network).__name__}: "
                f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[:3]}), "
                f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[:3]}). "
                "Check that the network variant and its arguments match the ones the weights were trained with."
            )
    return obj


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def as_bool(value: Any, name: str = "value") -> bool:
    """A config/command-line flag as a bool: ``True``/``False``, 0/1 or the strings true/false, yes/no, on/off
    (any case; ``python -m monai.bundle run --flag false`` passes the *string* "false", which is truthy).

    Raises a ``ValueError`` naming the flag for anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}.")
