r"""Is a model's script usable? Content checks on scene descriptions and bibles, beyond the schema.

A schema holds the shape of an answer, not its content. Real models, small or large, sometimes
answer inside the schema with nothing a video model can draw: SmolLM2-135M-Instruct, asked for a
script of 13 scenes, wrote "SCENE 1", "BEGIN SCRIPT", "SCENE 2" ... "SCENE 12},{" and a bible whose
characters, setting, lighting and camera were all "BEGIN SCRIPT", with six palette colours of one
hex (tests/data/smollm2_*.json hold such answers). These functions say what is wrong, in words
that are sent back to the model in a re-ask, recorded in response.txt and shown as a warning.

A scene description is unusable when it

- echoes the prompt: its letters are a phrase of two words or more of the prompts' own wording
  (`prompt_wording`: the instructions, the JSON instruction's placeholders, a label sentence),
  or `ECHO_TRIGRAM_SHARE` of its three-word runs are (label sentences strung together), or it
  is one of its format words ("SCENE n" is "scene"), or contains "BEGIN SCRIPT" / "END SCRIPT".
  The song's own content in a prompt (a story, lyrics, the user's characters) is no echo: a scene
  may retell a story's sentence, a bible may take its setting from it;
- is too short to draw: fewer than `MIN_SCENE_WORDS` words of two letters or more;
- holds JSON or formatting debris (braces, brackets, a written-out ``\n``, "S.T.E.A.B.U.S");
- repeats itself (a phrase looped to the length limit) or an earlier scene: the same letters,
  or `REPEAT_JACCARD` of the same words once the characters' names and descriptions are set
  aside (every scene repeats those by design: the template's own scenes would fail otherwise);
- names none of the characters, when the model was told who they are (`cast_words`).

A bible's field is unusable when it echoes the prompt's wording or holds debris; a character whose name is
a placeholder (or empty) or whose description is unusable is dropped; a palette needs at least
`MIN_PALETTE_HEXES` distinct colours not copied from the wording (its example "#1a2b3c"), with at
least two distinct names, none an echo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache

from soundsight.models.script.answers import numbered
from soundsight.models.script.story_to_scenes import SCENES_PROMPT
from soundsight.prompts import character_instruction, load_vocabulary, script_prompt, template_text
from soundsight.schemas import Character

__all__ = [
    "MIN_PALETTE_HEXES",
    "MIN_SCENE_WORDS",
    "REPEAT_JACCARD",
    "Judgement",
    "bible_problems",
    "cast_words",
    "judge_scenes",
    "prompt_wording",
    "skeleton",
    "text_problem",
]

MIN_SCENE_WORDS = 4
REPEAT_JACCARD = 0.8
MIN_PALETTE_HEXES = 3
# A text of at least this many word triples, this share of them the prompt's, echoes the prompt.
ECHO_MIN_TRIGRAMS, ECHO_TRIGRAM_SHARE = 3, 0.8
# A text of at least this many words whose distinct words are fewer than this share loops a phrase.
LOOP_MIN_WORDS, LOOP_DISTINCT_SHARE = 12, 0.35

_MARKER = re.compile(r"\bBEGIN\s+SCRIPT\b|\bEND\s+SCRIPT\b", re.IGNORECASE)
_DEBRIS = re.compile(r"[{}\[\]<>]|\\n|\\\"")
_SPELLED_OUT = re.compile(r"(?:\b\w\.){4,}")  # S.T.E.A.B.U.S.
# Words a character description's head noun is followed by: "a lean grey wolf *with* pale eyes".
_AFTER_HEAD = {
    "with", "wearing", "in", "of", "the", "that", "who", "which", "whose", "on", "at", "from", "and", "holding",
    "carrying", "under", "inside", "by", "for", "to", "dressed",
}  # fmt: skip
# One word alone echoes the prompt only when it is one of its format words (a character may be
# called "Melody" though the vocabulary says "melody").
_FORMAT_WORDS = {
    "scene", "scenes", "script", "name", "description", "character", "characters", "setting", "lighting", "camera",
    "palette", "hex", "bible",
}  # fmt: skip

ECHO = "echoes the prompt instead of describing a scene"
SHORT = f"is too short to draw (fewer than {MIN_SCENE_WORDS} words)"
DEBRIS = "contains JSON or formatting debris"
LOOP = "repeats one phrase over and over"
REPEAT = "repeats an earlier scene"
NO_CHARACTER = "names none of the characters"


def skeleton(text: str) -> str:
    """Lower-case letters and single spaces only: ``"SCENE 12},{"`` -> ``"scene"``."""
    return " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())


def _words(text: str) -> list[str]:
    return [w for w in skeleton(text).split() if len(w) >= 2]


@cache
def prompt_wording() -> str:
    """Every fixed word of soundsight's script prompts, as text.

    Pipeline 1's Block 1 filled with every label sentence of the vocabulary (and its lyrics and
    cast sentences), and pipeline 2's scene prompt without its fields: what a model echoes when it
    repeats the prompt instead of answering it. The writer adds its own format instruction.
    """
    vocabulary = load_vocabulary()
    sentences = [sentence for category in vocabulary.categories for sentence in category.sentences()]
    block_1 = script_prompt(
        track_sentences=sentences,
        segment_sentences=[sentences],
        durations=[1.0],
        visual_sentences=sentences,
        sung=["words"],
        themes=[],
    )
    scenes = re.sub(r"\{[a-z_]+\}", "\n", template_text(SCENES_PROMPT))
    return "\n".join([block_1, character_instruction("them", ""), scenes])


@lru_cache(maxsize=8)
def _skeleton_of(wording: str) -> tuple[str, set[tuple[str, ...]]]:
    words = skeleton(wording).split()
    return f" {' '.join(words)} ", set(_trigrams(words))


def _echoes(text: str, wording: str) -> bool:
    """Whether `text` holds a marker, or is a format word, a phrase of `wording` or mostly its phrases."""
    letters = skeleton(text)
    if _MARKER.search(text) or letters in _FORMAT_WORDS:
        return True
    phrase, trigrams = _skeleton_of(wording)
    if " " in letters and f" {letters} " in phrase:
        return True
    # Label sentences strung together, with a word changed here and there, are still the prompt's
    # (runs are taken within each sentence: the prompt strings its sentences in another order).
    own = [t for part in re.split(r"[.:;!?]", text) for t in _trigrams(skeleton(part).split())]
    return len(own) >= ECHO_MIN_TRIGRAMS and sum(t in trigrams for t in own) >= ECHO_TRIGRAM_SHARE * len(own)


def _trigrams(words: list[str]) -> list[tuple[str, ...]]:
    return list(zip(words, words[1:], words[2:]))


def text_problem(text: str, wording: str) -> str:
    """Why a short free-form text (a bible field, a name) is unusable, or '' when it is usable.

    `wording`: what the model was told in the prompts' own words (`prompt_wording` and the
    writer's format instruction).
    """
    if not skeleton(text):
        return "has no words"
    if _echoes(text, wording):
        return "echoes the prompt"
    if _DEBRIS.search(text) or _SPELLED_OUT.search(text):
        return DEBRIS
    if _loops(text):
        return LOOP
    return ""


def _loops(text: str) -> bool:
    words = _words(text)
    return len(words) >= LOOP_MIN_WORDS and len(set(words)) < LOOP_DISTINCT_SHARE * len(words)


def _head_noun(description: str) -> str:
    """``"a lean grey wolf with pale eyes"`` -> ``"wolf"``: the last word before the first qualifier."""
    words = skeleton(re.split(r"[,;:(]", description, maxsplit=1)[0]).split()
    head = []
    for k, word in enumerate(words):
        if k > 0 and word in _AFTER_HEAD:
            break
        head.append(word)
    return head[-1] if head and len(head[-1]) >= 3 else ""


def cast_words(characters: list[Character]) -> list[str]:
    """The words that name a character in a scene: each one's name, proper names and head noun.

    ``Character(name="Shade", description="a lean grey wolf with pale eyes")`` is named by "Shade"
    or "wolf"; the user's nameless ``"two kids, Ana and Leo"`` by "kids", "Ana" or "Leo".
    """
    found: list[str] = []
    for character in characters:
        found += _words(character.name)
        # Capitalised words inside the description are names; the first word is capitalised anyway.
        found += [m.group().lower() for m in re.finditer(r"\b[A-Z][a-z]+\b", character.description) if m.start() > 0]
        found.append(_head_noun(character.description))
    return sorted({w for w in found if len(w) >= 2})


def _names_one(text: str, cast: list[str]) -> bool:
    words = set(skeleton(text).split())
    return any(w in words or w + "s" in words or w + "es" in words or w.rstrip("s") in words for w in cast)


@dataclass
class Judgement:
    """The verdict on one answer's scenes.

    texts : every scene judged, by 0-based index.
    usable : the scenes that passed, by 0-based index.
    rejected : the reasons for every other scene, by 0-based index.
    """

    texts: dict[int, str] = field(default_factory=dict)
    usable: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, list[str]] = field(default_factory=dict)

    def problems(self, cast_names: str = "") -> list[str]:
        """One line per reason, naming the scenes: what the re-ask says and the warning summarises."""
        by_reason: dict[str, list[int]] = {}
        for index, reasons in sorted(self.rejected.items()):
            for reason in reasons:
                by_reason.setdefault(reason, []).append(index + 1)
        lines = []
        for reason, numbers in by_reason.items():
            verb = reason if len(numbers) == 1 else _plural(reason)
            what = numbered("scene", numbers)
            example = self._example(numbers[0], reason)
            who = f" ({cast_names})" if reason == NO_CHARACTER and cast_names else ""
            lines.append(f"{what} {verb}{who}{example}")
        return lines

    def _example(self, number: int, reason: str) -> str:
        text = self.texts.get(number - 1, "")
        if reason in (ECHO, SHORT, DEBRIS) and text:
            return f', e.g. "{text[:40]}"'
        return ""


def _plural(reason: str) -> str:
    """The reason's verb for several scenes: "echoes" -> "echo", "is" -> "are", "has" -> "have"."""
    first, _, rest = reason.partition(" ")
    verb = {"is": "are", "has": "have", "repeats": "repeat", "echoes": "echo", "names": "name"}
    verb |= {"contains": "contain"}
    return f"{verb.get(first, first)} {rest}"


