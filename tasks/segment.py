"""Stage 2: cut the song into scenes -> segments.json."""

from __future__ import annotations

from typing import Any

from prefect import task

from soundsight.media import sha256_file, write_json_atomic
from soundsight.models.audio.segmenters import plan_segments
from soundsight.schemas import Manifest
from soundsight.settings import SegmentSettings
from soundsight.tasks.common import stage_folder, stage_options, written
from soundsight.tasks.load import read_song
from soundsight.tasks.reference_beats import load_reference_beats, reference_file, reference_metrics


def reference_identity(inputs: dict[str, Any]) -> str:
    """A reference beats file beside the song changes segments.json (its metrics): key on its bytes."""
    found = reference_file(inputs["song_path"]) if inputs.get("song_path") else None
    return f"reference={sha256_file(found)}" if found else "reference=none"


@task(**stage_options("segment", 3, identity=reference_identity))
def segment_song(
    song: Manifest, settings: SegmentSettings, fps: int, max_clip_seconds: float, song_path: str = ""
) -> Manifest:
    """Segments that tile the song exactly, each cut on an output frame.

    `max_clip_seconds` is the active renderer's longest clip (seconds); no segment exceeds it.
    Where the song (at `song_path`, where it is now: never part of the key) has a reference beats
    file beside it (`<song>.beats.txt` or `.chart.mid`), cut accuracy against it is written into
    segments.json as `metrics`.
    """
    meta, pcm = read_song(song)
    segmentation = plan_segments(
        pcm, meta.sample_rate, settings, song_hash=meta.content_hash, fps=fps, max_clip_seconds=max_clip_seconds
    )
    reference = (
        load_reference_beats(song_path, pcm, meta.sample_rate) if song_path and reference_file(song_path) else None
    )
    if reference is not None:
        cuts = [s.start for s in segmentation.segments[1:]]
        segmentation.metrics = reference_metrics(
            cuts, segmentation.beats, segmentation.downbeats, reference[0], reference[1], fps
        )
    folder = stage_folder(song.run_dir, "segment")
    write_json_atomic(folder / "segments.json", segmentation)
    return written(
        "segment",
        song.run_dir,
        {"segments": folder / "segments.json"},
        links={"segments": "segments.json"},
        scenes=len(segmentation.segments),
        tempo_bpm=segmentation.tempo_bpm or 0.0,
        beat_confidence=segmentation.beat_confidence or 0.0,
    )
