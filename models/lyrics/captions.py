"""Sung-line captions: SRT (a soft subtitle track) and ASS (karaoke, or burned in), timed to the words.

Pure functions over `soundsight.schemas.Lyrics`; no I/O except `write_captions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from soundsight.media import write_text_atomic
from soundsight.schemas import LyricLine, Lyrics, LyricWord

__all__ = ["CAPTION_LIFT", "Cue", "caption_cues", "captions", "write_captions"]

CaptionFormat = Literal["srt", "ass"]


@dataclass(frozen=True)
class Cue:
    """One caption on screen.

    Attributes
    ----------
    start, end : float
        Seconds.
    words : tuple of LyricWord
        Its words (a line without word times: one pseudo-word spanning the line).
    timed : bool
        Whether the words carry their own times (else karaoke has nothing to follow).
    """

    start: float
    end: float
    words: tuple[LyricWord, ...]
    timed: bool = True

    @property
    def text(self) -> str:
        """The words joined (syllables of one word without a space)."""
        parts = []
        for i, w in enumerate(self.words):
            parts.append(w.text)
            if i + 1 < len(self.words):
                parts.append(w.sep)
        return "".join(parts)


def _pieces(line: LyricLine, max_chars: int) -> list[list[LyricWord]]:
    words = line.words or [LyricWord(text=line.text, start=line.start, end=line.end, how="given", sep="")]
    out: list[list[LyricWord]] = [[]]
    length = 0
    for w in words:
        extra = len(w.text) + (1 if out[-1] else 0)
        if out[-1] and length + extra > max_chars and out[-1][-1].sep:
            out.append([])
            length, extra = 0, len(w.text)
        out[-1].append(w)
        length += extra
    return out


def caption_cues(lyrics: Lyrics, *, max_chars: int = 42, min_seconds: float = 0.5) -> list[Cue]:
    """The captions of a song: one per sung line, long lines split at word boundaries.

    A cue lasts from its first word's start to its last word's end, at least `min_seconds` when
    there is room before the next cue; cues never overlap.

    Parameters
    ----------
    lyrics : Lyrics
    max_chars : int
        Longest cue, characters (42 is the usual subtitle line).
    min_seconds : float
        Shortest cue, seconds.

    Returns
    -------
    list of Cue
        In time order.
    """
    raw = [(p, bool(line.words)) for line in lyrics.lines for p in _pieces(line, max_chars) if p]
    raw.sort(key=lambda item: item[0][0].start)
    cues: list[Cue] = []
    for i, (ws, timed) in enumerate(raw):
        start = ws[0].start
        end = max(ws[-1].end, start)
        nxt = raw[i + 1][0][0].start if i + 1 < len(raw) else lyrics.duration or end + min_seconds
        end = min(max(end, start + min_seconds), max(nxt, end))
        if cues and start < cues[-1].end:
            cues[-1] = Cue(cues[-1].start, max(cues[-1].start, start), cues[-1].words, cues[-1].timed)
        cues.append(Cue(round(start, 3), round(end, 3), tuple(ws), timed))
    return cues


def _srt_time(t: float) -> str:
    ms = max(0, int(round(t * 1000)))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _ass_time(t: float) -> str:
    cs = max(0, int(round(t * 100)))
    return f"{cs // 360_000:d}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def _ass_text(text: str) -> str:
    """Text safe inside an ASS event: braces start override blocks and backslashes start codes."""
    return text.replace("\\", "\u29f5").replace("{", "(").replace("}", ")").replace("\n", " ")


def _ass_karaoke(cue: Cue) -> str:
    r"""``{\kf<cs>}word`` per word: each word's fill lasts until the next word starts."""
    out, t = [], cue.start
    for i, w in enumerate(cue.words):
        if w.start > t + 0.005:
            out.append(f"{{\\k{round((w.start - t) * 100)}}}")  # a pause before the word, unfilled
            t = w.start
        until = cue.words[i + 1].start if i + 1 < len(cue.words) else cue.end
        out.append(f"{{\\kf{max(0, round((until - t) * 100))}}}{_ass_text(w.text)}")
        if i + 1 < len(cue.words):
            out.append(w.sep)
        t = max(t, until)
    return "".join(out)


CAPTION_LIFT = 0.2  # of the frame height: the lowest a sung line's bottom edge sits above the picture's


def captions(
    lyrics: Lyrics,
    fmt: CaptionFormat = "srt",
    *,
    width: int = 1280,
    height: int = 720,
    max_chars: int = 42,
    karaoke: bool = True,
    font: str = "DejaVu Sans",
) -> str:
    r"""Caption file text for the sung lines.

    Parameters
    ----------
    lyrics : Lyrics
    fmt : {"srt", "ass"}
        SRT: plain cues (a soft subtitle track: ``ffmpeg -i video.mp4 -i lyrics.srt -c copy -c:s
        mov_text``). ASS: styled cues, bottom centre (`CAPTION_LIFT` above the edge), with ``\kf``
        karaoke fills timed to the words when `karaoke` (burn in with ffmpeg's ``subtitles=``
        filter, which needs libass).
    width, height : int
        ASS ``PlayRes``: the video's size, pixels (players scale it to the actual size).
    max_chars : int
        Longest cue, characters.
    karaoke : bool
        ASS only: fill each word as it is sung.
    font : str
        ASS only: font family.

    Returns
    -------
    str
        Empty cue list -> a valid file with no events.
    """
    cues = caption_cues(lyrics, max_chars=max_chars)
    if fmt == "srt":
        blocks = [f"{i}\n{_srt_time(c.start)} --> {_srt_time(c.end)}\n{c.text}\n" for i, c in enumerate(cues, 1)]
        return "\n".join(blocks)
    if fmt != "ass":
        raise ValueError(f"caption format must be srt or ass, not {fmt!r}")
    size = max(8, round(height * 0.06))
    margin = max(4, round(height * 0.06))
    # The line sits a fifth of the height above the bottom edge, clear of a renderer's own caption
    # band (the animatic's scene sentence fills the bottom 17 %) and of a player's controls.
    lift = max(margin, round(height * CAPTION_LIFT))
    head = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
        "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
        "MarginL, MarginR, MarginV, Encoding",
        # karaoke: sung words turn from SecondaryColour (white) to PrimaryColour (gold)
        f"Style: Lyrics,{font},{size},&H0000D7FF,&H00FFFFFF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,"
        f"{max(1, round(size / 14))},1,2,{margin},{margin},{lift},1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = [
        f"Dialogue: 0,{_ass_time(c.start)},{_ass_time(c.end)},Lyrics,,0,0,0,,"
        + (_ass_karaoke(c) if karaoke and c.timed else _ass_text(c.text))
        for c in cues
    ]
    return "\n".join(head + events) + "\n"


def write_captions(lyrics: Lyrics, path: str | Path, **options) -> Path:
    """Write `captions` to `path` atomically, in the format its suffix names (``.srt`` or ``.ass``).

    Parameters
    ----------
    lyrics : Lyrics
    path : str or pathlib.Path
    **options
        As for `captions` (``width``, ``height``, ``max_chars``, ``karaoke``, ``font``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("srt", "ass"):
        raise ValueError(f"{path}: caption files end in .srt or .ass")
    return write_text_atomic(path, captions(lyrics, fmt, **options))  # type: ignore[arg-type]
