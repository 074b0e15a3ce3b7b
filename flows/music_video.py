"""The music-video flow: composition only. Each stage is a cached task in `tasks/`; the UI's
artifacts (script, segments, progress, preview, link, timings) come from `tasks/report.py`."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.render_scenes import render_all
from soundsight.settings import Settings
from tasks.analyse import analyse
from tasks.assemble import assemble_video
from tasks.load import load_song
from tasks.render import plan_scenes, render_scene, renderer_spec
from tasks.report import StageLog, publish_script, publish_timings, publish_video, track_progress
from tasks.script import write_script
from tasks.segment import segment_song


@flow(name="render-song", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def render_song(song: str, settings: Settings = Settings()) -> str:
    """Render `song` (a path to any audio file) into a music video; returns the video's path."""
    out = settings.output
    spec = renderer_spec(settings.render)
    stage = StageLog(out)  # each stage's task, configured for this run, timed for the report

    loaded = stage(load_song)(song, str(out.runs_dir), out.run_name, settings.segment.min_seconds)
    segments = stage(segment_song)(loaded, settings.segment, settings.render.fps, spec.max_seconds)
    analysis = analyse(stage, loaded, segments, settings.analysis)  # fans out per batch for CLAP
    script = stage(write_script)(loaded, segments, analysis, settings.script)
    publish_script(script, segments, analysis)

    scenes = plan_scenes(loaded, segments, script, analysis, settings.render)
    if settings.render.backend == "animatic":  # CPU: scenes on this run's threads
        futures = [stage(render_scene).submit(scene, settings.render) for scene in scenes]
        track_progress(loaded, futures)  # waits for every scene, so a retry redoes only the failed ones
        clips = [f.result() for f in futures]
    else:  # video models: a render-scenes subflow on Dask, one worker per GPU
        clips = render_all(scenes, settings.render, out)
    video = stage(assemble_video)(loaded, segments, clips, settings.render)
    publish_video(video, out)
    publish_timings(video, stage)
    return str(video.path("video"))
