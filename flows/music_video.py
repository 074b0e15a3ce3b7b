"""The music-video flow: composition only.

Each stage is a cached task in `tasks/`, called through the run's `flows.stages.Stages` (configured
once per run, its files published under readable names, its runs timed); the two fan-outs (CLAP
batches, scenes) are in `flows/fan_out.py`; the UI's artifacts (script, segments, progress,
preview, link, timings) come from `flows/report.py`.

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
from soundsight.flows.report import publish_script, publish_timings, publish_video
from soundsight.flows.stages import Stages, unpublish_beyond
from soundsight.media import sweep_stale_parts
from soundsight.schemas import Manifest
from soundsight.settings import Settings, unknown_environment_variables
from soundsight.tasks.analyse import analyser_backend
from soundsight.tasks.assemble import assemble_video
from soundsight.tasks.load import load_song
from soundsight.tasks.lyrics import find_song_lyrics
from soundsight.tasks.render import check_renderer, plan_scenes, renderer_spec
from soundsight.tasks.script import (
    check_endpoints,
    check_script_edit,
    listening_plan,
    scene_writer_settings,
    write_scenes,
    write_script,
    write_story,
)
from soundsight.tasks.segment import segment_song


@flow(name="render-song", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def render_song(song: str, settings: Settings = Settings()) -> str:
    """Render `song` (a path to any audio file) into a music video; returns the video's path."""
    check_before_any_work(settings)
    # The GPU workers start, and load their pipelines, as soon as a stage has work to do.
    with fan_out.GpuWarmUp(settings.render) as warm:
        return render_with(song, settings, Stages(settings.output, on_work=warm.start), warm)


def render_with(song: str, settings: Settings, stage: Stages, warm: fan_out.GpuWarmUp) -> str:
    """`render_song`'s stages in order; returns the video's path."""
    out, longest = settings.output, renderer_spec(settings.render).max_seconds  # longest clip, seconds
    labelled = settings.pipeline == "clap" or settings.pipeline_2_analysis

    loaded = stage(load_song)(song, str(out.runs_dir), out.run_name, settings.segment.min_seconds)
    tidy_run_folder(loaded, settings)
    # Sung lines come before the cuts when cuts should land on them, else after the labels (CLAP's
    # Vocals label then helps decide whether the song is sung).
    lines_first = settings.segment.prefer_line_starts
    lyrics = stage(find_song_lyrics)(loaded, None, settings.lyrics, song) if lines_first else None
    segments = stage(segment_song)(loaded, settings.segment, settings.render.fps, longest, lyrics)
    analysis = fan_out.analyse(stage, loaded, segments, settings.analysis) if labelled else None
    if lyrics is None:
        vocals = analysis if analysis is not None and analyser_backend(settings.analysis).hears_vocals else None
        lyrics = stage(find_song_lyrics)(loaded, segments, settings.lyrics, song, vocals)
    if settings.pipeline == "lalm":
        script = listen_and_write(stage, loaded, segments, analysis, lyrics, settings)
    else:
        script = stage(write_script, edits=check_script_edit)(loaded, segments, analysis, settings.script, lyrics)
    publish_script(script, segments, analysis)

    scenes = plan_scenes(loaded, segments, script, analysis, settings.render)
    clips = fan_out.render(stage, loaded, script, scenes, settings.render, warm)
    video = stage(assemble_video)(loaded, segments, clips, settings.render, lyrics)
    publish_video(video, out)
    publish_timings(video, stage)
    return str(Path(video.run_dir) / video.links["video"])


def listen_and_write(
    stage: Stages,
    loaded: Manifest,
    segments: Manifest,
    analysis: Manifest | None,
    lyrics: Manifest | None,
    settings: Settings,
) -> Manifest:
    """Pipeline 2's script: the story stage (the LALM listens), then the script stage (the story, split)."""
    plan = listening_plan(loaded, segments, settings.lalm)
    characters, cues = settings.script.characters, settings.script.story_cues
    story = stage(write_story)(loaded, plan, settings.lalm, characters, cues)
    # Window descriptions an earlier, longer plan left behind are not this story's.
    keep = {Path(link).name for link in story.links.values() if link.startswith("listen/")}
    unpublish_beyond(story.run_dir, "listen", "window_*.txt", keep=keep)
    written = stage(write_scenes, edits=check_script_edit)
    return written(loaded, segments, story, analysis, scene_writer_settings(settings), lyrics)


def check_before_any_work(settings: Settings) -> None:
    """Fail in seconds when a service or model the run needs is missing; warn about misspelt variables."""
    for variable in unknown_environment_variables():  # a typo would otherwise be ignored without a word
        logging.getLogger("soundsight").warning("%s is not a soundsight setting; it is ignored", variable)
    check_endpoints(settings)
    check_renderer(settings.render)


def tidy_run_folder(loaded: Manifest, settings: Settings) -> None:
    """Remove what the run folder shows but this run will not write.

    Temporary files of renders that were killed, and links to files this run's pipeline does not
    write: the names in the run folder show the latest run's files, so after a pipeline-2 run
    without labels an analysis.json of an earlier run would be taken for this one's, and after a
    pipeline-1 run, so would story.txt.
    """
    sweep_stale_parts(Path(loaded.run_dir))
    stale = []
    if settings.pipeline == "lalm" and not settings.pipeline_2_analysis:
        stale.append((".", "analysis.json"))
    if settings.pipeline != "lalm":
        stale += [(".", "story.txt"), ("listen", "*")]
    for folder, pattern in stale:
        unpublish_beyond(loaded.run_dir, folder, pattern, keep=set())
