"""Stage 2: cut the song into scenes -> segments.json."""

from __future__ import annotations

import logging
from typing import Any

from prefect import task

from soundsight.media import sha256_file
from soundsight.models.audio.segmenters import plan_segments
from soundsight.models.lyrics import line_starts
from soundsight.schemas import Manifest
from soundsight.settings import SegmentSettings
from soundsight.tasks.common import stage_options, written_json
from soundsight.tasks.load import read_song
from soundsight.tasks.lyrics import read_lyrics
from soundsight.tasks.reference_beats import load_reference_beats, reference_file, reference_metrics

# 4: the beat tracker of issue 12 (off-beat correction, tempo hypotheses, phrases and sections) and
# the joint cut planner: runs cached with version 3 must not keep their old cuts.
# 5: steady-tempo songs get one straight grid with one beat phase (`beats.steady_lattice`).
# 6: an even pulse takes the double nearer 120 BPM (`beats.even_pulse_double`); steady at 85 %;
#    a steady grid stays straight through the attack refinement.
# 7: downbeat cues weighted by their bar contrast in the song (`beats.downbeat_weights`); tempo
#    curves also centred on rival tempi; a triple-subdivision lattice for accented compound beats;
#    no bass term in the off-beat evidence of a song without a bass line; section columns per beat.
# 8: beats moved from the half-rise to 30 % of the song's median attack (`beats.attack_onset_shift`).
# 9: bar lines: a long-note cue, a small 4/4 prior, and the half-bar twin chosen by the song's start
#    where no cue is certain (`beats.song_bars`, `beats.start_anchored`); the planners count a
#    song's frames as the segments do (round(d * fps): 19.94 s at 25 fps was 498 frames to the
#    planner and 499 to the segments, a tail over the cap).
VERSION = 9
log = logging.getLogger("soundsight")


def segment_identity(inputs: dict[str, Any]) -> str:
    """What besides the settings changes segments.json, keyed on content, never on paths.

    A reference beats file beside the song (its metrics) and, with the beat-this tracker, the
    checkpoint's bytes.
    """
    found = reference_file(inputs["song_path"]) if inputs.get("song_path") else None
    parts = [f"reference={sha256_file(found)}" if found else "reference=none"]
    settings = inputs.get("settings")
    if isinstance(settings, dict):
        settings = SegmentSettings.model_validate(settings)
    if isinstance(settings, SegmentSettings) and settings.beat_tracker == "beat_this":
        from pathlib import Path

        checkpoint = Path(settings.beat_checkpoint).expanduser() if settings.beat_checkpoint else None
        parts.append(f"beat_this={sha256_file(checkpoint) if checkpoint and checkpoint.is_file() else 'missing'}")
    return ";".join(parts)


@task(**stage_options("segment", VERSION, identity=segment_identity))
def segment_song(
    song: Manifest,
    settings: SegmentSettings,
    fps: int,
    max_clip_seconds: float,
    song_path: str = "",
    lyrics: Manifest | None = None,
) -> Manifest:
    """Segments that tile the song exactly, each cut on an output frame.

    `max_clip_seconds` is the active renderer's longest clip (seconds); no segment exceeds it.
    With ``settings.beat_tracker == "beat_this"`` the beats come from the beat-this checkpoint at
    ``settings.beat_checkpoint`` (`MissingCheckpointError` when it is not there). A low tracker
    confidence is logged as a warning on the ``soundsight`` logger (the CLI prints it, the UI shows
    it in the run's logs) and recorded in segments.json (`low_confidence`, `confidence_note`).
    Where the song (at `song_path`, where it is now: never part of the key) has a reference beats
    file beside it (`<song>.beats.txt` or `.chart.mid`), cut accuracy against it is written into
    segments.json as `metrics`.
    """
    meta, pcm = read_song(song)
    grid = None
    if settings.beat_tracker == "beat_this":
        from soundsight.models.audio.beat_this import load_beat_this, track_beats_beat_this
        from soundsight.models.hub import resolve_device

        device = resolve_device("auto")
        grid = track_beats_beat_this(load_beat_this(settings.beat_checkpoint, device), pcm, meta.sample_rate, device)
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
    reference = (
        load_reference_beats(song_path, pcm, meta.sample_rate) if song_path and reference_file(song_path) else None
    )
    if reference is not None:
        cuts = [s.start for s in segmentation.segments[1:]]
        segmentation.metrics = reference_metrics(
            cuts, segmentation.beats, segmentation.downbeats, reference[0], reference[1], fps
        )
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
