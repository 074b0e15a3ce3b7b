"""Timing words: ASR cleanup, lines from words, given lyrics aligned or spread, words into segments.

Pure functions, no I/O, no models. Lines and words are dicts as in `soundsight.models.lyrics.formats`
(``{"text", "start", "end", "words": [...]}``), times in seconds.
"""

from __future__ import annotations

import bisect
import difflib
import re
import unicodedata
from collections.abc import Callable, Sequence

__all__ = [
    "SECONDS_PER_SYLLABLE",
    "align_lines_to_words",
    "assign_to_segments",
    "clean_asr_words",
    "lines_from_words",
    "normalise",
    "spread_lines_over_regions",
    "spread_words",
    "syllables",
]

SECONDS_PER_SYLLABLE = 0.2  # length given to an interpolated word per syllable when it has room


def normalise(word: str) -> str:
    """A word as compared in alignment: lower case, no diacritics, letters and digits only.

    Parameters
    ----------
    word : str
        As written in the lyrics or as transcribed.

    Returns
    -------
    str
        ``"Don't!"`` -> ``"dont"``; "" for punctuation.
    """
    w = unicodedata.normalize("NFKD", word.lower())
    w = "".join(c for c in w if not unicodedata.combining(c))
    return re.sub(r"[^\w]|_", "", w)


def syllables(word: str) -> int:
    """A rough syllable count (vowel groups, a silent final e).

    Parameters
    ----------
    word : str
        Any word; it is counted as `normalise` returns it.

    Returns
    -------
    int
        At least 1 for any word with a letter or digit, 0 otherwise.
    """
    w = normalise(word)
    if not w:
        return 0
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and n > 1 and not w.endswith(("le", "ee", "ye")):
        n -= 1
    return max(1, n)


def _split(line: str) -> list[str]:
    return line.split()


def clean_asr_words(
    chunks: list[dict], duration: float, *, max_repeat: int = 8, default_word_s: float = 0.5
) -> list[dict]:
    """Words of ``pipeline(..., return_timestamps="word")["chunks"]`` made safe to use.

    - text stripped; empty, punctuation-only and U+FFFD (broken byte-level token) words dropped;
    - a None start -> the previous end; a None end -> the next start, or start + `default_word_s`;
    - times clamped into [0, duration], end >= start;
    - decoded order kept: at chunk seams the pipeline can emit a word twice or step back in time
      (and its alignment can give start > end): a word starting before the previous one's end with
      the same text is dropped, any other start is moved up to the previous end;
    - runs of more than `max_repeat` identical words (a decoding loop) cut to `max_repeat`.

    Parameters
    ----------
    chunks : list of dict
        ``{"text": str, "timestamp": (start, end)}``, seconds (either may be None).
    duration : float
        Length of the audio transcribed, seconds.
    max_repeat : int
        Longest run of one repeated word kept.
    default_word_s : float
        Length given to a word with no end and no successor, seconds.

    Returns
    -------
    list of dict
        ``{"text", "start", "end"}``, seconds rounded to ms, starts non-decreasing.
    """
    words = []
    for c in chunks:
        text = (c.get("text") or "").replace("\ufffd", "").strip()
        if not normalise(text):
            continue
        s, e = (list(c.get("timestamp") or ()) + [None, None])[:2]
        words.append({"text": text, "start": s, "end": e})
    for i, w in enumerate(words):
        if w["start"] is None:
            w["start"] = words[i - 1]["end"] if i and words[i - 1]["end"] is not None else 0.0
    for i, w in enumerate(words):
        if w["end"] is None:
            nxt = next((x["start"] for x in words[i + 1 :] if x["start"] is not None), None)
            w["end"] = nxt if nxt is not None and nxt > w["start"] else w["start"] + default_word_s
    out: list[dict] = []
    for w in words:
        s = float(min(max(w["start"], 0.0), duration))
        e = float(min(max(w["end"], s), duration))
        if out and s < out[-1]["end"] - 1e-6:
            if normalise(w["text"]) == normalise(out[-1]["text"]):
                continue  # the same word twice across a chunk seam
            s = out[-1]["end"]
            e = max(e, s)
        if out and duration > 0 and s >= duration:
            continue  # starts at the end of the audio: nothing left to show it in
        out.append({"text": w["text"], "start": s, "end": e})
    capped: list[dict] = []
    run = 0
    for w in out:
        run = run + 1 if capped and normalise(w["text"]) == normalise(capped[-1]["text"]) else 1
        if run <= max_repeat:
            capped.append(w)
    return [{"text": w["text"], "start": round(w["start"], 3), "end": round(w["end"], 3)} for w in capped]


