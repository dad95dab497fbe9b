#!/usr/bin/env bash
# One command on a machine with a CUDA GPU: does every chapter run there, how fast do the full
# profile's training runs step, how much GPU memory do they take, which precision do they pick?
# It fits in about 9 minutes on one H100.
#
#   bash tools/gpu_check.sh [--dry-run] [--python PY] [OUT]
#
#   OUT           output folder (default _build/gpu_check)
#   --python PY   the interpreter (default .venv/bin/python if present, else python3)
#   --dry-run     check the chapters and tools and print the commands each stage would run, with
#                 the plan tools/run_chapters.py makes for them; runs nothing, needs no GPU
#
# Steps (each under `timeout`; a stage that fails or times out is recorded and the next one runs):
#   setup    OUT/machine.txt: nvidia-smi's GPU name, compute capability, memory and driver; Python,
#            PyTorch, torch.cuda.get_device_capability() and the precision amp="auto" picks on cuda
#   stage 1  every chapter, quick profile, on cuda, two notebooks side by side sharing the GPU
#            (tools/run_chapters.py --profile quick --device cuda --jobs 2 --out OUT/quick)
#   stage 2  a rehearsal of the full profile: every chapter at the full profile's real sizes on small
#            fake data, each training run capped at 200 steps or 20 s, each evaluation at 64 items
#            (--rehearse --cap-steps 200 --cap-seconds 20 --cap-items 64 --jobs 2 --out OUT/full);
#            every Trainer.fit logs steps/s, precision and peak GPU memory to OUT/full/*.fits.jsonl
#   summary  OUT/summary.md (tools/gpu_summary.py): the machine, then one table per stage
#
# Time budget (seconds; environment variables override): setup GPU_CHECK_SETUP_S=30, stage 1
# GPU_CHECK_QUICK_S=240, stage 2 GPU_CHECK_FULL_S=270, and up to GPU_CHECK_GRACE_S=10 after each
# stage's budget for its processes to end: at most about 9.5 minutes, with the summary.
# Exit status: 0 if every step passed; 1 if one failed or timed out (the summary is still written);
# 2 for a usage error. Without a CUDA GPU (and without --dry-run) it stops at once with status 1.
# Each run replaces the previous one's results in OUT (machine.txt, quick/, full/, *.log, summary.md).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

CALLER_DIR=$(pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DRY_RUN=0
PY=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dry-run) DRY_RUN=1 ;;
        --python) [ $# -ge 2 ] || { echo "gpu_check: --python needs a value" >&2; exit 2; }
                  PY=$2; shift ;;
        --python=*) PY=${1#--python=} ;;
        -*) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$OUT" ] || { echo "gpu_check: one output folder only (see --help)" >&2; exit 2; }
           OUT=$1 ;;
    esac
    shift
done

