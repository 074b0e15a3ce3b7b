"""Stage 1: decode the song, fingerprint it, read its tags -> song.json (+ audio.wav)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import task
from scipy.io import wavfile

from soundsight.cache import file_identity
from soundsight.errors import InputError
from soundsight.media import ANALYSIS_SAMPLE_RATE, atomic_path, write_json_atomic
from soundsight.schemas import Manifest, Song
from soundsight.tasks.common import stage_folder, stage_options, written

SILENCE_DBFS = -60.0  # a song whose loudest 100 ms stays below this is treated as silent


def slugify(text: str) -> str:
    """A file-name-safe slug of `text`, at most 48 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:48] or "song"


def read_tags(path: Path) -> tuple[str, str, str, int]:
    """(title, artist, codec, channels) from the file's tags; empty strings when absent."""
    try:
        import mutagen

        f = mutagen.File(path, easy=True)
    except Exception:
        f = None
    if f is None:
        return "", "", "", 0
    tags = f.tags or {}
    first = lambda k: (tags.get(k) or [""])[0] if hasattr(tags, "get") else ""  # noqa: E731
    codec = type(f).__name__.lower()
    channels = int(getattr(f.info, "channels", 0) or 0)
    return str(first("title")), str(first("artist")), codec, channels


def check_audible(path: Path, pcm: np.ndarray, sr: int, min_seconds: float) -> None:
    """Raise `InputError` for a song shorter than `min_seconds` or silent."""
    duration = len(pcm) / sr
    if duration < min_seconds:
        raise InputError(path, f"song is {duration:.2f} s long, shorter than one segment ({min_seconds:g} s)")
    window = int(0.1 * sr)
    frames = pcm[: len(pcm) // window * window].reshape(-1, window)
    loudest = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)).max() + 1e-12)
    if loudest < SILENCE_DBFS:
        raise InputError(path, f"song is silent (loudest 100 ms at {loudest:.0f} dBFS)")


TAG_CHARS = 200  # longest title or artist kept from a file's tags (they can hold anything)


def clean_tag(text: str) -> str:
    """A tag as one plain line of at most `TAG_CHARS` characters (no control characters)."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= TAG_CHARS else text[: TAG_CHARS - 1].rstrip() + "…"


def load_identity(inputs: dict[str, Any]) -> str:
    """The song file's bytes and the run folder's name: what the load stage's key depends on."""
    return f"{file_identity(inputs['song_path'])}|run_name={inputs.get('run_name', '')}"


@task(**stage_options("load", 2, identity=load_identity))
def load_song(song_path: str, runs_dir: str, run_name: str = "", min_seconds: float = 4.0) -> Manifest:
    """Decode `song_path` (any format ffmpeg reads) and create the run folder.

    The run folder is ``runs_dir/<slug>-<hash8>`` where hash8 starts the sha256 of the decoded
    PCM (mono float32, 22 050 Hz): the same music in another container or path maps to the same
    fingerprint. Writes `song.json`, `audio.wav` (the analysis audio, float32) and a copy of the
    song file, so nothing later reads the user's path again (a song may move or vanish). Every file is
    byte-for-byte the same whenever the same song is loaded, so no later stage's key changes.
    """
    from soundsight.models.audio.decode import check_not_truncated, decode_audio

    path = Path(song_path).expanduser()
    pcm = decode_audio(path, ANALYSIS_SAMPLE_RATE)
    check_not_truncated(path, len(pcm) / ANALYSIS_SAMPLE_RATE)
    check_audible(path, pcm, ANALYSIS_SAMPLE_RATE, min_seconds)
    content_hash = hashlib.sha256(pcm.tobytes()).hexdigest()
    title, artist, codec, channels = (clean_tag(t) if isinstance(t, str) else t for t in read_tags(path))
    slug = slugify(title or path.stem)
    run_dir = Path(runs_dir).expanduser().resolve() / (run_name or f"{slug}-{content_hash[:8]}")
    folder = stage_folder(run_dir, "load")

    song = Song(
        content_hash=content_hash,
        duration=len(pcm) / ANALYSIS_SAMPLE_RATE,
        sample_rate=ANALYSIS_SAMPLE_RATE,
        channels_in_source=channels,
        codec=codec,
        title=title,
        artist=artist,
        slug=slug,
    )
    write_json_atomic(folder / "song.json", song)
    with atomic_path(folder / "audio.wav") as tmp:
        # scipy's writer, not libsndfile's: libsndfile adds a PEAK chunk stamped with the time of
        # writing, so the same samples written twice would hash differently and every later stage's
        # key with them.
        wavfile.write(tmp, ANALYSIS_SAMPLE_RATE, pcm)
    source = folder / f"source{path.suffix.lower()}"
    with atomic_path(source) as tmp:
        shutil.copyfile(path, tmp)
    return written(
        "load",
        run_dir,
        {"song": folder / "song.json", "audio": folder / "audio.wav", "source": source},
        links={"song": "song.json", "audio": "audio.wav"},
        duration=song.duration,
        title=title or path.stem,
        source=str(path.resolve()),  # where it was read from: informational, never part of a key
    )


def read_song(manifest: Manifest) -> tuple[Song, np.ndarray]:
    """The song's metadata and its analysis audio (mono float32 at 22 050 Hz)."""
    song = Song.model_validate_json(manifest.path("song").read_text())
    pcm, _ = sf.read(manifest.path("audio"), dtype="float32")
    return song, pcm
