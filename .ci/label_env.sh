#!/usr/bin/env bash
# Create (idempotently) the separate MONAI Label virtual environment used by tests/label and
# `python -m monai_rurnet.label.serve`. MONAI Label pins numpy 1.26.x, so it cannot share the core env.
#
#   bash .ci/label_env.sh            # -> .venv-label (or $MONAI_RURNET_LABEL_VENV)
#   export MONAI_RURNET_LABEL_PYTHON="$PWD/.venv-label/bin/python"
#
# Exit status: 0 ready, 1 the install failed, 2 not enough free disk (nothing left behind).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MONAI_RURNET_LABEL_VENV:-.venv-label}"
case "$VENV" in /*) ;; *) VENV="$REPO_ROOT/$VENV" ;; esac
PY="${PYTHON:-python3}"
TORCH_SPEC="${MONAI_RURNET_LABEL_TORCH:-torch==2.14.1 torchvision==0.29.1}"
MONAILABEL_SPEC="${MONAI_RURNET_LABEL_MONAILABEL:-monailabel==0.8.5}"
# monailabel 0.8.5's server imports pydicom_seg 0.4.1, which needs pydicom 2.x (pip resolves 3.x by default and
# `import monailabel.app` then fails with "No module named 'pydicom._storage_sopclass_uids'").
DICOM_PINS="pydicom>=2.4.4,<3 dicomweb-client>=0.59.1,<0.60 pynetdicom>=2.0.2,<3"
STAMP="$VENV/.monai_rurnet_label_ok"

check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import monailabel.app, monai, torch  # noqa: F401
import monai_rurnet.networks  # noqa: F401
PY
}

# pip check clean too (an environment made by an older version of this script had monai-rurnet installed)
if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ] && check && "$VENV/bin/python" -m pip check >/dev/null 2>&1; then
    echo "label venv ready: $VENV"
    exit 0
fi

# The environment takes about 8.5 GiB (torch 2.14.1 is a CUDA build with its nvidia-* libraries; ITK, MLflow):
# with less free space, say so and exit 2 instead of failing half-way with "No space left on device".
NEED_GIB="${MONAI_RURNET_LABEL_MIN_FREE_GIB:-10}"
mkdir -p "$(dirname "$VENV")"
free_gib() { df -Pk "$(dirname "$VENV")" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
created=0
if [ ! -x "$VENV/bin/python" ]; then
    if [ "$(free_gib)" -lt "$NEED_GIB" ]; then
        echo "label venv NOT created: $(free_gib) GiB free under $(dirname "$VENV"), it needs about $NEED_GIB GiB" \
            "(MONAI_RURNET_LABEL_MIN_FREE_GIB); the MONAI Label tests will be skipped" >&2
        exit 2
    fi
    echo "creating label venv at $VENV"
    "$PY" -m venv "$VENV"
    created=1
fi
# A failed install removes the venv it created (no half-built environment, no gigabytes left behind); when the
# disk ran short meanwhile, exit 2 as above.
on_error() {
    if [ "$created" = 1 ]; then
        rm -rf "$VENV"
    fi
    if [ "$(free_gib)" -lt "$NEED_GIB" ]; then
        echo "label venv NOT created: the disk ran short during the install ($(free_gib) GiB free after removing" \
            "it, about $NEED_GIB GiB needed); the MONAI Label tests will be skipped" >&2
        exit 2
    fi
    echo "label venv: the install failed (see above)" >&2
    exit 1
}
trap on_error ERR
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
# torch first (from the local wheel cache / PyPI), then MONAI Label resolves around it.
# shellcheck disable=SC2086
"${PIP[@]}" $TORCH_SPEC
# shellcheck disable=SC2086
"${PIP[@]}" $MONAILABEL_SPEC $DICOM_PINS
# Our package goes on the venv's path (a link to the checkout's monai_rurnet/ in a folder named by a .pth file,
# like `pip install -e`) instead of being installed: its metadata requires jsonschema>=4 (for the offline bundle
# metadata check, unused here) while MONAI Label's pydicom-seg requires jsonschema<4, and pip check must stay
# clean. The link's folder holds no monai_rurnet.egg-info, so pip sees no monai-rurnet requirement. Its deps that
# MONAI Label does not already bring are installed below (not numpy>=2).
"$VENV/bin/python" -m pip uninstall -y -q monai-rurnet >/dev/null 2>&1 || true
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -f "$SITE"/__editable__*monai_rurnet* "$SITE"/monai_rurnet*.egg-link "$SITE"/monai_rurnet-*.dist-info -r
sed -i "\#^$REPO_ROOT\$#d" "$SITE"/easy-install.pth 2>/dev/null || true
mkdir -p "$VENV/monai_rurnet_src"
ln -sfn "$REPO_ROOT/monai_rurnet" "$VENV/monai_rurnet_src/monai_rurnet"
echo "$VENV/monai_rurnet_src" >"$SITE/monai_rurnet_checkout.pth"
missing=()
for mod_pkg in "scipy:scipy" "yaml:pyyaml" "PIL:pillow" "fire:fire" "ignite:pytorch-ignite" "tqdm:tqdm" "rasterio:rasterio"; do
    mod="${mod_pkg%%:*}"
    pkg="${mod_pkg##*:}"
    "$VENV/bin/python" -c "import $mod" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    "${PIP[@]}" "${missing[@]}"
fi

trap - ERR
if ! "$VENV/bin/python" -m pip check; then
    echo "label venv at $VENV: pip check found inconsistent requirements (above)" >&2
    exit 1
fi
if ! check; then
    echo "label venv at $VENV is not usable:" >&2
    "$VENV/bin/python" -c "import monailabel.app, monai_rurnet.networks" >&2 || true
    exit 1
fi
touch "$STAMP"
echo "label venv ready: $VENV"