def lines_from_words(words: list[dict], *, max_gap: float = 0.8, max_words: int = 12) -> list[dict]:
    """Group timed words into lines.

    A new line starts after a pause longer than `max_gap`, after a word ending in ``.``, ``!`` or
    ``?``, or after `max_words` words.

    Parameters
    ----------
    words : list of dict
        ``{"text", "start", "end"}`` in order, seconds.
    max_gap : float
        Seconds.
    max_words : int

    Returns
    -------
    list of dict
        Lines with their words.
    """
    groups: list[list[dict]] = []
    for w in words:
        cur = groups[-1] if groups else None
        if (
            cur is None
            or w["start"] - cur[-1]["end"] > max_gap
            or len(cur) >= max_words
            or cur[-1]["text"].rstrip().endswith((".", "!", "?"))
        ):
            groups.append([])
        groups[-1].append(w)
    return [
        {
            "text": " ".join(w["text"] for w in ws),
            "start": ws[0]["start"],
            "end": ws[-1]["end"],
            "words": [dict(w) for w in ws],
        }
        for ws in groups
    ]


def spread_words(
    items: Sequence[str], start: float, end: float, weight: Callable[[str], int] = syllables
) -> list[tuple[float, float]]:
    """Consecutive spans tiling [start, end) in proportion to ``weight(item)`` (at least 1 each).

    Parameters
    ----------
    items : sequence of str
    start, end : float
        Seconds.
    weight : callable
        Default: syllable count.

    Returns
    -------
    list of (float, float)
        (start, end) seconds per item.
    """
    w = [max(1, weight(x)) for x in items]
    total = float(sum(w)) or 1.0
    spans, t = [], start
    for wi in w:
        d = (end - start) * wi / total
        spans.append((t, t + d))
        t += d
    return spans


