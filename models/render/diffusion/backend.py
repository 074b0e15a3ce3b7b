"""The ``wan`` and ``mochi`` render backends (`soundsight.models.base.RendererBackend`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundsight.models.base import RenderCosts, RenderSpec, SceneJob
from soundsight.models.render.diffusion.families import spec_for
from soundsight.models.render.diffusion.renderer import DiffusionClipRenderer, make_renderer
from soundsight.models.render.diffusion.stats import construction_counts, render_stats
from soundsight.settings import RenderSettings

__all__ = ["MOCHI_BACKEND", "WAN_BACKEND", "DiffusionBackend"]


@dataclass(frozen=True)
class DiffusionBackend:
    """A diffusers text-to-video backend: the families `name` covers (`families.BACKEND_FAMILIES`).

    Scenes render on GPU workers, each keeping its pipeline loaded; ``identity = "reference"``
    applies (a checkpoint that takes no reference image is refused by `make`).
    """

    name: str
    gpu_workers: bool = True
    takes_reference: bool = True

    def spec(self, settings: RenderSettings) -> RenderSpec:
        """The checkpoint's family's frame rules (by its folder or its id), without loading it."""
        return spec_for(self.name, settings.model)

    def make(self, settings: RenderSettings) -> DiffusionClipRenderer:
        """The renderer; resolves the checkpoint (MissingCheckpointError when it is not here), loads nothing."""
        return make_renderer(settings)

    def draw_reference(self, settings: RenderSettings, job: SceneJob) -> np.ndarray:
        """The first frame the model generates for `job` (a one-frame clip), (height, width, 3) uint8."""
        frames, _ = make_renderer(settings).generate(job)
        return frames[0]

    def costs(self) -> RenderCosts:
        """Pipelines this process has built, and the last scene's seconds inside the pipeline call."""
        return RenderCosts(
            pipelines_built=sum(construction_counts().values()),
            gpu_seconds=float(render_stats()[-1].get("render_s", 0.0)),  # a worker renders one scene at a time
        )


WAN_BACKEND = DiffusionBackend("wan")
MOCHI_BACKEND = DiffusionBackend("mochi")
