"""Stage 2: cut the song into scenes -> segments.json."""

from __future__ import annotations

from prefect import task

from models.segmenters import plan_segments
from soundsight.media import sha256_file, write_json_atomic
from soundsight.schemas import Manifest
from soundsight.settings import SegmentSettings
from tasks.common import stage_options
from tasks.load import read_song


@task(**stage_options("segment", 1))
def segment_song(song: Manifest, settings: SegmentSettings, fps: int, max_clip_seconds: float) -> Manifest:
    """Segments that tile the song exactly, each cut on an output frame.

    `max_clip_seconds` is the active renderer's longest clip (seconds); no segment exceeds it.
    """
    meta, pcm = read_song(song)
    segmentation = plan_segments(
        pcm, meta.sample_rate, meta.duration, song_hash=meta.content_hash, fps=fps,
        max_clip_seconds=max_clip_seconds, **settings.model_dump(),
    )  # fmt: skip
    path = write_json_atomic(song.path("song").parent / "segments.json", segmentation)
    return Manifest(
        stage="segment",
        run_dir=song.run_dir,
        files={"segments": "segments.json"},
        hashes={"segments": sha256_file(path)},
        info={"scenes": len(segmentation.segments), "tempo_bpm": segmentation.tempo_bpm or 0.0},
    )
