#!/usr/bin/env bash
# Issue 29's measurements on an offline GPU box (Python 3.12 with torch, transformers, numba; no
# network, no ffmpeg), in two steps because one transfer carries at most 64 MiB:
#
#   bash draft_e2e_device.sh setup BUNDLE1    # soundsight's Python dependencies, `soundsight warm`,
#                                              # random models, the decoder benchmark
#   bash draft_e2e_device.sh measure BUNDLE2  # ffmpeg, then benchmarks/gpu_end_to_end.py on the song
#
# Each BUNDLE is a folder of wheels (--no-deps: the box's own torch stays; setup's includes soundsight's own,
# `pip wheel --no-deps --no-build-isolation .` from the branch) plus src.tgz (the branch:
# `git archive --format=tar.gz HEAD`; only its benchmarks/ and tests/ are unpacked) and, for measure,
# digital_pursuit.ogg. Everything lands in /opt (kept while the machine stays up); results go to $OUT.
# docs/video.md, "Repeating this on an offline GPU box", says how the wheels were chosen.
set -euo pipefail
mode=$1
bundle=$(realpath "$2")
out=${OUT:-/tmp/out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=/opt/site HF_HUB_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
# What install.sh's `soundsight warm` and docker/Dockerfile do: numba's cache in one folder, for the generic CPU.
export NUMBA_CACHE_DIR=/opt/numba NUMBA_CPU_NAME=generic
TIMEFORMAT='%R s'
python3 -m pip install -q --no-index --no-deps --no-compile --target /opt/site --upgrade "$bundle"/*.whl
rm -rf /opt/src && mkdir -p /opt/src && tar -xzf "$bundle/src.tgz" -C /opt/src benchmarks tests  # no soundsight/: the wheel's is used

cd /tmp  # not a checkout: a soundsight/ folder in the working directory would shadow the installed package
case $mode in
setup)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/env.txt"
  python3 -c "import torch, diffusers, transformers, prefect, distributed, librosa, numba; print('torch', \
torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'prefect', \
prefect.__version__, 'distributed', distributed.__version__, 'librosa', librosa.__version__, 'numba', \
numba.__version__)" | tee -a "$out/env.txt"
  for process in first second; do  # a fresh process each: the second finds the first's cache on disk
    { time python3 -c "from soundsight.flows.cli import main; main(['warm'])"; } 2>&1 | sed "s/^/$process process: /"
  done | tee "$out/numba.txt"
  python3 -c "from numba.core.registry import cpu_target; print('numba cache key (triple, cpu, features):', \
cpu_target.target_context.codegen().magic_tuple())" | tee -a "$out/numba.txt"
  { time python3 /opt/src/benchmarks/gpu/make_models.py /opt/models; } 2>&1 | tee "$out/models.json"
  python3 /opt/src/benchmarks/gpu/bench_tiny_decoder.py --cuda --out "$out/decoders.json"
  ;;
measure)
  test -d /opt/models/wan13-random || { echo "no /opt/models: run setup first on this machine"; exit 3; }
  chmod +x /opt/site/imageio_ffmpeg/binaries/ffmpeg-*
  mkdir -p /tmp/run && cd /tmp/run  # not a checkout: nothing shadows the installed package
  set -o pipefail
  timeout "${BUDGET_S:-560}" python3 /opt/src/benchmarks/gpu_end_to_end.py --song "$bundle/digital_pursuit.ogg" \
    --model /opt/models/wan13-random --quality draft --draft-lora /opt/models/draft_lora.safetensors \
    --tiny-decoder /opt/models/taew2_1.safetensors --temporary-server --final-scenes "${FINAL_SCENES:-3}" \
    --device-kind "${DEVICE_KIND:-}" --runs-dir /opt/runs --out "$out/e2e.json" 2>&1 | tee "$out/e2e.log"
  ;;
*)
  echo "usage: $0 setup|measure BUNDLE" >&2
  exit 2
  ;;
esac
