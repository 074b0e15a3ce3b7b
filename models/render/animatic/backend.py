"""The ``animatic`` render backend (`soundsight.models.base.RendererBackend`): the CPU storyboard."""

from __future__ import annotations

import numpy as np

from soundsight.models.base import RenderCosts, RenderSpec, SceneJob
from soundsight.models.render.animatic.renderer import AnimaticRenderer
from soundsight.settings import RenderSettings

__all__ = ["BACKEND", "AnimaticBackend"]


class AnimaticBackend:
    """The animatic: draws on the output grid (any frame count at ``render.fps``), on two threads of the flow.

    It builds no model and draws in the bible's palette itself, so it takes no reference image.
    """

    name = "animatic"
    gpu_workers = False
    takes_reference = False

    def spec(self, settings: RenderSettings) -> RenderSpec:
        """Any frame count at the output frame rate, no longest clip."""
        return RenderSpec(native_fps=float(settings.fps))

    def make(self, settings: RenderSettings) -> AnimaticRenderer:
        """The renderer at ``render.fps`` with ``render.title_seconds`` of title card."""
        return AnimaticRenderer(settings.fps, title_seconds=settings.title_seconds)

    def draw_reference(self, settings: RenderSettings, job: SceneJob) -> np.ndarray:
        """Never called: the animatic takes no reference image.

        Raises
        ------
        ValueError
            Always.
        """
        raise ValueError("the animatic takes no reference image (identity='reference' needs a video model)")

    def costs(self) -> RenderCosts:
        """Nothing built, no model time."""
        return RenderCosts()


BACKEND = AnimaticBackend()