# Paths given on the command line are relative to where the command was started.
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$CALLER_DIR/$1" ;; esac; }
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
elif [[ $PY == */* ]]; then
    PY=$(abspath "$PY")
fi
if [ -z "$OUT" ]; then OUT=$ROOT/_build/gpu_check; else OUT=$(abspath "$OUT"); fi

SETUP_S=${GPU_CHECK_SETUP_S:-30}
QUICK_S=${GPU_CHECK_QUICK_S:-240}
FULL_S=${GPU_CHECK_FULL_S:-270}
GRACE_S=${GPU_CHECK_GRACE_S:-10}
for v in "$SETUP_S" "$QUICK_S" "$FULL_S" "$GRACE_S"; do
    [[ $v =~ ^[0-9]+$ ]] || { echo "gpu_check: time budgets are whole seconds, got '$v'" >&2; exit 2; }
done

RUN=(tools/run_chapters.py)
STAGE_NAMES=(quick full)
STAGE_BUDGETS=("$QUICK_S" "$FULL_S")
# shellcheck disable=SC2034  # read through ${!args_var} in stage_cmd
STAGE_ARGS_quick=(--profile quick --device cuda --jobs 2 --out "$OUT/quick")
# shellcheck disable=SC2034
STAGE_ARGS_full=(--rehearse --device cuda --cap-steps 200 --cap-seconds 20 --cap-items 64 --jobs 2 --out "$OUT/full")
# The flags of tools/run_chapters.py this script uses beyond the positional chapters.
NEEDED_FLAGS=(--profile --device --jobs --out --rehearse --cap-steps --cap-seconds --cap-items --dry-run)

start=$SECONDS
say() { printf '[gpu_check %4ds] %s\n' "$((SECONDS - start))" "$*"; }
die() { echo "gpu_check: $*" >&2; exit 1; }
quoted() { local a s=""; for a in "$@"; do s+="$(printf '%q' "$a") "; done; printf '%s\n' "${s% }"; }
stage_cmd() {  # the command line of stage $1, into the array CMD
    local name=$1 budget=$2 args_var="STAGE_ARGS_$1[@]"
    [ -n "$name" ] || return 1
    CMD=(timeout --kill-after="$GRACE_S" "$budget" "$PY" "${RUN[@]}" "${!args_var}")
}

# --- the tools and the chapters ---------------------------------------------------------------
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (see --python)"
command -v timeout >/dev/null 2>&1 || die "the 'timeout' command (GNU coreutils) is missing"
for f in tools/run_chapters.py tools/gpu_summary.py tools/book_common.py _toc.yml; do
    [ -f "$f" ] || die "missing $f (run from a checkout of the repository)"
done

# Which precision amp="auto" gives on cuda, with the versions; exits 3 when PyTorch sees no GPU.
MACHINE_PY=$(cat <<'EOF'
import platform, sys
import torch
print(f"python: {platform.python_version()} ({sys.executable})")
print(f"torch: {torch.__version__} (CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})")
if not torch.cuda.is_available():
    print("torch.cuda.is_available(): False")
    sys.exit(3)
print(f"GPU 0: {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)")
print(f"torch.cuda.get_device_capability(): {torch.cuda.get_device_capability()}")
print(f"torch.cuda.is_bf16_supported(): {torch.cuda.is_bf16_supported()}")
from animlib.precision import amp_label
print(f'amp="auto" on cuda picks: {amp_label("auto", "cuda")} (animlib.precision.amp_label)')
EOF
)

rc=0
machine_py=""
if [ "$DRY_RUN" = 0 ]; then
    # Before anything is written: is there a GPU at all?
    machine_py=$(PYTHONDONTWRITEBYTECODE=1 timeout "$SETUP_S" "$PY" -c "$MACHINE_PY" 2>&1) || rc=$?
    if [ "$rc" = 3 ]; then
        die "no CUDA GPU: torch.cuda.is_available() is False here ($(grep '^torch:' <<<"$machine_py" || echo 'torch: ?')). \
This check needs a machine with a CUDA GPU and about 10 minutes; 'bash tools/gpu_check.sh --dry-run' shows what it would run."
    fi
    if [ "$rc" != 0 ] && ! grep -q '^GPU 0:' <<<"$machine_py"; then
        die "could not check for a CUDA GPU with $PY (exit status $rc):
$machine_py"
    fi
fi

say "chapters in _toc.yml:"
chapter_list=$(PYTHONDONTWRITEBYTECODE=1 "$PY" tools/gpu_summary.py --chapters) \
    || die "a chapter listed in _toc.yml is missing"
chapters=()
mapfile -t chapters <<<"$chapter_list"
[ ${#chapters[@]} -gt 0 ] || die "a chapter listed in _toc.yml is missing, or _toc.yml lists none"
printf '    %s\n' "${chapters[@]}"

help_text=$(PYTHONDONTWRITEBYTECODE=1 "$PY" "${RUN[@]}" --help 2>&1) || die "tools/run_chapters.py --help failed: $help_text"
missing_flags=()
for flag in "${NEEDED_FLAGS[@]}"; do
    # an option line of argparse's help: "  --flag ...", or "  -f X, --flag X ..."
    grep -qE -- "^ +(-[A-Za-z][^,]*, )?$flag([ =,]|\$)" <<<"$help_text" || missing_flags+=("$flag")
done

# --- dry run: the commands and run_chapters.py's own plan for them ------------------------------
if [ "$DRY_RUN" = 1 ]; then
    say "dry run: output folder $OUT, python $PY; nothing is executed"
    if command -v nvidia-smi >/dev/null 2>&1; then
        say "setup (budget ${SETUP_S} s): would record nvidia-smi, Python, PyTorch and amp=\"auto\" in $OUT/machine.txt (skipped in a dry run)"
    else
        say "setup (budget ${SETUP_S} s): nvidia-smi not found here; would record it, Python, PyTorch and amp=\"auto\" in $OUT/machine.txt (skipped in a dry run)"
    fi
    failed=0
    if [ ${#missing_flags[@]} -gt 0 ]; then
        echo "gpu_check: tools/run_chapters.py lacks ${missing_flags[*]}; the plans below cannot be checked" >&2
        failed=1
    fi
    for i in "${!STAGE_NAMES[@]}"; do
        name=${STAGE_NAMES[$i]}
        budget=${STAGE_BUDGETS[$i]}
        stage_cmd "$name" "$budget"
        echo
        say "stage $((i + 1)) ($name), timeout ${budget} s (+${GRACE_S} s to end):"
        echo "    $(quoted "${CMD[@]}")"
        if [ ${#missing_flags[@]} -eq 0 ]; then
            plan_rc=0
            plan=$(PYTHONDONTWRITEBYTECODE=1 "${CMD[@]}" --dry-run 2>&1) || plan_rc=$?
            printf '%s\n' "$plan" | sed 's/^/    | /'
            if [ "$plan_rc" != 0 ]; then
                echo "gpu_check: tools/run_chapters.py could not plan stage $name (exit status $plan_rc; its output is above)" >&2
                failed=1
            fi
        fi
    done
    echo
    say "then: $(quoted "$PY" tools/gpu_summary.py "$OUT") writes $OUT/summary.md"
    exit "$failed"
fi

[ ${#missing_flags[@]} -eq 0 ] || die "tools/run_chapters.py lacks ${missing_flags[*]}, which this check needs"

# --- setup: the machine -----------------------------------------------------------------------
mkdir -p "$OUT"
# A previous run's results must not pass for this one's (a stage that times out writes no summary).
rm -rf "$OUT/quick" "$OUT/full" "$OUT/quick.log" "$OUT/full.log" "$OUT/stages.tsv" "$OUT/summary.md"
setup_failed=0
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(hostname 2>/dev/null || echo '?')"
    echo "git commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    if command -v nvidia-smi >/dev/null 2>&1; then
        echo "nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv:"
        timeout 20 nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv \
            || { echo "(that query failed; nvidia-smi -L:)"; timeout 20 nvidia-smi -L || true; }
    else
        echo "nvidia-smi: not found (the GPU below is what PyTorch reports)"
    fi
    printf '%s\n' "$machine_py"
    if [ "$rc" != 0 ]; then echo "(recording the machine failed: exit status $rc)"; fi
} >"$OUT/machine.txt" 2>&1
[ "$rc" = 0 ] || setup_failed=1
say "machine ($OUT/machine.txt):"
sed 's/^/    /' "$OUT/machine.txt"

# --- the stages -------------------------------------------------------------------------------
# A kernel that papermill started runs in a session of its own and may outlive a stage that timed
# out; every process of a stage carries GPU_CHECK_RUN=<token>, so what is left can be ended.
reap() {
    local token=$1 envf pid left=()
    [ -d /proc ] || return 0
    for envf in /proc/[0-9]*/environ; do
        pid=${envf#/proc/}; pid=${pid%/environ}
        if grep -qzxF "GPU_CHECK_RUN=$token" "$envf" 2>/dev/null; then left+=("$pid"); fi
    done
    [ ${#left[@]} -gt 0 ] || return 0
    say "ending ${#left[@]} process(es) left by the stage: ${left[*]}"
    kill -TERM "${left[@]}" 2>/dev/null || true
    sleep 3
    kill -KILL "${left[@]}" 2>/dev/null || true
}

stage_pid=""
tail_pid=""
token=""
name=""
interrupted() {
    [ -z "$stage_pid" ] || kill -TERM "$stage_pid" 2>/dev/null || true
    [ -z "$tail_pid" ] || kill -TERM "$tail_pid" 2>/dev/null || true
    [ -z "$token" ] || reap "$token"
    if [ -n "$stage_pid" ]; then
        printf '%s\t130\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$budget" >>"$OUT/stages.tsv"
    fi
    echo "gpu_check: interrupted; partial results in $OUT" >&2
    "$PY" tools/gpu_summary.py "$OUT" >/dev/null 2>&1 || true
    exit 130
}
trap interrupted INT TERM

failed=$setup_failed
for i in "${!STAGE_NAMES[@]}"; do
    name=${STAGE_NAMES[$i]}
    budget=${STAGE_BUDGETS[$i]}
    stage_cmd "$name" "$budget"
    log=$OUT/$name.log
    token="$$-$name-$RANDOM"
    echo
    say "stage $((i + 1)) ($name), timeout ${budget} s: $(quoted "${CMD[@]}")"
    t0=$SECONDS
    # In the background, so that an interrupt reaches the trap at once; its output is echoed live.
    # The log exists before either starts, so the live echo never looks for a file not yet made.
    : >"$log"
    GPU_CHECK_RUN=$token "${CMD[@]}" >>"$log" 2>&1 &
    stage_pid=$!
    tail -n +1 -f --pid="$stage_pid" "$log" 2>/dev/null &
    tail_pid=$!
    src=0
    wait "$stage_pid" || src=$?
    wait "$tail_pid" 2>/dev/null || true
    stage_pid=""
    tail_pid=""
    reap "$token"
    token=""
    secs=$((SECONDS - t0))
    printf '%s\t%s\t%s\t%s\n' "$name" "$src" "$secs" "$budget" >>"$OUT/stages.tsv"
    case "$src" in
        0) say "stage $name: ok in ${secs} s" ;;
        124|137) say "stage $name: TIMED OUT after ${secs} s (budget ${budget} s)"; failed=1 ;;
        *) say "stage $name: FAILED with exit status $src after ${secs} s (log: $log)"; failed=1 ;;
    esac
done

# --- summary ----------------------------------------------------------------------------------
echo
"$PY" tools/gpu_summary.py "$OUT" || { echo "gpu_check: writing the summary failed" >&2; failed=1; }
say "done in $((SECONDS - start)) s; report: $OUT/summary.md"
exit "$failed"
