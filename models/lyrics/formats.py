"""Lyrics files: LRC (timed lines, enhanced word tags) and plain text. Pure functions, no I/O.

A *line* here is a dict ``{"text", "start", "end", "words": [{"text", "start", "end", ...}]}`` with
times in seconds; `start`/`end` may be None only in freshly parsed LRC (see `close_lines`). The
stage turns closed lines into `soundsight.schemas.LyricLine`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["LrcDoc", "close_lines", "format_time", "parse_lrc", "parse_txt", "write_lrc"]

_TIME = r"(\d+):(\d{1,2})(?:[.:](\d{1,3}))?"
_LINE_TAG = re.compile(r"\[" + _TIME + r"\]")
_WORD_TAG = re.compile(r"<" + _TIME + r">")
_META_TAG = re.compile(r"^\[([A-Za-z#][A-Za-z0-9_ #-]*):(.*)\]\s*$")
_SECTION = re.compile(r"^\s*[\[(][^\])]*[\])]\s*$")  # [Chorus], (Verse 2)


def _seconds(m: re.Match) -> float:
    minutes, seconds, frac = m.group(1), m.group(2), m.group(3)
    value = int(minutes) * 60 + int(seconds)
    if frac:
        value += int(frac) / (10 ** len(frac))  # .5 = 0.5 s, .05 = 0.05 s, .005 = 0.005 s
    return value


def format_time(t: float) -> str:
    """An LRC time tag's body.

    Parameters
    ----------
    t : float
        Seconds (negative counts as 0).

    Returns
    -------
    str
        ``mm:ss.xx``, rounded to centiseconds; minutes may exceed 59 (``102:03.45``).
    """
    cs = max(0, int(round(t * 100)))
    return f"{cs // 6000:02d}:{(cs // 100) % 60:02d}.{cs % 100:02d}"


@dataclass
class LrcDoc:
    """A parsed LRC file.

    Attributes
    ----------
    lines : list of dict
        Sorted by start (seconds); text may be "" (a timed pause); `end` None until `close_lines`.
    metadata : dict
        Tags such as ``ti``, ``ar``, ``al``, ``by``, ``length``, in file order (``offset`` excluded).
    offset_ms : int
        The ``[offset:]`` found, milliseconds; already applied to every time in `lines`.
    """

    lines: list[dict] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    offset_ms: int = 0


def _text_lines(text: str) -> list[str]:
    """A lyrics file's lines: a leading BOM dropped, CRLF and CR line ends read as LF."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse_words(body: str, shift: float) -> tuple[str, list[dict]]:
    """A line body with ``<mm:ss.xx>`` tags -> plain text and timed pieces.

    A piece is a word, or a syllable when tags sit inside a word (then it gets ``"sep": ""``: no
    space before the next piece). A tag closes the piece before it.
    """
    tags = list(_WORD_TAG.finditer(body))
    if not tags:
        return re.sub(r"\s+", " ", body).strip(), []
    words: list[dict] = []
    for i, m in enumerate(tags):
        nxt = tags[i + 1] if i + 1 < len(tags) else None
        piece = body[m.end() : nxt.start() if nxt else len(body)]
        t = round(max(0.0, _seconds(m) - shift), 3)
        if words and words[-1]["end"] is None:
            words[-1]["end"] = t
        if piece.strip():
            words.append({"text": piece.strip(), "start": t, "end": None})
            if nxt is not None and not piece[-1].isspace():
                words[-1]["sep"] = ""
    text = re.sub(r"\s+", " ", _WORD_TAG.sub("", body)).strip()
    return text, words


def parse_lrc(text: str) -> LrcDoc:
    """Parse LRC text.

    ``[t1][t2]text`` gives one line per tag; ``[offset:+ms]`` applies to the whole file wherever it
    stands (positive: lyrics earlier, ``t = tag - offset``, clamped at 0); enhanced ``<t>word`` tags
    give word times, each word ending at the next tag (a trailing tag closes the last word).
    Tags ``[m:ss]``, ``[mm:ss.x]``, ``[mm:ss.xx]``, ``[mm:ss.xxx]`` and ``[mm:ss:xx]`` are read; a BOM,
    CRLF line ends and untimed text lines are tolerated (the latter ignored).

    Parameters
    ----------
    text : str
        The file's text.

    Returns
    -------
    LrcDoc
        Times in seconds.
    """
    doc = LrcDoc()
    raw_lines = _text_lines(text)
    for raw in raw_lines:  # the offset first: it applies to the whole file wherever it is
        m = _META_TAG.match(raw.strip())
        if m and m.group(1).strip().lower() == "offset":
            try:
                doc.offset_ms = int(m.group(2).strip().replace("+", ""))
            except ValueError:
                doc.offset_ms = 0
    shift = doc.offset_ms / 1000.0
    entries = []
    for order, raw in enumerate(raw_lines):
        line = raw.strip()
        if not line:
            continue
        tags, pos = [], 0
        while m := _LINE_TAG.match(line, pos):
            tags.append(m)
            pos = m.end()
        if not tags:
            m = _META_TAG.match(line)
            if m and m.group(1).strip().lower() != "offset":
                doc.metadata[m.group(1).strip()] = m.group(2).strip()
            continue
        body_text, words = _parse_words(line[pos:], shift)
        for m in tags:
            t = max(0.0, _seconds(m) - shift)
            entries.append(
                (t, order, {"text": body_text, "start": round(t, 3), "end": None, "words": [dict(w) for w in words]})
            )
    entries.sort(key=lambda e: (e[0], e[1]))
    doc.lines = [e[2] for e in entries]
    return doc