def align_lines_to_words(lines: list[str], asr_words: list[dict], *, duration: float | None = None) -> list[dict]:
    """Times for given lyric lines from a transcription's timed words.

    Given and transcribed words are compared as `normalise`d tokens with difflib (autojunk off).
    ``equal`` blocks carry times one to one (``how="matched"``); a ``replace`` block spreads its given
    words by syllables over the span of the transcribed words it replaces (``"replaced"``); given
    words the transcription lacks are placed between their timed neighbours (``"interpolated"``):
    words of the next anchor's line just before it, words of the previous anchor's line just after
    it, about `SECONDS_PER_SYLLABLE` per syllable, so a missed line-initial word does not stretch
    over the pause between lines.

    Parameters
    ----------
    lines : list of str
        The given lyrics, one string per line.
    asr_words : list of dict
        ``clean_asr_words`` output, seconds.
    duration : float, optional
        The song's length, seconds (bounds words placed after the last anchor).

    Returns
    -------
    list of dict
        One line per given line, with words (each with `how`) and ``matched``, the share of its
        words matched (0..1). With no transcribed word at all, every time is None (the caller then
        uses `spread_lines_over_regions`).
    """
    given = [(li, w) for li, line in enumerate(lines) for w in _split(line)]
    a = [normalise(w) for _, w in given]
    b = [normalise(w["text"]) for w in asr_words]
    times: list[list] = [[None, None, "interpolated"] for _ in given]
    if given and asr_words:
        sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                for k in range(i2 - i1):
                    wj = asr_words[j1 + k]
                    times[i1 + k] = [wj["start"], wj["end"], "matched"]
            elif tag == "replace":
                spans = spread_words(
                    [given[i][1] for i in range(i1, i2)], asr_words[j1]["start"], asr_words[j2 - 1]["end"]
                )
                for k, (s, e) in enumerate(spans):
                    times[i1 + k] = [s, e, "replaced"]
    n = len(given)
    if any(t[0] is not None for t in times):
        i = 0
        while i < n:
            if times[i][0] is not None:
                i += 1
                continue
            j = i
            while j < n and times[j][0] is None:
                j += 1
            lo = times[i - 1][1] if i > 0 else None
            hi = times[j][0] if j < n else None
            for k, span in _place_run(given, i, j, lo, hi, duration).items():
                times[k] = [span[0], span[1], "interpolated"]
            i = j
    out = []
    for li, line in enumerate(lines):
        ws = [
            {
                "text": w,
                "start": None if t[0] is None else round(t[0], 3),
                "end": None if t[1] is None else round(t[1], 3),
                "how": t[2],
            }
            for (lj, w), t in zip(given, times)
            if lj == li
        ]
        timed = [w for w in ws if w["start"] is not None]
        out.append(
            {
                "text": line,
                "start": timed[0]["start"] if timed else None,
                "end": timed[-1]["end"] if timed else None,
                "words": ws,
                "matched": round(sum(w["how"] == "matched" for w in ws) / max(1, len(ws)), 3),
            }
        )
    return out


def _place_run(
    given: list[tuple[int, str]],
    i: int,
    j: int,
    lo: float | None,
    hi: float | None,
    duration: float | None,
    per_syllable: float = SECONDS_PER_SYLLABLE,
) -> dict[int, tuple[float, float]]:
    """Times for the untimed given words i..j-1 (see `align_lines_to_words`).

    They lie between the previous anchor's end `lo` and the next anchor's start `hi` (either None at
    the edges). When the gap is too short for words at their natural length, everything is spread
    over the gap by syllables.
    """

    def need(ws: list[str]) -> float:
        return sum(max(1, syllables(w)) for w in ws) * per_syllable

    run = list(range(i, j))
    words = [given[k][1] for k in run]
    if lo is None and hi is None:
        return {}
    if lo is None:
        lo = max(0.0, hi - need(words))
    if hi is None:
        hi = lo + need(words) if duration is None else min(duration, lo + need(words))
    hi = max(hi, lo)
    prev_line = given[i - 1][0] if i > 0 else None
    next_line = given[j][0] if j < len(given) else None
    head = [k for k in run if given[k][0] == prev_line and prev_line != next_line]
    tail = [k for k in run if given[k][0] == next_line and prev_line != next_line]
    middle = [k for k in run if k not in head and k not in tail]
    d_head, d_tail = need([given[k][1] for k in head]), need([given[k][1] for k in tail])
    d_middle = need([given[k][1] for k in middle]) if middle else 0.0
    if not (head or tail) or hi - lo <= d_head + d_tail + d_middle:
        return dict(zip(run, spread_words(words, lo, hi)))
    out: dict[int, tuple[float, float]] = {}
    out.update(zip(head, spread_words([given[k][1] for k in head], lo, lo + d_head)))
    out.update(zip(tail, spread_words([given[k][1] for k in tail], hi - d_tail, hi)))
    if middle:
        out.update(zip(middle, spread_words([given[k][1] for k in middle], lo + d_head, hi - d_tail)))
    return out


