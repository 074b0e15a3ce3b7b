"""Reading an LLM's answer: pure functions from answer text to scenes, no network.

Kept apart from the client so they are tested on recorded answers (tests/data/deepseek_r1_block3.txt
is the paper's own Block 3). Two formats, chosen by ``ScriptSettings.llm_output``:

- ``free_text``: the paper's format. Reasoning (``<think>...</think>``, or the unclosed leading
  block that R1 distills emit because their chat template opens ``<think>`` in the prompt) is set
  aside, the script is read after "BEGIN SCRIPT" up to "END SCRIPT", and scene headers are
  accepted with the decorations models like to add ("- SCENE 1:", "**SCENE 1:**", "### Scene 1 -").
- ``structured``: JSON that matches `script_json_schema` (exactly N scenes, every string
  bounded), validated with pydantic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

from soundsight.models.script.chat import Reply
from soundsight.schemas import Scene

__all__ = [
    "ParsedScript",
    "clean_scene_text",
    "format_attempt",
    "merge_scenes",
    "numbered",
    "parse_free_text",
    "ranges",
    "parse_structured",
    "read_reply",
    "script_json_schema",
    "split_reasoning",
]


@dataclass
class ParsedScript:
    """What one answer yielded.

    scenes : usable scene descriptions by 0-based index, only indices inside ``range(n)``.
    problems : what is wrong with the answer, phrased so they can be sent back to the model.
        Empty means the answer is complete and usable as is.
    notes : harmless irregularities worth recording (no "BEGIN SCRIPT", stray text, ...).
    characters : the character description, when the answer format has one (structured mode).
    """

    scenes: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    characters: str = ""


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str]:
    r"""Split a model's text into ``(reasoning, answer)``.

    Handles, in this order:
      - complete ``<think>...</think>`` blocks anywhere in the text;
      - an unclosed *leading* block: DeepSeek-R1 distills' chat template ends the prompt with
        ``<think>\\n``, so their output starts inside the reasoning and only the closing
        ``</think>`` appears - everything before the last such tag is reasoning;
      - an opened but never closed block (the answer was cut off while still thinking): the
        rest of the text from ``<think>`` on is reasoning, the answer is what came before.
    """
    reasoning_parts: list[str] = []

    def take(match: re.Match) -> str:
        reasoning_parts.append(match.group(0)[len("<think>") : -len("</think>")])
        return ""

    answer = _THINK_BLOCK.sub(take, text)
    closes = list(_THINK_CLOSE.finditer(answer))
    if closes:
        last = closes[-1]
        reasoning_parts.insert(0, answer[: last.start()])
        answer = answer[last.end() :]
    opened = _THINK_OPEN.search(answer)
    if opened:
        reasoning_parts.append(answer[opened.end() :])
        answer = answer[: opened.start()]
    reasoning = "\n".join(part.strip() for part in reasoning_parts if part.strip())
    return reasoning, answer.strip()


# A scene header at the start of a line. Tolerates list bullets, numbering, quotes and markdown
# before it ("- ", "* ", "1. ", "> ", "### ", "**", '"'), any case, an optional '#', emphasis around the
# number and the usual separators (':', '.', '-', dashes, ')'), or nothing when the text starts
# on the next line ("SCENE 1\n..."). Group 1: the scene number; group 2: text on the same line.
_SCENE_HEADER = re.compile(
    r"^[ \t>*_#\-•+\"'`]*(?:\d+[.)][ \t]+[ \t>*_#\-•+]*)?scene[ \t]*#?[ \t]*(\d+)[ \t*_]*(?:[:.)\-–—]|$)[ \t*_]*(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# "SCENE 3: " before a structured description: the model restating the number, not describing.
_LEADING_HEADER = re.compile(r"^\W*scene\s*#?\s*\d+\s*[:.)\-–—]\s*(?=\S)", re.IGNORECASE)
_BEGIN = re.compile(r"^[ \t>*_#\-•+]*BEGIN[ \t]+SCRIPT\b[ \t*_:]*", re.IGNORECASE | re.MULTILINE)
_BEGIN_ANYWHERE = re.compile(r"BEGIN[ \t]+SCRIPT", re.IGNORECASE)
_END = re.compile(r"^[ \t>*_#\-•+]*END[ \t]+(?:OF[ \t]+)?SCRIPT\b", re.IGNORECASE | re.MULTILINE)


def clean_scene_text(text: str) -> str:
    r"""One line of plain text: whitespace collapsed, markdown emphasis and wrap artefacts removed.

    The paper's Block 3 has hard-wrapped lines that put a space before punctuation
    ("stands\\n . The figure"); the video model should get "stands. The figure".
    """
    # Control characters (which weak models and constrained decoding can emit) mean nothing to
    # a video model and break some of its tokenizers.
    text = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    text = " ".join(text.split())
    text = re.sub(r"\*\*|__", "", text)  # markdown bold
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    text = text.strip(" *_\"'`")
    return text.strip()


def parse_free_text(answer: str, n: int) -> ParsedScript:
    """Read the paper's format from an answer whose reasoning was already removed.

    The script starts after the last line that says "BEGIN SCRIPT" (the last, because models
    sometimes announce it before writing it) and ends at "END SCRIPT" if present. Without
    "BEGIN SCRIPT" the whole answer is searched for scene headers and a note says so.
    A scene's text is everything up to the next header, joined into one line.
    """
    parsed = ParsedScript()
    if not answer.strip():
        parsed.problems.append("the answer was empty")
        return parsed
    # Small models write the prompt's "SCENE 1:\\n" with the backslash-n spelled out.
    answer = answer.replace("\\n", "\n")

    begins = list(_BEGIN.finditer(answer)) or list(_BEGIN_ANYWHERE.finditer(answer))
    script = answer[begins[-1].end() :] if begins else answer
    end = _END.search(script)
    if end:
        script = script[: end.start()]

    headers = list(_SCENE_HEADER.finditer(script))
    if not headers:
        where = "after BEGIN SCRIPT" if begins else 'and there was no "BEGIN SCRIPT" line'
        parsed.problems.append(f'no line started with "SCENE #:" {where}')
        return parsed
    if not begins:
        parsed.notes.append('no "BEGIN SCRIPT" line; scene headers were read from the whole answer')

    empty, duplicates, beyond = [], [], []
    for k, header in enumerate(headers):
        number = int(header.group(1))
        stop = headers[k + 1].start() if k + 1 < len(headers) else len(script)
        text = clean_scene_text(header.group(2) + "\n" + script[header.end() : stop])
        if not 1 <= number <= n:
            beyond.append(number)
        elif number - 1 in parsed.scenes or number in empty:
            # Keep the first version: a second one is usually the model starting over mid-answer.
            duplicates.append(number)
        elif not text:
            empty.append(number)
        else:
            parsed.scenes[number - 1] = text

    missing = [i + 1 for i in range(n) if i not in parsed.scenes and i + 1 not in empty]
    if missing:
        parsed.problems.append(f"{numbered('SCENE', missing)} {_is_are(missing)} missing")
    if empty:
        parsed.problems.append(f"{numbered('SCENE', empty)} {_has_have(empty)} no description")
    if beyond:
        parsed.problems.append(
            f"the answer has {numbered('SCENE', sorted(set(beyond)))} but scenes are numbered 1 to {n}"
        )
    if duplicates:
        parsed.problems.append(f"{numbered('SCENE', sorted(set(duplicates)))} appeared more than once")
    return parsed


class _StructuredScene(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str


class _StructuredScript(BaseModel):
    model_config = ConfigDict(extra="forbid")
    characters: str
    scenes: list[_StructuredScene]


def script_json_schema(n: int, *, max_scene_chars: int = 400, max_character_chars: int = 300) -> dict:
    """The JSON schema sent with ``response_format`` in structured mode.

    Exactly `n` scenes (``minItems == maxItems``) so a grammar-constrained server cannot return
    another count. Every string is bounded: constrained decoding of an unbounded string lets a
    weak model ramble until ``max_tokens``, which cuts the JSON off and makes it invalid.
    ``additionalProperties: false`` and every property required, as ``strict`` mode demands.
    """
    return {
        "type": "object",
        "properties": {
            "characters": {"type": "string", "maxLength": max_character_chars},
            "scenes": {
                "type": "array",
                "minItems": n,
                "maxItems": n,
                "items": {
                    "type": "object",
                    "properties": {"description": {"type": "string", "minLength": 1, "maxLength": max_scene_chars}},
                    "required": ["description"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["characters", "scenes"],
        "additionalProperties": False,
    }


def parse_structured(answer: str, n: int) -> ParsedScript:
    """Validate a structured-mode answer (reasoning already removed) with pydantic.

    Servers that ignore ``response_format`` (some do, silently) answer in prose; when the JSON
    cannot be read, the free-text parser is tried on the same answer before giving up, and a
    note records it.
    """
    parsed = ParsedScript()
    if not answer.strip():
        parsed.problems.append("the answer was empty")
        return parsed
    try:
        script = _read_structured(_json_object_text(answer))
    except ValidationError as error:
        as_text = parse_free_text(answer, n)
        if as_text.scenes:
            as_text.notes.insert(0, "the answer was not JSON; it was read as the free-text format")
            return as_text
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        parsed.problems.append(f"the answer is not valid JSON for the schema ({where}: {first['msg']})")
        return parsed

    parsed.characters = clean_scene_text(script.characters)
    empty = []
    for i, scene in enumerate(script.scenes[:n]):
        text = _LEADING_HEADER.sub("", clean_scene_text(scene.description))
        if text:
            parsed.scenes[i] = text
        else:
            empty.append(i + 1)
    if len(script.scenes) != n:
        parsed.problems.append(f'"scenes" has {len(script.scenes)} entries; it must have exactly {n}')
    if empty:
        parsed.problems.append(f"{numbered('scene', empty)} {_has_have(empty)} an empty description")
    return parsed


def _read_structured(text: str) -> _StructuredScript:
    """The answer's JSON object, validated; raw line breaks inside its strings are accepted.

    Strict JSON forbids control characters inside strings, but constrained decoding lets them
    through (vLLM's guidance backend did, for SmolLM2): the whole answer would otherwise be lost
    for a line break. Raises pydantic's ValidationError when it is not the schema's object.
    """
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError:
        return _StructuredScript.model_validate_json(text)  # the error names where the JSON breaks
    return _StructuredScript.model_validate(data)


def _json_object_text(answer: str) -> str:
    """The JSON object in an answer, without markdown fences or text around it."""
    start, end = answer.find("{"), answer.rfind("}")
    return answer[start : end + 1] if 0 <= start < end else answer


def numbered(word: str, numbers: list[int]) -> str:
    """``scene 3``, ``scenes 3, 5`` or ``scenes 1-4, 9`` (runs of three or more as ranges)."""
    return f"{word} {numbers[0]}" if len(numbers) == 1 else f"{word}s {ranges(numbers)}"


def ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5, 7, 8, 9, 10]`` -> ``"1-3, 5, 7-10"``: runs of three or more as ranges."""
    parts: list[str] = []
    run: list[int] = []
    for number in [*sorted(set(numbers)), None]:
        if run and (number is None or number != run[-1] + 1):
            parts += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else [str(k) for k in run]
            run = []
        if number is not None:
            run.append(number)
    return ", ".join(parts)


def _is_are(numbers: list) -> str:
    return "is" if len(numbers) == 1 else "are"


def _has_have(numbers: list) -> str:
    return "has" if len(numbers) == 1 else "have"


def read_reply(reply: Reply, n: int, mode: str) -> tuple[str, ParsedScript]:
    """``(answer, parsed)``: the reply's answer with all reasoning removed, and what it yields.

    Reasoning can arrive twice over: in a separate field (vLLM with ``--reasoning-parser``) and
    inline in the content (servers without one); only the content is parsed, minus any inline
    reasoning.
    """
    inline_reasoning, answer = split_reasoning(reply.content)
    parsed = parse_free_text(answer, n) if mode == "free_text" else parse_structured(answer, n)
    if not answer and (inline_reasoning or reply.reasoning.strip()):
        # More useful to the model (and to whoever reads response.txt) than "empty".
        parsed.problems = ["the answer contained only reasoning and no script after it"]
    if parsed.problems and reply.finish_reason == "length":
        parsed.problems.append("the answer was cut off by the token limit")
    return answer, parsed


def format_attempt(
    attempt: int,
    total: int,
    mode: str,
    reply: Reply,
    parsed: ParsedScript,
    repair_request: str = "",
    usable: dict[int, str] | None = None,
    problems: list[str] | None = None,
) -> str:
    """One attempt as it goes into response.txt.

    The repair request that led to it (if any), everything the server sent back, reasoning
    included, then what the parser made of it: the scenes read, how many of them are usable
    (`usable`, after the content checks; default: all read) and every problem (`problems`,
    default: the parser's).
    """
    usage = ""
    if reply.prompt_tokens is not None:
        usage = f" | tokens {reply.prompt_tokens} prompt + {reply.completion_tokens} completion"
    lines = [
        f"===== attempt {attempt} of {total} | mode {mode} | model {reply.model} "
        f"| finish_reason {reply.finish_reason or '?'}{usage} ====="
    ]
    if repair_request:
        lines += ["----- repair request -----", repair_request]
    if reply.reasoning.strip():
        lines += ["----- reasoning (separate field from the server) -----", reply.reasoning.strip()]
    lines += ["----- content (as received) -----", reply.content]
    usable = parsed.scenes if usable is None else usable
    lines += ["----- parsed -----", f"{len(parsed.scenes)} scenes read, {len(usable)} usable"]
    lines += [f"problem: {problem}" for problem in (parsed.problems if problems is None else problems)]
    lines += [f"note: {note}" for note in parsed.notes]
    return "\n".join(lines)


def merge_scenes(
    durations: list[float], llm_scenes: dict[int, str], fallback_scenes: list[Scene] | None
) -> list[Scene]:
    """One scene per duration, the LLM's or the fallback's.

    The LLM's where it wrote one (``source="llm"``), else the fallback writer's scene of the same
    index (``source="fallback"``).
    """
    scenes = []
    for i, seconds in enumerate(durations):
        if i in llm_scenes:
            scenes.append(Scene(index=i, description=llm_scenes[i], duration=seconds, source="llm"))
        elif fallback_scenes is not None:
            description = fallback_scenes[i].description
            scenes.append(Scene(index=i, description=description, duration=seconds, source="fallback"))
        else:
            raise ValueError(f"scene {i + 1} has neither an LLM nor a fallback description")
    return scenes