def judge_scenes(scenes: dict[int, str], wording: str, cast: list[Character] | None) -> Judgement:
    """Which of an answer's scene descriptions can be drawn.

    Parameters
    ----------
    scenes : dict of int to str
        The parsed descriptions by 0-based index (`answers.ParsedScript.scenes`).
    wording : str
        The prompts' own words (`prompt_wording`) and the writer's format instruction: a scene
        whose letters are a phrase of it echoes the prompt.
    cast : list of Character or None
        The characters every scene must name one of; None when the model was never told who they
        are (free-text answers with the template's cast), which skips that check.

    Returns
    -------
    Judgement
    """
    cast_list = cast_words(cast) if cast else []
    fixed = set(_words(" ".join(f"{c.name} {c.description}" for c in cast or [])))
    verdict = Judgement(texts=dict(scenes))
    earlier: list[tuple[str, set[str]]] = []
    for index in sorted(scenes):
        text = scenes[index]
        reasons = []
        letters = skeleton(text)
        if _echoes(text, wording):
            reasons.append(ECHO)
        if len(_words(text)) < MIN_SCENE_WORDS:
            reasons.append(SHORT)
        if _DEBRIS.search(text) or _SPELLED_OUT.search(text):
            reasons.append(DEBRIS)
        if _loops(text):
            reasons.append(LOOP)
        own = set(_words(text)) - fixed
        if any(
            letters == other or (own and seen and len(own & seen) / len(own | seen) >= REPEAT_JACCARD)
            for other, seen in earlier
        ):
            reasons.append(REPEAT)
        if cast_list and not _names_one(text, cast_list):
            reasons.append(NO_CHARACTER)
        earlier.append((letters, own))
        if reasons:
            verdict.rejected[index] = reasons
        else:
            verdict.usable[index] = text
    return verdict


