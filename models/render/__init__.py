"""Clip renderers: the CPU animatic, and text-to-video diffusion models on GPU workers."""

from soundsight.models.render.animatic import AnimaticRenderer
from soundsight.models.render.diffusion import DiffusionClipRenderer, make_renderer, spec_for

__all__ = ["AnimaticRenderer", "DiffusionClipRenderer", "make_renderer", "spec_for"]
