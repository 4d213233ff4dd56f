"""Offline checks of the bundles: metadata against the shipped MONAI schema, layout, network I/O.

``python -m monai.bundle verify_metadata`` downloads the schema named in ``metadata.json`` only when
``--filepath`` does not exist, so pointing it at the shipped copy works offline::

    python -m monai.bundle verify_metadata --meta_file bundles/retina_drive/configs/metadata.json \
        --filepath monai_rurnet/bundle/schemas/meta_schema.json --hash_val 76e1add273836515d0bbb3bc71962474

The same checks from Python (or ``python -m monai_rurnet.bundle bundles/retina_drive ...``)::

    from monai_rurnet.bundle import verify_metadata_offline, verify_bundle
    verify_metadata_offline("bundles/retina_drive/configs/metadata.json")
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_MD5",
    "REQUIRED_FILES",
    "verify_metadata_offline",
    "missing_bundle_files",
    "verify_net_in_out_offline",
    "verify_bundle",
    "main",
]

#: the MONAI bundle metadata schema (``meta_schema_20240725.json`` of MONAI-extra-test-data 0.8.1), verbatim,
#: shipped as package data (``schemas/README.md`` beside it says where it comes from).
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "meta_schema.json"
#: its md5 (``--hash_val`` of ``monai.bundle verify_metadata`` checks the local copy with it).
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"
#: files every bundle must have (MONAI model-zoo layout, design note section 4).
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
    "models/model.pt",
)


def verify_metadata_offline(
    meta_file: str | os.PathLike, schema_file: str | os.PathLike = SCHEMA_FILE
) -> dict[str, Any]:
    """Validate ``meta_file`` against ``schema_file`` with ``jsonschema`` (no download) and return the metadata.

    The validator class follows the schema's ``$schema`` (draft 2019-09 for MONAI's schema).

    Raises:
        FileNotFoundError: when either file is missing.
        ValueError: when the metadata has no ``schema`` field or does not validate (the message names the field).
    """
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    meta_path, schema_path = Path(meta_file), Path(schema_file)
    for p in (meta_path, schema_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist.")
    metadata = json.loads(meta_path.read_text())
    schema = json.loads(schema_path.read_text())
    if "schema" not in metadata:
        raise ValueError(f"{meta_path}: must provide the `schema` field (URL of the metadata schema).")
    cls = validator_for(schema)
    cls.check_schema(schema)
    error = best_match(cls(schema).iter_errors(metadata))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        raise ValueError(
            f"{meta_path}: metadata is not valid against {schema_path.name} at {where}: {error.message}"
        )
    return metadata


def missing_bundle_files(
    bundle_dir: str | os.PathLike, required: Sequence[str] = REQUIRED_FILES
) -> list[str]:
    """The files of ``required`` (relative paths) that ``bundle_dir`` lacks."""
    root = Path(bundle_dir)
    return [f for f in required if not (root / f).is_file()]


def verify_net_in_out_offline(
    bundle_dir: str | os.PathLike,
    net_id: str = "network_def",
    config_file: str | os.PathLike | None = None,
    device: str = "cpu",
    n: int = 1,
) -> None:
    """Run ``monai.bundle.verify_net_in_out`` on the bundle's inference config and metadata (in-process)."""
    from monai.bundle import verify_net_in_out

    root = Path(bundle_dir)
    verify_net_in_out(
        net_id=net_id,
        meta_file=str(root / "configs" / "metadata.json"),
        config_file=str(config_file or root / "configs" / "inference.json"),
        device=device,
        n=n,
        bundle_root=str(root),
    )


def verify_bundle(
    bundle_dir: str | os.PathLike, schema_file: str | os.PathLike = SCHEMA_FILE, check_net: bool = True
) -> list[str]:
    """Check one bundle: metadata against the schema, the layout and (``check_net``) the network I/O.

    Returns:
        the list of problems found (empty when the bundle passes).
    """
    root = Path(bundle_dir)
    problems = [f"missing {f}" for f in missing_bundle_files(root)]
    meta = root / "configs" / "metadata.json"
    if meta.is_file():
        try:
            verify_metadata_offline(meta, schema_file)
        except ValueError as e:
            problems.append(str(e))
    if check_net and meta.is_file() and (root / "configs" / "inference.json").is_file():
        try:
            verify_net_in_out_offline(root)
        except Exception as e:  # report every failure of the forward check as a problem
            problems.append(f"verify_net_in_out: {type(e).__name__}: {e}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m monai_rurnet.bundle BUNDLE_DIR [...] [--schema FILE] [--no-net]``."""
    parser = argparse.ArgumentParser(
        description="Check MONAI bundles offline (metadata, layout, network I/O)."
    )
    parser.add_argument("bundles", nargs="+", help="bundle directories")
    parser.add_argument("--schema", default=str(SCHEMA_FILE), help="metadata schema file")
    parser.add_argument("--no-net", action="store_true", help="skip verify_net_in_out")
    args = parser.parse_args(argv)
    failed = 0
    for b in args.bundles:
        problems = verify_bundle(b, args.schema, check_net=not args.no_net)
        print(f"{b}: {'OK' if not problems else 'FAILED'}")
        for p in problems:
            print(f"  - {p}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
