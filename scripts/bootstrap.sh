#!/usr/bin/env bash
# Set up the development venv from PyPI wheels (ROS 2 Kilted): no system ROS needed.
#
#   scripts/bootstrap.sh            # create/update .venv, build the interfaces, pip install -e .
#
# Environment:
#   OPENPIXEL_VENV   venv location (default: <repo>/.venv)
#   PYTHON           interpreter that creates a missing venv (default: python3). The pinned set
#                    is checked with CPython 3.11; the ROS wheels are x86_64 Linux only.
#
# Idempotent: pip runs only when requirements/*.txt changed, the interface build only when
# msg/, srv/, CMakeLists.txt, package.xml or the requirements changed, the editable install only
# when setup.py changed (stamps inside the venv). Needs cmake (>= 3.20) and a C/C++ compiler.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OPENPIXEL_VENV:-$REPO_ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
PIP_VERSION="26.3"
REQUIREMENT_FILES=(runtime build test train)

started_at=$SECONDS
progress() { echo "[bootstrap] $*"; }

cd "$REPO_ROOT"

if [[ ! -x "$VENV/bin/python" ]]; then
    progress "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
venv_python="$VENV/bin/python"

# sha256 of stdin, to compare with a stamp file in the venv.
digest() { sha256sum | cut -d' ' -f1; }
stamp_is_current() { [[ "$(cat "$1" 2>/dev/null)" == "$2" ]]; }
# pip in the venv, quiet, without the per-package warnings that a pip config naming a missing
# local index prints (as on these dev machines); its exit status is kept (pipefail).
venv_pip() {
    { "$venv_python" -m pip --quiet "$@" 2>&1 1>&3 3>&- \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; } 3>&1
}

# Everything that decides what pip installs; a rerun with the same inputs skips pip.
requirements_digest="$(
    {
        "$venv_python" -c 'import sys; print(sys.version)'
        echo "pip==$PIP_VERSION"
        cat requirements/constraints.txt
        for name in "${REQUIREMENT_FILES[@]}"; do cat "requirements/$name.txt"; done
    } | digest
)"
requirements_stamp="$VENV/.openpixel_ros-requirements.stamp"
if stamp_is_current "$requirements_stamp" "$requirements_digest"; then
    progress "requirements up to date"
else
    progress "installing pip==$PIP_VERSION and requirements/{$(IFS=,; echo "${REQUIREMENT_FILES[*]}")}.txt"
    rm -f "$requirements_stamp"
    venv_pip install "pip==$PIP_VERSION"
    requirement_args=()
    for name in "${REQUIREMENT_FILES[@]}"; do requirement_args+=(-r "requirements/$name.txt"); done
    venv_pip install -c requirements/constraints.txt "${requirement_args[@]}"
    echo "$requirements_digest" > "$requirements_stamp"
fi

progress "building interfaces (msg/, srv/)"
"$venv_python" scripts/build_interfaces.py

# compat mode puts the repo root on sys.path through a .pth file. The default editable mode
# uses an import hook that runs after the normal path search, which would find the generated
# site-packages/openpixel_ros/{msg,srv} first as a namespace package and hide the source tree.
editable_digest="$({ echo "$REPO_ROOT"; cat setup.py setup.cfg pyproject.toml 2>/dev/null || true; } | digest)"
editable_stamp="$VENV/.openpixel_ros-editable.stamp"
if stamp_is_current "$editable_stamp" "$editable_digest" \
        && grep -qxF "$REPO_ROOT" "$VENV"/lib/python3*/site-packages/__editable__.openpixel_ros-*.pth 2>/dev/null; then
    progress "openpixel_ros already installed editable"
else
    progress "pip install -e . (editable, no dependencies)"
    rm -f "$editable_stamp"
    venv_pip install --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
    echo "$editable_digest" > "$editable_stamp"
fi

# The same import that the node and tests make, in a fresh interpreter (goes through the
# ros_wheels_bootstrapper re-exec that puts <venv>/lib on LD_LIBRARY_PATH).
(cd / && "$venv_python" -c '
import openpixel_ros.msg, openpixel_ros.srv
from rclpy.type_support import check_for_type_support
check_for_type_support(openpixel_ros.msg.AdaptationState)
check_for_type_support(openpixel_ros.msg.Scribble)
check_for_type_support(openpixel_ros.srv.SegmentAtPoints)
') || { echo "[bootstrap] openpixel_ros interfaces do not import; see build/interfaces/build_interfaces.log" >&2; exit 1; }

progress "done in $((SECONDS - started_at)) s; use $venv_python (or: source $VENV/bin/activate)"
