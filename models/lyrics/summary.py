"""What other stages take from the lyrics: per-segment words and themes for the script, line starts for cuts.

Pure functions over `soundsight.schemas.Lyrics`, returning plain data.
"""

from __future__ import annotations

from collections import Counter

from soundsight.models.lyrics.align import normalise
from soundsight.schemas import Lyrics

__all__ = ["STOPWORDS", "line_starts", "script_inputs", "themes"]

# English function words and vocables; themes are what is left. Other languages get noisier themes.
_STOPWORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can cant could did didnt do does doesnt doing dont down during each few for from
further get gets got gonna gotta had has have having he hed hes her here hers herself him
himself his how i id ill im ive if in into is isnt it its itself just let lets like me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she shes
should so some such than that thats the their theirs them themselves then there theres these they
theyre this those through to too under until up upon very was wasnt we were weve what whats when
where which while who whos why will with wont would you youd youll youre youve your yours yourself
yourselves yeah yea oh ooh ah aah uh la na hey whoa woah mm mmm hmm da ba doo oo ya yo cause cuz cos
til till wanna one two say said go goes going come comes came know make made take took want way well
back still ever never every always
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def themes(lyrics: Lyrics, max_themes: int = 8, *, min_count: int = 2) -> list[str]:
    """The song's most frequent content words.

    Words are compared `normalise`d (lower case, no punctuation); function words and vocables
    (`STOPWORDS`) and words under three letters are left out; ties go to the word sung first.

    Parameters
    ----------
    lyrics : Lyrics
    max_themes : int
        At most this many words.
    min_count : int
        A word must be sung at least this often, unless the lyrics are too short for any to be.

    Returns
    -------
    list of str
        Lower-case words, most frequent first.
    """
    counts: Counter = Counter()
    first: dict[str, int] = {}
    for i, word in enumerate(w for line in lyrics.lines for w in line.text.split()):
        key = normalise(word)
        if len(key) < 3 or key in STOPWORDS or key.isdigit():
            continue
        counts[key] += 1
        first.setdefault(key, i)
    ranked = sorted(counts, key=lambda k: (-counts[k], first[k]))
    frequent = [k for k in ranked if counts[k] >= min_count]
    return (frequent or ranked)[:max_themes]


def script_inputs(lyrics: Lyrics, *, max_themes: int = 8, max_chars: int = 300) -> dict:
    """The lyrics as the script prompts take them.

    Parameters
    ----------
    lyrics : Lyrics
    max_themes : int
        See `themes`.
    max_chars : int
        Longest segment text kept, characters (longer ones end with an ellipsis).

    Returns
    -------
    dict
        ``has_lyrics`` (bool), ``source`` (str), ``language`` (str), ``themes`` (list of str),
        ``segments`` (list of str: what each segment sings, "" where nothing; index = segment
        index) and ``vocals`` (list of bool: the vocal check per segment).
    """

    def cap(text: str) -> str:
        return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "\u2026"

    return {
        "has_lyrics": bool(lyrics.lines),
        "source": lyrics.source,
        "language": lyrics.language,
        "themes": themes(lyrics, max_themes),
        "segments": [cap(s.text) for s in lyrics.segments],
        "vocals": [s.vocals for s in lyrics.segments],
    }


def sung_per_segment(lyrics: Lyrics, spans: list[tuple[float, float]], *, max_chars: int = 300) -> list[str]:
    """What each of `spans` sings: its words joined ("" where nothing is sung).

    Parameters
    ----------
    lyrics : Lyrics
        Lines with word times (whichever segmentation they were found with, if any).
    spans : list of (float, float)
        [start, end) of each segment, seconds, tiling the song.
    max_chars : int
        Longest text kept, characters (longer ones end with an ellipsis).

    Returns
    -------
    list of str
        One per span.
    """
    from soundsight.models.lyrics.align import assign_to_segments

    texts = [seg["text"] for seg in assign_to_segments([line.model_dump() for line in lyrics.lines], spans)]
    return [t if len(t) <= max_chars else t[: max_chars - 1].rstrip() + "\u2026" for t in texts]


def line_starts(lyrics: Lyrics) -> list[float]:
    """When each sung line starts: cut points a segmenter may prefer.

    Parameters
    ----------
    lyrics : Lyrics

    Returns
    -------
    list of float
        Seconds, sorted, without duplicates.
    """
    return sorted({round(line.start, 3) for line in lyrics.lines})
