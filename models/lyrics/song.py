"""A song's lyrics, from a file beside it or from the audio: the lyrics stage's work. No Prefect here.

Order of decisions (`find_lyrics`):

1. ``lyrics.mode=off``: nothing.
2. ``<stem>.lrc`` beside the song: its lines and words, as given. No vocal check, no model.
3. The vocal check (weight-free; plus Silero VAD's speech windows and CLAP's Vocals label, which
   can only add vocal windows and segments). No vocals and no
   ``<stem>.txt``: no lyrics, and Whisper is never loaded.
4. Whisper transcribes the vocal segments (the whole song with ``mode=always``). With a ``.txt``,
   its lines are aligned to the transcription; without a Whisper on this machine (or when too few
   words match), they are spread over the vocal regions instead.
5. Every word goes to the segment holding its midpoint.

A missing checkpoint is not an error: the song still gets a video, without lyrics, and a warning
names the download command.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from soundsight.errors import MissingCheckpointError
from soundsight.models.lyrics.align import (
    align_lines_to_words,
    assign_to_segments,
    lines_from_words,
    spread_lines_over_regions,
)
from soundsight.models.lyrics.formats import close_lines, parse_lrc, parse_txt
from soundsight.models.lyrics.vocals import DETECTOR_VERSION, segments_with_vocals, track_has_vocals, vocal_activity
from soundsight.schemas import Lyrics, LyricSegment, Segment, VocalCheck
from soundsight.settings import LyricsSettings

__all__ = ["LYRICS_SUFFIXES", "MIN_MATCHED", "find_lyrics", "lyrics_file_beside"]

log = logging.getLogger("soundsight.lyrics")

LYRICS_SUFFIXES = (".lrc", ".txt")  # preferred in this order
MIN_MATCHED = 0.3  # a .txt whose words the transcription matches less than this is spread instead


def lyrics_file_beside(song_path: str | Path) -> Path | None:
    """The lyrics file beside a song: ``<stem>.lrc``, else ``<stem>.txt`` (suffix case ignored).

    Parameters
    ----------
    song_path : str or pathlib.Path

    Returns
    -------
    pathlib.Path or None
    """
    song = Path(song_path).expanduser()
    if not song.parent.is_dir():
        return None
    by_suffix = {
        p.suffix.lower(): p
        for p in sorted(song.parent.iterdir())
        if p.stem == song.stem and p.suffix.lower() in LYRICS_SUFFIXES and p.is_file() and p != song
    }
    return next((by_suffix[s] for s in LYRICS_SUFFIXES if s in by_suffix), None)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # old LRC files: every byte decodes, nothing is lost


def _clamp(lines: list[dict], duration: float) -> tuple[list[dict], int]:
    """Lines inside the song: those starting at or after its end dropped, the rest clamped."""
    kept = []
    for line in lines:
        if line["start"] >= duration:
            continue
        words = []
        for w in line.get("words", []):
            if w["start"] >= duration:
                continue
            words.append({**w, "end": min(max(w["end"], w["start"]), duration)})
        kept.append({**line, "end": min(line["end"], duration), "words": words})
    return kept, len(lines) - len(kept)


def _merge(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in spans:
        if out and a <= out[-1][1] + 1e-6:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(round(a, 3), round(b, 3)) for a, b in out]


def _finish(
    source: str,
    lines: list[dict],
    segments: Sequence[Segment],
    duration: float,
    *,
    vocal_segments: Sequence[bool] = (),
    **fields,
) -> Lyrics:
    lines = [line for line in lines if line["text"].strip()]
    assigned = assign_to_segments(lines, [(s.start, s.end) for s in segments])
    return Lyrics(
        source=source if lines else "none",
        duration=round(duration, 3),
        lines=lines,
        segments=[
            LyricSegment(
                index=s["index"],
                start=s["start"],
                end=s["end"],
                vocals=bool(vocal_segments[i]) if i < len(vocal_segments) else bool(s["words"]),
                text=s["text"],
                lines=s["lines"],
            )
            for i, s in enumerate(assigned)
        ],
        **fields,
    )


def find_lyrics(
    y: np.ndarray,
    sr: int,
    segments: Sequence[Segment],
    settings: LyricsSettings,
    *,
    lyrics_file: str | Path | None = None,
    clap_vocal_segments: Sequence[int] = (),
) -> Lyrics:
    """The song's lyrics: lines, words, start/end seconds and what each segment sings.

    Parameters
    ----------
    y : numpy.ndarray
        The song, mono float32.
    sr : int
        Its sample rate, Hz.
    segments : sequence of Segment
        The song's segments (seconds); may be empty (then no per-segment text).
    settings : LyricsSettings
    lyrics_file : str or pathlib.Path, optional
        A ``.lrc`` (used as given) or ``.txt`` (aligned or spread); see `lyrics_file_beside`.
    clap_vocal_segments : sequence of int
        Indices of segments whose CLAP prominent element is Vocals (used when
        ``settings.clap_vocals``).

    Returns
    -------
    Lyrics
        ``source="none"`` with a `note` when there are none (off, instrumental, no checkpoint, ...).
    """
    duration = len(y) / sr
    path = Path(lyrics_file) if lyrics_file else None
    if settings.mode == "off":
        return _finish("none", [], segments, duration, note="lyrics.mode is off")
    if path is not None and path.suffix.lower() == ".lrc":
        doc = parse_lrc(_read_text(path))
        lines, dropped = _clamp(close_lines(doc.lines, duration), duration)
        for line in lines:
            for w in line["words"]:
                w["how"] = "given"
        note = f"{path.name}: {dropped} line(s) after the song's end left out" if dropped else ""
        if not lines:
            note = f"{path.name} has no timed lines" + (
                f" inside the song ({dropped} after its end)" if dropped else ""
            )
        return _finish("lrc", lines, segments, duration, note=note, metadata=doc.metadata)

    given = parse_txt(_read_text(path)) if path is not None else None
    va = vocal_activity(y, sr, threshold=settings.vocal_threshold)
    detector, speech = DETECTOR_VERSION, 0
    if settings.silero_vad:  # a second cue: it can only add vocal windows
        from soundsight.models.lyrics.silero import SILERO_VERSION, speech_windows

        added = speech_windows(y, sr, len(va.active), va.window_s) & ~va.active
        va = replace(va, active=va.active | added)
        detector, speech = f"{DETECTOR_VERSION}+{SILERO_VERSION}", int(added.sum())
    spans = [(s.start, s.end) for s in segments]
    per_segment = segments_with_vocals(va, spans, min_fraction=settings.segment_min_fraction)
    clap = sorted({i for i in clap_vocal_segments if 0 <= i < len(spans)}) if settings.clap_vocals else []
    vocal = [d["vocals"] or d["index"] in clap for d in per_segment]
    clap_share = len(clap) / len(spans) if spans else 0.0
    gate = track_has_vocals(va, settings.track_min_fraction) or (
        bool(clap) and clap_share >= settings.track_min_fraction
    )
    check = VocalCheck(
        detector=detector,
        threshold=settings.vocal_threshold,
        window_seconds=va.window_s,
        active_fraction=round(va.active_fraction, 3),
        track_min_fraction=settings.track_min_fraction,
        track_gate=gate,
        regions=va.regions(),
        clap_vocal_segments=clap,
        speech_windows=speech,
    )
    common = {"vocal_segments": vocal, "vocals": check}
    if given is not None and not given:
        return _finish("none", [], segments, duration, note=f"{path.name} has no lines", **common)
    if not gate and given is None and settings.mode == "auto":
        note = (
            f"no vocals found: {va.active_fraction:.0%} of the song sounds like a voice "
            f"(the vocal check needs {settings.track_min_fraction:.0%}); lyrics.mode=always transcribes anyway"
        )
        return _finish("none", [], segments, duration, note=note, **common)

    if settings.mode == "always" or not spans:
        regions = [(0.0, duration)] if settings.mode == "always" else va.regions() or [(0.0, duration)]
    else:
        regions = _merge([span for span, v in zip(spans, vocal) if v]) or va.regions() or [(0.0, duration)]
    spread_over = va.regions() or _merge([span for span, v in zip(spans, vocal) if v])

    from soundsight.models.lyrics.whisper import load_whisper, transcribe

    try:
        loaded = load_whisper(settings.model, settings.device, settings.compute_type)
    except MissingCheckpointError as err:
        log.warning("lyrics: %s; this song gets no transcribed lyrics", err)
        hint = f"no Whisper to transcribe with: {err}"
        if given is not None:
            lines = spread_lines_over_regions(given, spread_over, duration)
            return _finish(
                "txt-spread",
                lines,
                segments,
                duration,
                note=f"{hint}; {path.name} spread over the vocal regions",
                **common,
            )
        return _finish("none", [], segments, duration, note=hint, **common)

    words, language, note = transcribe(
        loaded,
        y,
        sr,
        regions,
        language=settings.language,
        num_beams=settings.num_beams,
        max_new_tokens=settings.max_new_tokens,
    )
    fields = {**common, "language": language, "model": f"{loaded.checkpoint.name}@{loaded.checkpoint.revision}"}
    if given is None:
        if not words:
            return _finish("none", [], segments, duration, note="Whisper heard no words", **fields)
        lines = lines_from_words([{**w, "how": "transcribed"} for w in words])
        return _finish("transcription", lines, segments, duration, note=note, **fields)
    aligned = align_lines_to_words(given, words, duration=duration)
    n_words = sum(len(line["words"]) for line in aligned)
    matched = sum(line["matched"] * len(line["words"]) for line in aligned) / max(1, n_words)
    if matched < MIN_MATCHED:
        lines = spread_lines_over_regions(given, spread_over, duration)
        why = f"only {matched:.0%} of {path.name}'s words matched the transcription: spread over the vocal regions"
        return _finish("txt-spread", lines, segments, duration, note="; ".join(filter(None, [note, why])), **fields)
    return _finish("txt-aligned", aligned, segments, duration, note=note, **fields)
