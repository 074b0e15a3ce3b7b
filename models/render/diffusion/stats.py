"""What this process's diffusion renderer has done: one record per pipeline build and per scene.

The render stage reads them right after a scene (`soundsight.models.base.RenderCosts`: pipelines
built by the worker, the scene's seconds inside the model). Renderers record through
`record_build` and `record_scene`, called through this module, so a benchmark can observe every
worker's records (benchmarks/worker_hooks).
"""

from __future__ import annotations

from collections import Counter, deque

__all__ = ["clear", "construction_counts", "pipeline_builds", "record_build", "record_scene", "render_stats"]

_BUILDS: list[dict] = []  # a process builds a handful of pipelines: all kept
_SCENES: deque[dict] = deque(maxlen=1000)


def record_build(record: dict) -> None:
    """Keep one pipeline build's record: ``key`` (the pipeline cache key), ``quality``, ``pid``, ``build_s``."""
    _BUILDS.append(record)


def record_scene(record: dict) -> None:
    """Keep one scene's record.

    Keys: ``index``, ``quality``, ``frames``, ``width``, ``height``, ``pid``, ``oom_retries``,
    ``render_s`` (seconds inside the pipeline call), ``memory``, ``total_s``.
    """
    _SCENES.append(record)


def pipeline_builds() -> list[dict]:
    """Every pipeline build of this process, oldest first."""
    return list(_BUILDS)


def construction_counts() -> dict[str, int]:
    """How many pipelines this process has built, per cache key."""
    return dict(Counter(build["key"] for build in _BUILDS))


def render_stats() -> list[dict]:
    """One record per scene this process rendered (timings, memory setting, OOM retries), the last 1000."""
    return list(_SCENES)


def clear() -> None:
    """Forget every record."""
    _BUILDS.clear()
    _SCENES.clear()
