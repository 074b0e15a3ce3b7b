"""The music-video flow: composition only. Each stage is a cached task in `tasks/`."""

from __future__ import annotations

from prefect import flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from soundsight.settings import Settings
from tasks.analyse import analyse_song
from tasks.assemble import assemble_video
from tasks.common import configured
from tasks.load import load_song
from tasks.render import plan_scenes, render_scene, renderer_spec
from tasks.script import write_script
from tasks.segment import segment_song


@flow(name="render-song", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def render_song(song: str, settings: Settings = Settings()) -> str:
    """Render `song` (a path to any audio file) into a music video; returns the video's path."""
    out = settings.output
    spec = renderer_spec(settings.render)

    loaded = configured(load_song, out)(song, str(out.runs_dir), out.run_name, settings.segment.min_seconds)
    segments = configured(segment_song, out)(loaded, settings.segment, settings.render.fps, spec.max_seconds)
    analysis = configured(analyse_song, out)(loaded, segments, settings.analysis)
    script = configured(write_script, out)(loaded, segments, analysis, settings.script)

    scenes = plan_scenes(loaded, segments, script, analysis, settings.render)
    clips = [configured(render_scene, out).submit(scene, settings.render) for scene in scenes]
    wait(clips)  # let every scene finish (or fail) before failing, so a retry redoes only the failed ones
    video = configured(assemble_video, out)(loaded, segments, [c.result() for c in clips], settings.render)
    return str(video.path("video"))
