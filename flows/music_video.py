"""The music-video flow: composition only.

The music-video flow: composition only. Each stage is a cached task in `tasks/`; the two
fan-outs (CLAP batches, scenes) are in `flows/fan_out.py`; the UI's artifacts (script, segments,
progress, preview, link, timings) come from `tasks/report.py`.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from soundsight.flows import fan_out
from soundsight.tasks.assemble import assemble_video
from soundsight.tasks.load import load_song
from soundsight.tasks.render import plan_scenes, renderer_spec
from soundsight.tasks.report import StageLog, publish_script, publish_timings, publish_video
from soundsight.tasks.script import write_script
from soundsight.tasks.segment import segment_song

from soundsight.settings import Settings


@flow(name="render-song", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def render_song(song: str, settings: Settings = Settings()) -> str:
    """Render `song` (a path to any audio file) into a music video; returns the video's path."""
    out = settings.output
    spec = renderer_spec(settings.render)
    stage = StageLog(out)  # each stage's task, configured for this run, timed for the report

    loaded = stage(load_song)(song, str(out.runs_dir), out.run_name, settings.segment.min_seconds)
    segments = stage(segment_song)(loaded, settings.segment, settings.render.fps, spec.max_seconds)
    analysis = fan_out.analyse(stage, loaded, segments, settings.analysis)
    script = stage(write_script)(loaded, segments, analysis, settings.script)
    publish_script(script, segments, analysis)

    scenes = plan_scenes(loaded, segments, script, analysis, settings.render)
    clips = fan_out.render(stage, loaded, scenes, settings.render)
    video = stage(assemble_video)(loaded, segments, clips, settings.render)
    publish_video(video, out)
    publish_timings(video, stage)
    return str(video.path("video"))
