"""Stage: the song's sung words -> lyrics.json, lyrics.lrc and captions (lyrics.srt, lyrics.ass).

Between load/segment and script. A ``<stem>.lrc`` or ``<stem>.txt`` beside the song (at
`song_path`, where it is now: never part of the key) is used and its bytes enter the key;
otherwise the vocal check decides whether Whisper transcribes (`models.lyrics.song`). An
instrumental, or a machine without a Whisper, gets "no lyrics" and still a video.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from prefect import task

from soundsight.errors import MissingCheckpointError
from soundsight.media import atomic_path, sha256_file, write_json_atomic, write_text_atomic
from soundsight.models import registry
from soundsight.models.lyrics.captions import write_captions
from soundsight.models.lyrics.formats import write_lrc
from soundsight.models.lyrics.song import find_lyrics, lyrics_file_beside
from soundsight.models.lyrics.vocals import DETECTOR_VERSION
from soundsight.schemas import Analysis, Lyrics, Manifest, Segmentation
from soundsight.settings import LyricsSettings
from soundsight.tasks.common import stage_folder, stage_options, written
from soundsight.tasks.load import read_song

__all__ = ["clap_vocal_segments", "find_song_lyrics", "lyrics_identity", "read_lyrics"]


def lyrics_identity(inputs: dict[str, Any]) -> str:
    """What the lyrics key depends on besides its inputs and settings.

    The lyrics file beside the song (its suffix and bytes, or none); without an ``.lrc``, also the
    vocal detector's version and the Whisper's name and revision (a snapshot commit or the folder's
    content fingerprint, the packaged tiny.en's ``model.bin`` included) with faster-whisper's and
    ctranslate2's versions ("missing" while it is not on this machine, so getting it later recomputes).
    """
    settings: LyricsSettings = inputs["settings"]
    if settings.mode == "off":
        return "lyrics=off"
    song_path = inputs.get("song_path") or ""
    found = lyrics_file_beside(song_path) if song_path else None
    parts = [f"file={found.suffix.lower()}:{sha256_file(found)}" if found else "file=none"]
    if found is None or found.suffix.lower() != ".lrc":
        from soundsight.models.lyrics.whisper import PACKAGED_MODEL, whisper_backend_id

        parts.append(f"vocals={DETECTOR_VERSION}")
        if settings.silero_vad:
            from soundsight.models.lyrics.silero import SILERO_VERSION

            parts.append(f"speech={SILERO_VERSION}")
        try:
            parts.append(whisper_backend_id(settings.model))
        except MissingCheckpointError:
            parts.append(f"whisper:{settings.model or PACKAGED_MODEL}=missing")
    return "|".join(parts)


def clap_vocal_segments(analysis: Manifest | None) -> list[int]:
    """Segments whose prominent element is Vocals, by a backend that hears vocals ([] for another one or none).

    ``AnalyserBackend.hears_vocals``: CLAP's label is heard; the feature backend's is a guess.
    """
    if analysis is None:
        return []
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text())
    if not registry.load("analyser", labels.backend).hears_vocals:
        return []
    return [
        s.index
        for s in labels.segments
        if "prominent_element" in s.labels and s.labels["prominent_element"].label == "Vocals"
    ]


def read_lyrics(manifest: Manifest) -> Lyrics:
    """The `Lyrics` a lyrics stage wrote (its ``lyrics.json``)."""
    return Lyrics.model_validate_json(manifest.path("lyrics").read_text())


@task(**stage_options("lyrics", 1, identity=lyrics_identity))
def find_song_lyrics(
    song: Manifest,
    segments: Manifest | None,
    settings: LyricsSettings,
    song_path: str = "",
    analysis: Manifest | None = None,
) -> Manifest:
    """The song's lyrics: lines, words and per-segment text, timed in seconds.

    Parameters
    ----------
    song, segments : Manifest
        The load and segment stages' results (`segments` None: no per-segment text).
    settings : LyricsSettings
    song_path : str
        Where the song is now; a ``<stem>.lrc`` / ``<stem>.txt`` beside it is used (and copied into
        the stage folder). A location: never part of the key.
    analysis : Manifest, optional
        The analysis stage's result: with CLAP labels, segments whose prominent element is Vocals
        also count as vocal.

    Returns
    -------
    Manifest
        Files ``lyrics`` (lyrics.json), ``lrc``, ``srt``, ``ass`` (and ``given``, the user's file);
        info ``source``, ``lines``, ``words``, ``vocal_fraction``, ``seconds``.
    """
    started = time.perf_counter()
    meta, pcm = read_song(song)
    segs = Segmentation.model_validate_json(segments.path("segments").read_text()).segments if segments else []
    given = lyrics_file_beside(song_path) if song_path and settings.mode != "off" else None
    lyrics = find_lyrics(
        pcm,
        meta.sample_rate,
        segs,
        settings,
        lyrics_file=given,
        clap_vocal_segments=clap_vocal_segments(analysis) if settings.clap_vocals else [],
    )
    folder = stage_folder(song.run_dir, "lyrics")
    files = {"lyrics": folder / "lyrics.json", "lrc": folder / "lyrics.lrc"}
    write_json_atomic(files["lyrics"], lyrics)
    lines = [line.model_dump() for line in lyrics.lines]
    write_text_atomic(files["lrc"], write_lrc(lines, lyrics.metadata, words=True))
    for fmt in ("srt", "ass"):
        files[fmt] = write_captions(lyrics, folder / f"lyrics.{fmt}")
    if given is not None:
        files["given"] = folder / f"given{given.suffix.lower()}"
        with atomic_path(files["given"]) as tmp:
            shutil.copyfile(given, tmp)
    return written(
        "lyrics",
        song.run_dir,
        files,
        links={"lyrics": "lyrics.json", "lrc": "lyrics.lrc", "srt": "lyrics.srt", "ass": "lyrics.ass"},
        source=lyrics.source,
        lines=len(lyrics.lines),
        words=len(lyrics.words),
        vocal_fraction=lyrics.vocals.active_fraction if lyrics.vocals else 0.0,
        seconds=round(time.perf_counter() - started, 2),
    )
