"""Songs with words: vocal check, Whisper transcription, lyrics files, captions. No Prefect here.

- `vocals`: a weight-free vocal-activity detector (the gate that keeps Whisper off instrumentals);
- `whisper`: Whisper checkpoints found offline (the packaged tiny.en by default), run by faster-whisper
  once loaded per process, transcribing vocal regions;
- `formats`: LRC (with enhanced word tags) and plain-text lyrics;
- `align`: ASR cleanup, given lyrics aligned to a transcription or spread over vocal regions,
  words assigned to segments;
- `song`: the stage's work, `find_lyrics`;
- `captions`: SRT and ASS (karaoke) captions timed to the words;
- `summary`: what other stages take (per-segment words and themes for the script, line starts).

`whisper` imports faster-whisper only when a model is loaded (and transformers only to convert one).
"""

from soundsight.models.lyrics.captions import Cue, caption_cues, captions, write_captions
from soundsight.models.lyrics.formats import close_lines, format_time, parse_lrc, parse_txt, write_lrc
from soundsight.models.lyrics.song import find_lyrics, lyrics_file_beside
from soundsight.models.lyrics.summary import line_starts, script_inputs, sung_per_segment, themes
from soundsight.models.lyrics.vocals import VocalActivity, segments_with_vocals, track_has_vocals, vocal_activity
from soundsight.models.lyrics.whisper import (
    PACKAGED_MODEL,
    load_whisper,
    resolve_whisper_checkpoint,
    transcribe,
    whisper_available,
    whisper_backend_id,
)

__all__ = [
    "PACKAGED_MODEL",
    "Cue",
    "VocalActivity",
    "caption_cues",
    "captions",
    "close_lines",
    "find_lyrics",
    "format_time",
    "line_starts",
    "load_whisper",
    "lyrics_file_beside",
    "parse_lrc",
    "parse_txt",
    "resolve_whisper_checkpoint",
    "script_inputs",
    "segments_with_vocals",
    "sung_per_segment",
    "themes",
    "track_has_vocals",
    "transcribe",
    "vocal_activity",
    "whisper_available",
    "whisper_backend_id",
    "write_captions",
    "write_lrc",
]