def close_lines(lines: list[dict], duration: float | None = None, last_line_s: float = 5.0) -> list[dict]:
    """Give every line and word an end, and drop the empty lines (timed pauses).

    A line ends at its closing word tag, else at the next line's start; the last line without either
    at ``start + last_line_s`` (capped at `duration`). An open word ends at the next word's start or
    the line's end.

    Parameters
    ----------
    lines : list of dict
        `LrcDoc.lines`.
    duration : float, optional
        The song's length, seconds.
    last_line_s : float
        Length given to a last line nothing closes, seconds.

    Returns
    -------
    list of dict
        New dicts, times in seconds, ``end >= start``.
    """
    out = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1]["start"] if i + 1 < len(lines) else None
        end = line.get("end")
        words = [dict(w) for w in line.get("words", [])]
        if end is None and words and words[-1].get("end") is not None:
            end = words[-1]["end"]  # enhanced LRC: the closing tag ends the line
        if end is None:
            if nxt is not None:
                end = nxt
            else:
                end = line["start"] + last_line_s
                if duration is not None:
                    end = min(end, duration)
        end = max(end, line["start"])
        for j, w in enumerate(words):
            if w.get("end") is None:
                w["end"] = words[j + 1]["start"] if j + 1 < len(words) else end
        if line["text"].strip():
            out.append({"text": line["text"], "start": line["start"], "end": round(end, 3), "words": words})
    return out


def write_lrc(lines: list[dict], metadata: dict[str, str] | None = None, *, words: bool = False) -> str:
    """LRC text of closed lines.

    Metadata tags first (in the given order), then one ``[mm:ss.xx]text`` per line. With
    ``words=True`` and word times present, enhanced tags: ``[t]<t1>w1 <t2>w2 <end>`` (the closing tag
    is the last word's end). A line ending before the next one starts is followed by an empty timed
    line, so the pause survives a round trip through `parse_lrc` and `close_lines`.

    Parameters
    ----------
    lines : list of dict
        Closed lines, times in seconds.
    metadata : dict, optional
        Tags to write first.
    words : bool
        Write enhanced word tags.

    Returns
    -------
    str
        Ends with a newline.
    """
    out = [f"[{k}:{v}]" for k, v in (metadata or {}).items()]
    for i, line in enumerate(lines):
        body = line["text"]
        timed_words = words and line.get("words") and all(w.get("start") is not None for w in line["words"])
        if timed_words:
            body = ""
            for j, w in enumerate(line["words"]):
                body += f"<{format_time(w['start'])}>{w['text']}"
                if j + 1 < len(line["words"]):
                    body += w.get("sep", " ")
            if line["words"][-1].get("end") is not None:
                body += f" <{format_time(line['words'][-1]['end'])}>"
        out.append(f"[{format_time(line['start'])}]{body}")
        nxt = lines[i + 1]["start"] if i + 1 < len(lines) else None
        end = line.get("end")
        closed_by_word_tag = timed_words and line["words"][-1].get("end") is not None
        if (
            end is not None
            and line["text"]
            and not closed_by_word_tag
            and (nxt is None or format_time(end) != format_time(nxt))
        ):
            out.append(f"[{format_time(end)}]")
    return "\n".join(out) + "\n"


def parse_txt(text: str) -> list[str]:
    """Untimed lyrics: one line per non-empty line.

    Section headers on a line of their own (``[Chorus]``, ``(Verse 2)``) are dropped and runs of
    white space collapsed.

    Parameters
    ----------
    text : str
        The text of a plain lyrics file (``.txt``).

    Returns
    -------
    list of str
    """
    lines = []
    for raw in _text_lines(text):
        s = re.sub(r"\s+", " ", raw).strip()
        if s and not _SECTION.match(s):
            lines.append(s)
    return lines
