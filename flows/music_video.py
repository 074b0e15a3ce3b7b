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

from soundsight.errors import InputError
from soundsight.flows import fan_out
from soundsight.flows.attempts import attempt
from soundsight.flows.report import publish_script, publish_timings, publish_video
from soundsight.flows.stages import Stages
from soundsight.media import song_file_problem, sweep_stale_parts
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


# The flows' docstrings list their parameters Google-style (Args:), not numpy-style: Prefect reads
# the descriptions the UI's run form shows from that section only.
@flow(name="render-song", task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=True)
def render_song(song: str, settings: Settings = Settings()) -> str:
    """Render a song into a music video; returns the path of this run's video.

    The path is this run's own video, in its assemble stage folder, which a run with other
    settings never replaces; the run folder's video.mp4 links to the latest run's video.

    Args:
        song: The song to render: the path of an audio file (mp3, wav, flac, ogg, opus, m4a, anything
            ffmpeg reads) on the machine that runs the flow, the worker's for a deployment run.
        settings: Everything a render can be told, group by group; each stage reads its own group.
    """
    with attempt():  # logs to the server, a crashed earlier attempt closed, a user's error not retried
        check_before_any_work(song, settings)
        # The GPU workers start, and load their pipelines, as soon as a stage has work to do.
        with fan_out.GpuWarmUp(settings.render) as warm:
            return make_video(song, settings, Stages(settings.output, on_work=warm.start), warm)


def make_video(song: str, settings: Settings, stage: Stages, warm: fan_out.GpuWarmUp) -> str:
    """The flow's body: every stage in order (see `render_song`); returns the path of this run's video."""
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
    publish_video(video, stage)
    publish_timings(video, stage)
    return str(video.path("video"))  # this run's own video: the run folder's video.mp4 may be another run's by now


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
    written = stage(write_scenes, edits=check_script_edit)
    return written(loaded, segments, story, analysis, scene_writer_settings(settings), lyrics)


def check_before_any_work(song: str, settings: Settings) -> None:
    """Fail in seconds when the song is no file, or a service or model the run needs is missing; warn about misspelt variables."""
    if problem := song_file_problem(song):  # before its key is computed, which reads the file
        raise InputError(song, problem)
    for variable in unknown_environment_variables():  # a typo would otherwise be ignored without a word
        logging.getLogger("soundsight").warning("%s is not a soundsight setting; it is ignored", variable)
    check_endpoints(settings)
    check_renderer(settings.render)


def tidy_run_folder(loaded: Manifest, settings: Settings) -> None:
    """Remove temporary files of renders that were killed mid-write.

    (Links to files this run does not write - another pipeline's story.txt, scenes a shorter
    script no longer has - go as the run publishes its own names: `flows.stages.show_only`.)
    """
    sweep_stale_parts(Path(loaded.run_dir))