def bible_problems(data: dict, wording: str) -> tuple[dict, dict[str, str]]:
    """The model's bible without what cannot be used, and why each removed part was removed.

    Parameters
    ----------
    data : dict
        The ``bible`` object of a structured answer (`bible.bible_json_schema`).
    wording : str
        The prompts' own words (see `judge_scenes`).

    Returns
    -------
    kept : dict
        `data` minus unusable fields (``setting``, ``lighting``, ``camera``, ``palette``) and minus
        unusable characters (``characters`` is absent when none is left). `bible.parse_bible`
        then takes the template's value for each absent field.
    reasons : dict of str to str
        Field -> why it was removed, e.g. ``{"setting": "the bible's setting 'BEGIN SCRIPT'
        echoes the prompt"}``.
    """
    kept = dict(data)
    reasons: dict[str, str] = {}

    characters, dropped, seen = [], [], set()
    for entry in data.get("characters") or []:
        if not isinstance(entry, dict):
            continue
        name, description = str(entry.get("name") or ""), str(entry.get("description") or "")
        problem = ""
        if not skeleton(name) or _echoes(name, wording) or skeleton(name) in seen:
            problem = f"placeholder name {name.strip()!r}"
        elif bad := text_problem(description, wording):
            problem = f"{name.strip()!r}'s description {bad}"
        if problem:
            dropped.append(problem)
        else:
            seen.add(skeleton(name))
            characters.append(entry)
    if characters:
        kept["characters"] = characters
    else:
        kept.pop("characters", None)
    if dropped:
        reasons["characters"] = "the bible's characters: " + "; ".join(dict.fromkeys(dropped))

    values: dict[str, str] = {}
    for key in ("setting", "lighting", "camera"):
        value = str(data.get(key) or "")
        problem = text_problem(value, wording)
        if not problem and skeleton(value) in values.values():
            problem = f"repeats the {next(k for k, v in values.items() if v == skeleton(value))}"
        if problem:
            kept.pop(key, None)
            reasons[key] = f"the bible's {key} {value.strip()[:40]!r} {problem}"
        else:
            values[key] = skeleton(value)

    palette = [c for c in data.get("palette") or [] if isinstance(c, dict)]
    # A colour copied from the wording (the instruction's example "#1a2b3c") is no choice of the model's.
    hexes = {str(c.get("hex") or "").lower() for c in palette} - set(re.findall(r"#[0-9a-f]{6}", wording.lower()))
    names = {skeleton(str(c.get("name") or "")) for c in palette}
    echoed = [str(c.get("name")) for c in palette if _echoes(str(c.get("name") or ""), wording)]
    problem = ""
    if len(hexes) < MIN_PALETTE_HEXES:
        problem = f"has {len(hexes)} distinct colour{'s' if len(hexes) != 1 else ''} not copied from the prompt"
    elif len(names) < 2:
        problem = "gives every colour the same name"
    elif echoed:
        problem = f"has colour names that echo the prompt ({echoed[0]!r})"
    if problem:
        kept.pop("palette", None)
        reasons["palette"] = f"the bible's palette {problem} (at least {MIN_PALETTE_HEXES} distinct colours)"
    return kept, reasons
