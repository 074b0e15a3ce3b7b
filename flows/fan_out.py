"""The music-video flow's two fan-outs: CLAP embedding batches, and scenes.

Both submit one task per unit of work to a task runner and wait for all of them, so a retried run
finds every finished unit cached and redoes only the rest. This is the one path the CLI,
deployments, tests and benchmarks take.

Scenes render where the backend needs them: the CPU animatic on threads; diffusion models on a
Dask cluster - a local one with one single-threaded worker per GPU (two CPU workers without
GPUs), or the scheduler at ``render.dask_address`` - where each worker keeps its pipeline loaded
and every scene claims one GPU.
"""

from __future__ import annotations

import contextlib

from prefect.task_runners import ThreadPoolTaskRunner

from soundsight.flows.report import track_progress
from soundsight.flows.stages import Stages, cached_result
from soundsight.schemas import Manifest
from soundsight.settings import AnalysisSettings, RenderSettings
from soundsight.tasks.analyse import analyse_song, embed_segment_batch, fans_out, segment_batches
from soundsight.tasks.render import (
    SceneInput,
    check_reference_edit,
    make_reference,
    one_scene_per_gpu,
    render_scene,
    scene_settings,
    scene_task_runner,
    uses_reference,
)


def analyse(stage: Stages, song: Manifest, segments: Manifest, settings: AnalysisSettings) -> Manifest:
    """The analyse stage, fanned out per batch of segments for CLAP.

    One task; with CLAP, first one embedding task per batch of segments (on the flow's workers,
    each keeping the model loaded), then one labelling task.
    """
    embeddings = None
    if fans_out(settings):
        batches = [
            stage.task(embed_segment_batch).submit(song, segments, first, last, settings)
            for first, last in segment_batches(segments, settings)
        ]
        embeddings = [stage.published(batch) for batch in batches]
    return stage(analyse_song)(song, segments, settings, embeddings)


def render(
    stage: Stages, song: Manifest, script: Manifest, scenes: list[SceneInput], settings: RenderSettings
) -> list[Manifest]:
    """The render stage: one task per scene, fanned out.

    First, for ``identity = "reference"``, the reference image every scene is conditioned on. Work
    whose result is already cached (and intact) is collected on threads; only the rest goes to
    `scene_task_runner`, so a fully cached rerun starts no GPU cluster. Each scene's line
    (Completed / Cached) and its timings are recorded here, in the flow's process, wherever the
    scene ran. Returns the clips in scene order once every scene has finished (or raises the
    first failure).
    """
    with contextlib.ExitStack() as runners:
        threads = runners.enter_context(ThreadPoolTaskRunner(max_workers=2))
        runner = None

        def where(task, inputs):
            nonlocal runner
            if cached_result(task, inputs, stage.output) is not None:
                return threads
            if runner is None:
                runner = runners.enter_context(scene_task_runner(settings))
            return runner

        if uses_reference(settings):
            made, inputs = stage.task(make_reference), {"song": song, "script": script, "settings": settings}
            with one_scene_per_gpu(settings):
                reference = stage.published(where(made, inputs).submit(made, inputs), edits=check_reference_edit)
            settings = settings.model_copy(update={"reference": str(reference.path("reference"))})

        # Each scene with its own quality (draft, or final for `final_scenes`); final ones go last,
        # so a worker switches pipelines once.
        task = stage.task(render_scene)
        per_scene = {s.index: scene_settings(settings, s.index) for s in scenes}
        order = sorted(scenes, key=lambda s: per_scene[s.index].quality == "final" and settings.quality == "draft")
        futures = {}
        for scene in order:
            inputs = {"scene": scene, "settings": per_scene[scene.index]}
            pool = where(task, inputs)
            with one_scene_per_gpu(settings) if pool is not threads else contextlib.nullcontext():
                futures[scene.index] = pool.submit(task, inputs)
        names = {f.task_run_id: f"render-scene-{index:03d}" for index, f in futures.items()}

        def finished(future) -> None:
            clip = future.result(raise_on_failure=False) if future.state.is_completed() else None
            stage.scene_finished(
                names[future.task_run_id], future.state.name, clip if isinstance(clip, Manifest) else None
            )

        ordered = [futures[s.index] for s in scenes]
        track_progress(song, ordered, on_finished=finished)
        clips = [stage.published(future) for future in ordered]
    return clips
