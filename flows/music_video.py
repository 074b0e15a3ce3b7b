"""The music-video flow: composition only.

The music-video flow: composition only. Each stage is a cached task in `tasks/`; the two
fan-outs (CLAP batches, scenes) are in `flows/fan_out.py`; the UI's artifacts (script, segments,
progress, preview, link, timings) come from `tasks/report.py`.

Pipeline 1 (``pipeline=clap``): segment -> analyse -> script. Pipeline 2 (``pipeline=lalm``):
segment -> (analyse, if ``pipeline_2_analysis``) -> story (an audio-language model listens) ->
script (the story split into one scene per segment). Both end in the same script.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from soundsight.flows import fan_out
from soundsight.media import sweep_stale_parts
from soundsight.schemas import Manifest
from soundsight.settings import Settings, unknown_environment_variables
from soundsight.tasks.analyse import resolve_backend
from soundsight.tasks.assemble import assemble_video
from soundsight.tasks.common import adopt_edits, publish
from soundsight.tasks.load import load_song
from soundsight.tasks.lyrics import find_song_lyrics
from soundsight.tasks.render import check_renderer, plan_scenes, renderer_spec
from soundsight.tasks.report import StageLog, publish_script, publish_timings, publish_video
from soundsight.tasks.script import (
    check_endpoints,
    check_script_edit,
    forget_other_pipeline,
    listening_plan,
    publish_story,
    scene_writer_settings,
    write_scenes,
    write_script,
    write_story,
)
from soundsight.tasks.segment import segment_song


def warn_about_unknown_environment_variables() -> None:
    """A typo in a SOUNDSIGHT_* variable would otherwise be ignored without a word."""
    for variable in unknown_environment_variables():
        logging.getLogger("soundsight").warning("%s is not a soundsight setting; it is ignored", variable)


def listen_and_write(
    stage: StageLog,
    loaded: Manifest,
    segments: Manifest,
    analysis: Manifest | None,
    lyrics: Manifest | None,
    settings: Settings,
) -> Manifest:
    """Pipeline 2's script: the story stage (the LALM listens), then the script stage (the story, split)."""
    plan = listening_plan(loaded, segments, settings.lalm)
    characters, cues = settings.script.characters, settings.script.story_cues
    story = publish_story(stage(write_story)(loaded, plan, settings.lalm, characters, cues))
    script = stage(write_scenes)(loaded, segments, story, analysis, scene_writer_settings(settings), lyrics)
    return publish(adopt_edits(script, check_script_edit))


@flow(name="render-song", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def render_song(song: str, settings: Settings = Settings()) -> str:
    """Render `song` (a path to any audio file) into a music video; returns the video's path."""
    out = settings.output
    warn_about_unknown_environment_variables()
    check_endpoints(settings)  # fail in seconds, before any work, when a service or model is missing
    check_renderer(settings.render)
    spec = renderer_spec(settings.render)
    lines_first = settings.segment.prefer_line_starts
    stage = StageLog(out)  # each stage's task, configured for this run, timed for the report

    loaded = publish(stage(load_song)(song, str(out.runs_dir), out.run_name, settings.segment.min_seconds))
    sweep_stale_parts(Path(loaded.run_dir))  # temporary files of renders that were killed
    forget_other_pipeline(loaded.run_dir, settings)  # links to files this pipeline does not write
    # Sung lines come before the cuts when cuts should land on them, else after the labels (CLAP's
    # Vocals label then helps decide whether the song is sung).
    lyrics = publish(stage(find_song_lyrics)(loaded, None, settings.lyrics, song)) if lines_first else None
    segments = publish(stage(segment_song)(loaded, settings.segment, settings.render.fps, spec.max_seconds, lyrics))
    labelled = settings.pipeline == "clap" or settings.pipeline_2_analysis
    analysis = publish(fan_out.analyse(stage, loaded, segments, settings.analysis)) if labelled else None
    if lyrics is None:
        clap = analysis if analysis is not None and resolve_backend(settings.analysis) == "clap" else None
        lyrics = publish(stage(find_song_lyrics)(loaded, segments, settings.lyrics, song, clap))
    if settings.pipeline == "lalm":
        script = listen_and_write(stage, loaded, segments, analysis, lyrics, settings)
    else:
        script = publish(
            adopt_edits(stage(write_script)(loaded, segments, analysis, settings.script, lyrics), check_script_edit)
        )
    publish_script(script, segments, analysis)

    scenes = plan_scenes(loaded, segments, script, analysis, settings.render)
    clips = fan_out.render(stage, loaded, script, scenes, settings.render)
    video = publish(stage(assemble_video)(loaded, segments, clips, settings.render, lyrics))
    publish_video(video, out)
    publish_timings(video, stage)
    return str(Path(video.run_dir) / video.links["video"])
