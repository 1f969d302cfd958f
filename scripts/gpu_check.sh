#!/usr/bin/env bash
# The course on a GPU: unit tests and nbval on every notebook with COURSE_DEVICE=cuda, timed.
#
#   scripts/gpu_check.sh [OUT_DIR] [--device cuda] [--jobs N] [--tests "tests/test_a.py ..."]
#                        [--notebooks "03_tcn_wavenet ..."] [--all] [--wheels DIR]
#
# For maintainers with an NVIDIA GPU and a CUDA build of PyTorch already installed (README.md,
# "For maintainers with a GPU"). It never installs or upgrades torch: it uses the `python3` on PATH
# (or $PYTHON) as it is. Missing packages (jupytext, nbval, arch, ...) can come from a folder of
# wheels (--wheels DIR: installed offline into a temporary folder on PYTHONPATH, torch wheels refused;
# scripts/gpu_wheels.txt lists them).
#
# Writes into OUT_DIR (default $OUT, else build/gpu-check):
#   junit.xml    pytest's report (xunit1, one test case per test and per notebook cell)
#   times.md     seconds per notebook and per test module, with the device, PyTorch and the wall time
#   pytest.log   the whole output
#   env.txt      Python, PyTorch, CUDA, GPU
# Exit status: pytest's (0 when everything passed).
#
# Options: --device (default cuda; `cpu` to try the script on a machine without a GPU), --jobs (pytest-xdist
# workers, default half the cores, at most 8; the GPU is shared), --tests/--notebooks (a subset, e.g. to
# check the script on a CPU), --all (also the tests marked slow: grading and learner-copy runs, CPU work).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE=""
trap '[ -z "$SITE" ] || rm -rf "$SITE"' EXIT
PYTHON=${PYTHON:-python3}
DEVICE=cuda
JOBS=""
TESTS="tests"
NOTEBOOKS=""
MARKER="not slow"
WHEELS=""
OUTDIR="${OUT:-}"

while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --jobs) JOBS=$2; shift 2 ;;
        --tests) TESTS=$2; shift 2 ;;
        --notebooks) NOTEBOOKS=$2; shift 2 ;;
        --all) MARKER=""; shift ;;
        --wheels) WHEELS=$2; shift 2 ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        -*) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) OUTDIR=$1; shift ;;
    esac
done
OUTDIR=${OUTDIR:-$ROOT/build/gpu-check}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -z "$JOBS" ]; then
    JOBS=$(( $(nproc) / 2 )); [ "$JOBS" -lt 1 ] && JOBS=1; [ "$JOBS" -gt 8 ] && JOBS=8
fi

if [ -n "$WHEELS" ]; then
    shopt -s nullglob
    wheels=()
    for w in "$WHEELS"/*.whl; do
        case "$(basename "$w")" in
            torch-*) echo "gpu_check: skipping $(basename "$w"): this script never replaces the installed torch" ;;
            *) wheels+=("$w") ;;
        esac
    done
    if [ ${#wheels[@]} -gt 0 ]; then
        SITE=$(mktemp -d)  # beside the environment, not into it: PYTHONPATH reaches the tests and the kernels
        echo "gpu_check: installing ${#wheels[@]} wheels from $WHEELS into $SITE (offline, no dependencies)"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
            --target "$SITE" "${wheels[@]}"
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi

# What must be importable, and the device: fail before running anything, saying what is missing.
"$PYTHON" - "$DEVICE" > "$OUTDIR/env.txt" <<'EOF'
import importlib.util
import platform
import sys

device = sys.argv[1]
need = ["torch", "numpy", "pandas", "scipy", "arch", "statsmodels", "matplotlib", "seaborn", "torchdiffeq",
        "jupytext", "nbval", "nbformat", "ipykernel", "jupyter_client", "pytest", "xdist", "yaml"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing packages {missing}; install them (pip wheels: --wheels DIR), never torch")
import torch

print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA build {torch.version.cuda}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit(f"gpu_check: COURSE_DEVICE={device} but torch {torch.__version__} sees no CUDA device")
    print(f"device {device}: {torch.cuda.get_device_name(torch.device(device))}, cuDNN {torch.backends.cudnn.version()}")
else:
    print(f"device {device}")
EOF
cat "$OUTDIR/env.txt"

NBDIR=$ROOT/build/gpu-check-notebooks  # inside the checkout, so that pytest reads pyproject.toml
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" COURSE_DEVICE="$DEVICE" COURSE_OFFLINE=1 MPLBACKEND=agg
"$PYTHON" "$ROOT/scripts/build_notebooks.py" --out "$NBDIR" >/dev/null
if [ -n "$NOTEBOOKS" ]; then
    for nb in "$NBDIR"/*.ipynb; do
        stem=$(basename "$nb" .ipynb)
        [[ " $NOTEBOOKS " == *" $stem "* ]] || rm "$nb"
    done
fi
shopt -s nullglob
notebooks=("$NBDIR"/*.ipynb)
[ ${#notebooks[@]} -gt 0 ] || { echo "gpu_check: no notebook matches --notebooks '$NOTEBOOKS'" >&2; exit 2; }

cd "$ROOT"
# shellcheck disable=SC2086  # TESTS is a list of paths
set -- $TESTS "${notebooks[@]}"
echo "gpu_check: COURSE_DEVICE=$DEVICE, $JOBS workers, tests: $TESTS, notebooks: ${#notebooks[@]}"
start=$(date +%s)
set +e
"$PYTHON" -m pytest -q -p no:warnings ${MARKER:+-m "$MARKER"} -n "$JOBS" --dist loadscope \
    --nbval-lax --nbval-current-env -rs --junitxml="$OUTDIR/junit.xml" -o junit_family=xunit1 "$@" \
    2>&1 | tee "$OUTDIR/pytest.log"
status=${PIPESTATUS[0]}
set -e
wall=$(( $(date +%s) - start ))
[ -f "$OUTDIR/junit.xml" ] || { echo "gpu_check: pytest wrote no report (exit status $status); see $OUTDIR/pytest.log" >&2; exit "$status"; }
"$PYTHON" "$ROOT/scripts/notebook_times.py" "$OUTDIR/junit.xml" --all --markdown "$OUTDIR/times.md" \
    --title "COURSE_DEVICE=$DEVICE; $(head -2 "$OUTDIR/env.txt" | paste -sd ';' - | sed 's/;/; /'); $JOBS workers; ${wall} s wall"
echo "gpu_check: ${wall} s wall (target: 480 s on one GPU); pytest exit status $status; results in $OUTDIR"
exit "$status"
