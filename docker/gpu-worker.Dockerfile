# soundsight-gpu-worker — `dask cuda worker` (one Dask worker per GPU) with the Wan / Mochi
# backends. BASE_IMAGE: python3 (3.11+) with venv (python:3.11-slim-bookworm, or soundsight-base:bookworm
# from docker/build_base.sh). Build from the repository root (the build context):
#
#   docker build -f docker/gpu-worker.Dockerfile -t soundsight-gpu-worker .
#   docker run --gpus all --network host -v /srv/hf:/models/hf:ro -v /srv/soundsight:/data \
#       soundsight-gpu-worker tcp://HEAD:8786 --resources GPU=1 --nthreads 2 --memory-limit 0
#   without Docker (podman, base from Debian's archive): STEPS=gpu docker/build_and_test.sh
#
# torch==2.13.0 is PyPI's default Linux wheel, a CUDA build that brings its own CUDA libraries
# (nvidia-* wheels), so the base needs no CUDA image; set TORCH_INDEX_URL to pin another CUDA
# flavour (e.g. https://download.pytorch.org/whl/cu130). Checkpoints are never downloaded: mount a
# Hugging Face cache that holds them at /models/hf. Mount the runs folder at the path the flow uses
# (/data/runs in compose): workers write clips there. The build's last command imports the stack (no GPU needed).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=
ARG DASK_CUDA_VERSION=26.10.0
# Metadata before the big RUN: with vfs storage every later instruction copies the whole image.
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/models/hf \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Not the source folder: there, ./soundsight (the core alone) would shadow the installed package.
WORKDIR /data
ENTRYPOINT ["dask", "cuda", "worker"]
# --nthreads 2: a worker runs two scenes at once, one on its GPU while the other encodes (docs/video.md).
CMD ["tcp://scheduler:8786", "--resources", "GPU=1", "--nthreads", "2", "--memory-limit", "0"]
COPY . /opt/soundsight-src
# dask-cuda goes in without its dependencies: its rapids-dask-dependency would move dask and
# distributed to other versions than the flow's; the benchmarks ran dask-cuda 26.10.0 this way.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && python3 -m venv /opt/venv \
 && pip install -q --upgrade pip \
 && pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && pip install -q "/opt/soundsight-src[models]" \
 && pip install -q --no-deps "dask-cuda==${DASK_CUDA_VERSION}" \
 && pip install -q "nvidia-ml-py>=12" "cuda-core>=0.5.1,<2" "pandas>=1.3" "zict>=2.0.0" \
 && rm -rf /root/.cache /opt/soundsight-src/build \
 && cd / && python -c "import torch, diffusers, dask_cuda, distributed, soundsight.models.render.diffusion; print('gpu-worker imports OK: torch', torch.__version__, 'CUDA', torch.version.cuda, '| diffusers', diffusers.__version__, '| dask_cuda', dask_cuda.__version__, '| distributed', distributed.__version__, '| GPU visible:', torch.cuda.is_available())"
