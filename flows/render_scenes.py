"""The render fan-out as a subflow, so its task runner can follow the backend: threads for the
CPU animatic, a Dask cluster (one worker per GPU, each keeping its model loaded) for diffusion."""

from __future__ import annotations

from prefect import flow

from soundsight.schemas import Manifest
from soundsight.settings import OutputSettings, RenderSettings
from tasks.common import configured
from tasks.report import track_progress
from tasks.render import SceneInput, one_scene_per_gpu, render_scene, scene_task_runner


@flow(name="render-scenes")
def render_scenes(scenes: list[SceneInput], settings: RenderSettings, output: OutputSettings) -> list[Manifest]:
    with one_scene_per_gpu(settings):
        clips = [configured(render_scene, output).submit(scene, settings) for scene in scenes]
    # Every scene finishes (or fails) before this returns, so a retry redoes only the failed ones.
    track_progress(scenes[0].run_dir if scenes else "", clips)
    return [clip.result() for clip in clips]


def render_all(scenes: list[SceneInput], settings: RenderSettings, output: OutputSettings) -> list[Manifest]:
    """Run `render_scenes` on the task runner `settings` call for."""
    return render_scenes.with_options(task_runner=scene_task_runner(settings))(scenes, settings, output)