def spread_lines_over_regions(
    lines: list[str], regions: Sequence[tuple[float, float]], duration: float, *, how: str = "spread"
) -> list[dict]:
    """Lay untimed lines over vocal regions, with no model at all.

    Lines are laid end to end over the regions' voiced time in proportion to their syllable counts;
    each line then goes whole into the region holding its midpoint, and the lines of one region
    share it, again by syllables. So lines keep their order, never overlap and never straddle a gap
    between regions. Words are spread inside their line the same way. With no region, the whole
    song is used.

    Parameters
    ----------
    lines : list of str
    regions : sequence of (float, float)
        [start, end) seconds.
    duration : float
        The song's length, seconds.
    how : str
        The words' `how`.

    Returns
    -------
    list of dict
        Closed lines with words, seconds, in order.
    """
    spans = sorted((float(a), float(b)) for a, b in regions if b > a) or [(0.0, float(duration))]
    lengths = [b - a for a, b in spans]
    total_voiced = sum(lengths)
    weights = [_line_weight(line) for line in lines]
    total_w = float(sum(weights)) or 1.0
    members: list[list[int]] = [[] for _ in spans]
    cum = 0.0
    for i, w in enumerate(weights):
        mid = (cum + w / 2) / total_w * total_voiced
        cum += w
        k, before = 0, 0.0
        while k + 1 < len(spans) and mid > before + lengths[k]:
            before += lengths[k]
            k += 1
        members[k].append(i)
    placed: dict[int, tuple[float, float]] = {}
    for (a, b), idx in zip(spans, members):
        placed.update(zip(idx, spread_words([lines[i] for i in idx], a, b, weight=_line_weight)))
    out = []
    for i, line in enumerate(lines):
        s, e = placed[i]
        words = _split(line)
        out.append(
            {
                "text": line,
                "start": round(s, 3),
                "end": round(e, 3),
                "words": [
                    {"text": w, "start": round(a, 3), "end": round(b, 3), "how": how}
                    for w, (a, b) in zip(words, spread_words(words, s, e))
                ],
            }
        )
    return out


def _line_weight(line: str) -> int:
    return max(1, sum(syllables(w) for w in _split(line)))


def assign_to_segments(lines: list[dict], segments: Sequence[tuple[float, float]]) -> list[dict]:
    """What each segment sings: the words whose midpoint falls inside it.

    A midpoint equal to the song's end goes to the last segment; a line without words counts as one
    word spanning the line.

    Parameters
    ----------
    lines : list of dict
        Closed lines, seconds.
    segments : sequence of (float, float)
        [start, end) seconds, sorted, tiling the song.

    Returns
    -------
    list of dict
        Per segment: ``index``, ``start``, ``end``, ``text`` (its words joined), ``words`` (each with
        its ``line``) and ``lines`` (indices of the contributing lines, in order).
    """
    out = [
        {"index": i, "start": a, "end": b, "text": "", "words": [], "lines": []} for i, (a, b) in enumerate(segments)
    ]
    starts = [a for a, _ in segments]
    for li, line in enumerate(lines):
        words = line.get("words") or [{"text": line["text"], "start": line["start"], "end": line["end"]}]
        for w in words:
            if w.get("start") is None:
                continue
            mid = (w["start"] + (w["end"] if w.get("end") is not None else w["start"])) / 2
            k = bisect.bisect_right(starts, mid) - 1
            if k < 0 or not (mid < segments[k][1] or (k == len(segments) - 1 and mid <= segments[k][1] + 1e-9)):
                continue
            out[k]["words"].append(
                {"text": w["text"], "start": w["start"], "end": w["end"], "sep": w.get("sep", " "), "line": li}
            )
            if li not in out[k]["lines"]:
                out[k]["lines"].append(li)
    for seg in out:
        seg["text"] = _join(seg["words"])
    return out


def _join(words: list[dict]) -> str:
    """Segment text: words joined by spaces, syllables of one word (``sep`` "") joined without."""
    parts: list[str] = []
    for i, w in enumerate(words):
        parts.append(w["text"])
        if i + 1 < len(words):
            parts.append(w.get("sep", " "))
    return "".join(parts)
