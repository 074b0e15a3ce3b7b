"""SIMULATED slow GPU render backend, for capacity planning only: the animatic plus a fixed sleep per scene.

Registered as ``render.backend = "simulated-gpu"`` by this folder's sitecustomize when
``BENCH_SIMULATED_GPU_SECONDS = S``: every scene that actually renders sleeps S seconds before
drawing its animatic clip, as if a video model had spent S seconds of GPU time on it. The sleep
holds no CPU, so on a small machine several Prefect workers overlap their "GPU time" the way real
GPU hosts would: `benchmarks/catalogue.py` measures how songs/hour scale with workers this way.
Nothing about real render speed is simulated: use the measured seconds per scene of your model and
GPU (benchmarks/RESULTS_video.md) as S.

The clip itself is the animatic's, so videos are real and checkable; S is part of the renderer's
``backend_id`` (the render cache key), so simulated renders never stand in for real ones.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from soundsight.models.base import ClipInfo, SceneJob
from soundsight.models.render.animatic import RENDERER_ID, AnimaticBackend, AnimaticRenderer
from soundsight.settings import RenderSettings

__all__ = ["BACKEND", "SimulatedGPUBackend", "SimulatedGPURenderer"]


class SimulatedGPURenderer(AnimaticRenderer):
    """The animatic, after sleeping a fixed time per scene (a SIMULATED slow GPU backend).

    Parameters
    ----------
    fps : int
        Output frame rate.
    seconds_per_scene : float
        Simulated GPU seconds per scene (the sleep).
    title_seconds : float
        Length of the opening title card, seconds (as the animatic's).
    """

    name = "simulated-gpu"

    def __init__(self, fps: int, seconds_per_scene: float, *, title_seconds: float = 1.5):
        super().__init__(fps, title_seconds=title_seconds)
        self.seconds_per_scene = float(seconds_per_scene)
        self.backend_id = f"simulated-gpu-{self.seconds_per_scene:g}s+{RENDERER_ID}"

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        """Sleep `seconds_per_scene`, then render `job`'s animatic clip into `out_path`."""
        time.sleep(self.seconds_per_scene)
        return super().__call__(job, out_path)


class SimulatedGPUBackend(AnimaticBackend):
    """The animatic backend with `SimulatedGPURenderer`: scenes on the flow's threads, as the animatic's."""

    name = "simulated-gpu"

    def make(self, settings: RenderSettings) -> SimulatedGPURenderer:
        """The renderer sleeping $BENCH_SIMULATED_GPU_SECONDS per scene."""
        seconds = float(os.environ["BENCH_SIMULATED_GPU_SECONDS"])
        return SimulatedGPURenderer(settings.fps, seconds, title_seconds=settings.title_seconds)


BACKEND = SimulatedGPUBackend()
