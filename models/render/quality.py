"""Final or draft quality, per scene: a rule of the render settings, the same for every backend.

``render.quality`` says how a run renders; ``render.final_scenes`` names scenes rendered in final
quality whatever it says (re-rendering chosen scenes of a draft run). The flow renders and keys
each scene with `scene_settings`, so naming a scene in ``final_scenes`` changes that scene's key
alone.
"""

from __future__ import annotations

from soundsight.settings import RenderSettings

__all__ = ["scene_quality", "scene_settings"]


def scene_quality(settings: RenderSettings, index: int) -> str:
    """``final`` or ``draft``: the quality scene `index` renders in (``final_scenes`` win)."""
    return "final" if settings.quality == "final" or index in settings.final_scenes else "draft"


def scene_settings(settings: RenderSettings, index: int) -> RenderSettings:
    """The render settings scene `index` needs, with its quality resolved and ``final_scenes`` dropped.

    Flows render (and key) each scene with these, so naming a scene in ``final_scenes``
    changes the cache key of that scene alone.
    """
    return settings.model_copy(update={"quality": scene_quality(settings, index), "final_scenes": []})
