#!/usr/bin/env bash
# Creates or repairs the course environment; `make setup` (and the first `make lab` or `make test`) runs it.
#
#   scripts/setup_env.sh PYTHON VENV TORCH PYTHON_ORIGIN
#
# PYTHON: the interpreter to build VENV with (Python 3.11 to 3.13); empty when the Makefile found none.
# TORCH:  auto (CUDA build where `nvidia-smi` sees an NVIDIA GPU, else the CPU build), cpu or cuda.
# PYTHON_ORIGIN: make's $(origin PYTHON); a PYTHON given by the user rebuilds a VENV of another version.
# SETUP_PLAN=1 in the environment: print the interpreter and PyTorch build it would use, change nothing.
#
# Steps: check the interpreter; rebuild a VENV that is broken or of another Python; install the chosen
# PyTorch build (only if the installed one differs); install the course; register the course kernel.
set -euo pipefail

PYTHON=${1:-}
VENV=${2:-.venv}
TORCH=${3:-auto}
ORIGIN=${4:-default}
TORCH_VERSION=$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml)
CPU_INDEX=https://download.pytorch.org/whl/cpu
SUPPORTED='(3, 11) <= sys.version_info[:2] <= (3, 13)'
WANTED="Python 3.11, 3.12 or 3.13"
say() { echo "setup: $*"; }

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

# 1. The interpreter.
if [ -z "$PYTHON" ] || ! "$PYTHON" -c "import sys; sys.exit(not ($SUPPORTED))" 2>/dev/null; then
    found=$( [ -n "$PYTHON" ] && version_of "$PYTHON" || true )
    echo "setup: this course needs $WANTED${found:+ (found $PYTHON = Python $found)}: install one" \
        "(python.org, 'brew install python@3.13', 'sudo apt install python3.12-venv') or pass PYTHON=/path/to/python3.12" >&2
    exit 1
fi

# 2. Which PyTorch build: the CPU one unless there is an NVIDIA GPU (or TORCH says otherwise).
case "$TORCH" in
    auto)
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then TORCH=cuda; else TORCH=cpu; fi ;;
    cpu | cuda) ;;
    *) echo "setup: TORCH=$TORCH is not one of auto, cpu, cuda" >&2; exit 1 ;;
esac
if [ "$(uname -s)" = Darwin ]; then
    [ "$TORCH" = cuda ] && { echo "setup: PyTorch has no CUDA build for macOS; use TORCH=cpu (Apple GPUs run through MPS)" >&2; exit 1; }
    TORCH=macos  # one build for macOS, with MPS
fi
if [ -n "${SETUP_PLAN:-}" ]; then  # say what would be done, change nothing
    echo "setup: plan: Python $(version_of "$PYTHON") ($PYTHON), PyTorch $TORCH_VERSION $TORCH build, in $VENV"
    exit 0
fi

# 3. The environment: rebuilt when its interpreter is broken, unsupported, or not the one asked for.
if [ -e "$VENV" ]; then
    have=$(version_of "$VENV/bin/python" || true)
    reason=""
    if [ -z "$have" ]; then
        reason="its python does not run"
    elif ! "$VENV/bin/python" -c "import sys; sys.exit(not ($SUPPORTED))"; then
        reason="it was made with Python $have"
    elif [ "$ORIGIN" != default ] && [ "$ORIGIN" != file ] && [ "$have" != "$(version_of "$PYTHON")" ]; then
        reason="it was made with Python $have and PYTHON=$PYTHON is $(version_of "$PYTHON")"
    fi
    if [ -n "$reason" ]; then
        say "rebuilding $VENV: $reason"
        rm -rf "$VENV"
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON (Python $(version_of "$PYTHON"))"
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        echo "setup: '$PYTHON -m venv' failed; on Debian or Ubuntu install python$(version_of "$PYTHON")-venv" >&2
        exit 1
    fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

# 4. PyTorch, only if the installed build is not the one wanted.
installed=$("$PY" -c "import torch; print(torch.__version__.split('+')[0], 'cuda' if torch.version.cuda else 'cpu')" 2>/dev/null || true)
want="$TORCH_VERSION $([ "$TORCH" = cuda ] && echo cuda || echo cpu)"
if [ "$installed" != "$want" ]; then
    [ -n "$installed" ] && { say "replacing PyTorch $installed by the $TORCH build"; "$PY" -m pip uninstall --quiet -y torch; }
    case "$TORCH" in
        cpu)  # Linux and Windows: PyPI's torch is the CUDA build (several GB); PyTorch's CPU index has the small one
            say "installing PyTorch $TORCH_VERSION, CPU build (make setup TORCH=cuda for the CUDA build)"
            "${PIP[@]}" --no-deps --index-url "$CPU_INDEX" "torch==$TORCH_VERSION" || {
                echo "setup: could not install the CPU build of PyTorch from $CPU_INDEX; check the network," \
                    "or run 'make setup TORCH=cuda' for PyPI's build (CUDA, several GB)" >&2
                exit 1
            }
            # its dependencies (typing_extensions, sympy, ...) from the usual index; the CPU build satisfies the pin
            "${PIP[@]}" "torch==$TORCH_VERSION" ;;
        cuda)
            say "installing PyTorch $TORCH_VERSION, CUDA build (several GB; make setup TORCH=cpu for the CPU build)"
            "${PIP[@]}" "torch==$TORCH_VERSION" ;;
        macos)
            say "installing PyTorch $TORCH_VERSION"
            "${PIP[@]}" "torch==$TORCH_VERSION" ;;
    esac
    got=$("$PY" -c "import torch; print(torch.__version__.split('+')[0], 'cuda' if torch.version.cuda else 'cpu')" 2>/dev/null)
    if [ "$got" != "$want" ]; then  # e.g. a local wheel (PIP_FIND_LINKS) of the other build was preferred
        echo "setup: pip installed PyTorch $got, not the $TORCH build asked for; see README.md (PyTorch)" >&2
        exit 1
    fi
fi

# 5. The course (torch is already satisfied, so pip keeps the build chosen above), kernel, JupyterLab settings.
"${PIP[@]}" -e ".[all]"
"$PY" -m ipykernel install --sys-prefix --name dlfts --display-name "Python (DL for financial time series)" >/dev/null
mkdir -p "$VENV/share/jupyter/lab/settings"
cp scripts/jupyterlab-overrides.json "$VENV/share/jupyter/lab/settings/overrides.json"
touch "$VENV/.course-installed"
say "ready: Python $(version_of "$PY"), PyTorch $("$PY" -c "import torch; print(torch.__version__)")"
