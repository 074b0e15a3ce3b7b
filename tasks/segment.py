"""Stage 2: cut the song into scenes -> segments.json."""

from __future__ import annotations

import logging
from typing import Any

from prefect import task

from soundsight.models.audio.segmenters import plan_segments
from soundsight.models.lyrics import line_starts
from soundsight.models.registry import load
from soundsight.schemas import Manifest
from soundsight.settings import SegmentSettings
from soundsight.tasks.common import stage_options, written_json
from soundsight.tasks.load import read_song
from soundsight.tasks.lyrics import read_lyrics

# Bump when segments.json changes for the same inputs (the tracker, the planners, the file's format).
VERSION = 10
# Opens every identity: the stage once keyed a reference beats file beside the song ("none" for
# all songs without one), and runs cached then keep their keys.
IDENTITY_PREFIX = "reference=none"
log = logging.getLogger("soundsight")


def compile_ahead() -> float:
    """Compile the segment and analyse stages' numba code into its disk cache now; returns seconds.

    `soundsight warm` (install.sh and the Docker image run it): otherwise the first song on a
    fresh machine pays the compilation (~30 s) in its segment stage.
    """
    from soundsight.models.audio.warm import compile_cpu_stages

    return compile_cpu_stages()


def segment_identity(inputs: dict[str, Any]) -> str:
    """What besides the settings changes segments.json, keyed on content, never on paths.

    The beat tracker's identity (`BeatTracker.identity`: e.g. beat-this's checkpoint bytes).
    """
    settings = inputs.get("settings")
    if isinstance(settings, dict):
        settings = SegmentSettings.model_validate(settings)
    if not isinstance(settings, SegmentSettings):
        return IDENTITY_PREFIX
    tracker = load("beat tracker", settings.beat_tracker).identity(settings)
    return ";".join([IDENTITY_PREFIX, tracker] if tracker else [IDENTITY_PREFIX])


@task(**stage_options("segment", VERSION, identity=segment_identity))
def segment_song(
    song: Manifest,
    settings: SegmentSettings,
    fps: int,
    max_clip_seconds: float,
    lyrics: Manifest | None = None,
) -> Manifest:
    """Segments that tile the song exactly, each cut on an output frame.

    `max_clip_seconds` is the active renderer's longest clip (seconds); no segment exceeds it.
    The beats come from the tracker ``settings.beat_tracker`` names (`soundsight.backends.BEAT_TRACKERS`),
    which raises a `SoundsightError` when it cannot run (beat-this: `MissingCheckpointError` without
    its checkpoint). A low tracker confidence is logged as a warning on the ``soundsight`` logger
    (the CLI prints it, the UI shows it in the run's logs) and recorded in segments.json
    (`low_confidence`, `confidence_note`).
    """
    meta, pcm = read_song(song)
    grid = load("beat tracker", settings.beat_tracker).track(pcm, meta.sample_rate, settings)
    segmentation = plan_segments(
        pcm,
        meta.sample_rate,
        settings,
        song_hash=meta.content_hash,
        fps=fps,
        max_clip_seconds=max_clip_seconds,
        grid=grid,
        line_starts=line_starts(read_lyrics(lyrics)) if lyrics is not None and settings.prefer_line_starts else None,
    )
    if segmentation.confidence_note:
        log.warning("segment: %s: %s", meta.title or meta.slug, segmentation.confidence_note)
    return written_json(
        "segment",
        song.run_dir,
        "segments",
        segmentation,
        scenes=len(segmentation.segments),
        tempo_bpm=segmentation.tempo_bpm or 0.0,
        beat_confidence=segmentation.beat_confidence or 0.0,
        low_confidence=int(segmentation.low_confidence),
    )
