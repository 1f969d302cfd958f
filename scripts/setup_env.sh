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
CPU_INDEX=${SETUP_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}  # overridable for tests and mirrors
SUPPORTED='(3, 11) <= sys.version_info[:2] <= (3, 13)'
WANTED="Python 3.11, 3.12 or 3.13"
say() { echo "setup: $*"; }

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
# The names the Makefile tries, in its order (SETUP_CANDIDATES overrides them, for tests).
CANDIDATES=${SETUP_CANDIDATES:-python3.11 python3.12 python3.13 python3}
INSTALL="install one (python.org, 'brew install python@3.13', 'sudo apt install python3.12-venv') or pass PYTHON=/path/to/python3.12"

# Why an interpreter does not run (it cannot even print its version): the first line of its own error
# (a pyenv shim for a version that is not selected, a broken link, a missing library, ...).
run_error() {
    local out err rc=0
    err=$(mktemp)
    out=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>"$err") || rc=$?
    if [[ "$out" =~ ^[0-9]+\.[0-9]+$ ]]; then rm -f "$err"; return 1; fi
    sed -n '/[^[:space:]]/{s/^.*: line [0-9]*: //;p;q;}' "$err" | grep . || echo "exit status $rc"
    rm -f "$err"
}

# Where pyenv is installed, its interpreters run from their own folders even when its shims do not:
# name one (the version of $1, e.g. python3.13, first).
pyenv_hint() {
    local root want found="" p
    root=$(pyenv root 2>/dev/null) || return 0
    want=$(basename "${1:-}" | sed -n 's/^python\(3\.1[123]\)$/\1/p')
    for p in ${want:+"$root"/versions/*/bin/python$want} "$root"/versions/*/bin/python3.1[123]; do
        if [ -x "$p" ] && "$p" -c "import sys; sys.exit(not ($SUPPORTED))" 2>/dev/null; then found="$p"; break; fi
    done
    if [ -n "$found" ]; then
        echo " (pyenv's interpreters run from their own folder: PYTHON=$found)"
    else
        echo " (pyenv: 'pyenv install 3.13' and 'pyenv global 3.13')"
    fi
}

# 1. The interpreter: one that runs, and is 3.11 to 3.13. A Python that does not run is named with its own error.
if [ -n "$PYTHON" ] && err=$(run_error "$PYTHON"); then
    echo "setup: PYTHON=$PYTHON does not run: $err; repair it or pass another$(pyenv_hint "$PYTHON")" >&2
    exit 1
fi
if [ -z "$PYTHON" ]; then  # the Makefile found none that runs and is supported: say what is on PATH
    broken=""
    for p in $CANDIDATES; do
        path=$(command -v "$p" 2>/dev/null) || continue
        if err=$(run_error "$path"); then
            echo "setup: $p on PATH ($path) does not run: $err" >&2
            broken=${broken:-$p}
        fi
    done
    if [ -n "$broken" ]; then
        echo "setup: no Python 3.11, 3.12 or 3.13 on PATH runs: repair $broken$(pyenv_hint "$broken")," \
            "or $INSTALL" >&2
        exit 1
    fi
fi
if [ -z "$PYTHON" ] || ! "$PYTHON" -c "import sys; sys.exit(not ($SUPPORTED))" 2>/dev/null; then
    found=$( [ -n "$PYTHON" ] && version_of "$PYTHON" || true )
    echo "setup: this course needs $WANTED${found:+ (found $PYTHON = Python $found)}: $INSTALL" >&2
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

# Whether a package index answers: "unreachable (the reason)" or "reachable, but pip found no matching build".
index_state() {
    "$PY" - "$1" <<'PYEOF' 2>/dev/null || echo "unreachable"
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=15).close()
    print("the index answers, but pip found no build of it for this Python and platform")
except Exception as error:
    print(f"the index is unreachable ({getattr(error, 'reason', error)})")
PYEOF
}

# 4. PyTorch, only if the installed build is not the one wanted.
installed=$("$PY" -c "import torch; print(torch.__version__.split('+')[0], 'cuda' if torch.version.cuda else 'cpu')" 2>/dev/null || true)
want="$TORCH_VERSION $([ "$TORCH" = cuda ] && echo cuda || echo cpu)"
if [ "$installed" != "$want" ]; then
    [ -n "$installed" ] && { say "replacing PyTorch $installed by the $TORCH build"; "$PY" -m pip uninstall --quiet -y torch; }
    case "$TORCH" in
        cpu)  # Linux and Windows: PyPI's torch is the CUDA build (several GB); PyTorch's CPU index has the small one
            say "installing PyTorch $TORCH_VERSION, CPU build (make setup TORCH=cuda for the CUDA build)"
            log=$(mktemp)
            if ! "${PIP[@]}" --no-deps --index-url "$CPU_INDEX" "torch==$TORCH_VERSION" >"$log" 2>&1; then
                # the course's diagnosis first, then pip's own (often a long resolver message)
                echo "setup: could not install the CPU build of PyTorch $TORCH_VERSION from $CPU_INDEX:" \
                    "$(index_state "$CPU_INDEX/torch/"); check the network (or a proxy), or run" \
                    "'make setup TORCH=cuda' for PyPI's build (CUDA, several GB). pip said:" >&2
                sed 's/^/    /' "$log" >&2
                rm -f "$log"
                exit 1
            fi
            cat "$log"; rm -f "$log"
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
