# A soundsight GPU render worker: `dask cuda worker` (one Dask worker per GPU, one thread each,
# resource GPU=1) with the Wan / Mochi backends. Build from the repository root:
#
#   DOCKER_BUILDKIT=1 docker build -f docker/gpu-worker.Dockerfile -t soundsight-gpu-worker .
#   docker run --gpus all --network host \
#       -v /srv/hf:/models/hf:ro -v /srv/soundsight/runs:/srv/soundsight/runs \
#       soundsight-gpu-worker tcp://HEAD:8786 --resources GPU=1 --nthreads 1 --memory-limit 0
#
# Checkpoints are never downloaded here: mount a Hugging Face cache that already holds them
# (`hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, `hf download genmo/mochi-1-preview`) at
# /models/hf. Mount the runs folder at the same path the flow uses: workers write clips there.
# Client, scheduler and workers must run the same dask/distributed versions (docs/video.md).

# Any CUDA 13 runtime image your driver supports; torch's cu130 wheels bring their own CUDA libs.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/models/hf \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# The CUDA build of the torch version the project pins (pyproject: torch==2.13.0).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130

WORKDIR /app
COPY . /app
# soundsight with its model stack (diffusers, transformers, dask, distributed, prefect-dask).
# dask-cuda goes in without its dependencies: its rapids-dask-dependency would move dask and
# distributed to other versions than the flow's; the benchmark ran dask-cuda 26.10.0 this way.
RUN pip install ".[models]" \
 && pip install --no-deps dask-cuda==26.10.0 \
 && pip install "nvidia-ml-py>=12" "cuda-core>=0.5.1,<2" "pandas>=1.3" "zict>=2.0.0" \
 && python -c "import dask_cuda, diffusers, models.video_diffusion"

ENTRYPOINT ["dask", "cuda", "worker"]
CMD ["tcp://scheduler:8786", "--resources", "GPU=1", "--nthreads", "1", "--memory-limit", "0"]
