"""What this process's diffusion renderer has done: one record per pipeline build and per scene.

The render stage reads them right after a scene (`soundsight.models.base.RenderCosts`: pipelines
built by the worker, the scene's seconds inside the model). Renderers record through
`record_build` and `record_scene`, called through this module, so a benchmark can observe every
worker's records (benchmarks/worker_hooks).
"""

from __future__ import annotations

from collections import Counter, deque

__all__ = [
    "clear",
    "construction_counts",
    "pipeline_builds",
    "record_build",
    "record_scene",
    "render_stats",
    "scene_record",
]

_BUILDS: list[dict] = []  # a process builds a handful of pipelines: all kept
_SCENES: deque[dict] = deque(maxlen=1000)


def record_build(record: dict) -> None:
    """Keep one pipeline build's record.

    Keys: ``key`` (the pipeline cache key), ``quality``, ``pid``, ``build_s``, ``ended`` (wall clock,
    `time.time`, when the pipeline was ready).
    """
    _BUILDS.append(record)


def record_scene(record: dict) -> None:
    """Keep one scene's record.

    Keys: ``index``, ``quality``, ``decoder`` (``tiny`` or ``vae``), ``frames``, ``width``,
    ``height``, ``pid``, ``oom_retries``, ``render_s`` (seconds holding the pipeline: the pipeline
    call and the tiny decoder's decode), ``decode_s`` (the tiny decoder's part; 0 with the VAE),
    ``started`` (wall clock, `time.time`, when the scene took the pipeline), ``memory``,
    ``total_s`` (the whole scene, encoding included), ``ended`` (wall clock when its clip was written).
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


def scene_record(index: int) -> dict:
    """The latest record of scene `index` in this process ({} if none): a worker renders two scenes at a time."""
    return next((r for r in reversed(_SCENES) if r["index"] == index), {})


def clear() -> None:
    """Forget every record."""
    _BUILDS.clear()
    _SCENES.clear()
