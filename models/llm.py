"""The LLM script writer: the paper's Block 1 prompt sent to any OpenAI-compatible chat endpoint.

The paper (section 3.1.2, supplementary Blocks 1-3) asks DeepSeek-R1-Distill-Llama-8B for a script and cuts
the answer at "BEGIN SCRIPT", reading one "SCENE #:" line per segment. This module does the same
against any server that speaks the OpenAI chat API (vLLM, SGLang, TGI, llama.cpp, OpenAI
itself), in one of two output modes chosen by ``ScriptSettings.llm_output``:

- ``free_text``: the paper's format. Reasoning (``<think>...</think>``, or the unclosed leading
  block that R1 distills emit because their chat template opens ``<think>`` in the prompt) is set
  aside, the script is read after "BEGIN SCRIPT" up to "END SCRIPT", and scene headers are
  accepted with the decorations models like to add ("- SCENE 1:", "**SCENE 1:**", "### Scene 1 -").
- ``structured``: the server is asked for JSON that matches a schema with exactly N scenes
  (``minItems == maxItems == N``, every string bounded) through
  ``response_format={"type": "json_schema", ...}``; the answer is validated with pydantic.

Robustness, in the order ``__call__`` meets it:

1. Transport: connection errors, timeouts, 429 and 5xx answers are retried with exponential
   backoff a bounded number of times; a server that stays down raises `LLMUnavailableError`,
   whose message names the URL. Other 4xx answers mean the request itself is wrong (unknown
   model, prompt longer than the context) and raise `LLMRequestError` at once.
2. Content: a wrong scene count, empty scenes or an unparseable answer lead to a re-ask that
   names the specific problems, at most ``repair_attempts`` times.
3. Fallback: scenes still missing after that are written by the ``fallback`` writer (the
   deterministic template writer in the pipeline) and marked ``source="fallback"``; the
   scenes the LLM did write are kept and marked ``source="llm"``.

Nothing is thrown away: `ScriptResult.raw_response` holds every attempt's reasoning, answer and
the repair request that preceded it, which the script task writes to ``response.txt``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from models.base import ScriptRequest, ScriptResult, ScriptWriter
from soundsight.errors import SoundsightError
from soundsight.schemas import Scene
from soundsight.settings import ScriptSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Bump when parsing or prompting changes what a given model answer turns into: part of writer_id,
# so cached scripts written by an older parser are not reused.
PARSER_VERSION = "1"


class LLMUnavailableError(SoundsightError):
    """The endpoint did not answer (connection refused, timeouts, 5xx) after every retry."""

    def __init__(self, base_url: str, attempts: int, last_error: BaseException):
        self.base_url = base_url
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"the LLM endpoint {base_url} did not answer after {attempts} attempts "
            f"(last error: {_describe_error(last_error)}). Start the server (for example "
            f"`vllm serve deepseek-ai/DeepSeek-R1-Distill-Llama-8B`) or point script.llm_base_url "
            f"at a running one."
        )


class LLMRequestError(SoundsightError):
    """The endpoint answered, but refused the request (a 4xx other than 408/429)."""

    def __init__(self, base_url: str, error: openai.APIStatusError):
        self.base_url = base_url
        self.status_code = error.status_code
        super().__init__(f"the LLM endpoint {base_url} refused the request: {_describe_error(error)}")


class LLMScriptError(SoundsightError):
    """No usable script and no fallback writer to fill the gaps."""


def _describe_error(error: BaseException) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {error.message}"
    cause = error.__cause__ or error.__context__
    text = f"{type(error).__name__}: {error}"
    return f"{text} ({type(cause).__name__}: {cause})" if cause else text


# ---------------------------------------------------------------------------------------------
# Parsing: pure functions from answer text to scenes. Kept separate from the client so they can
# be tested on recorded answers (tests/data/deepseek_r1_block3.txt is the paper's own Block 3).
# ---------------------------------------------------------------------------------------------


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
    """Split a model's text into ``(reasoning, answer)``.

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


# A scene header at the start of a line. Tolerates list bullets, numbering and markdown before
# it ("- ", "* ", "1. ", "> ", "### ", "**"), any case, an optional '#', emphasis around the
# number and the usual separators (':', '.', '-', dashes, ')'), or nothing when the text starts
# on the next line ("SCENE 1\n..."). Group 1: the scene number; group 2: text on the same line.
_SCENE_HEADER = re.compile(
    r"^[ \t>*_#\-•+]*(?:\d+[.)][ \t]+[ \t>*_#\-•+]*)?scene[ \t]*#?[ \t]*(\d+)[ \t*_]*(?:[:.)\-–—]|$)[ \t*_]*(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
_BEGIN = re.compile(r"^[ \t>*_#\-•+]*BEGIN[ \t]+SCRIPT\b[ \t*_:]*", re.IGNORECASE | re.MULTILINE)
_BEGIN_ANYWHERE = re.compile(r"BEGIN[ \t]+SCRIPT", re.IGNORECASE)
_END = re.compile(r"^[ \t>*_#\-•+]*END[ \t]+(?:OF[ \t]+)?SCRIPT\b", re.IGNORECASE | re.MULTILINE)


def clean_scene_text(text: str) -> str:
    """One line of plain text: whitespace collapsed, markdown emphasis and wrap artefacts removed.

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
        parsed.problems.append(f"{_numbers('SCENE', missing)} {_is_are(missing)} missing")
    if empty:
        parsed.problems.append(f"{_numbers('SCENE', empty)} {_has_have(empty)} no description")
    if beyond:
        parsed.problems.append(
            f"the answer has {_numbers('SCENE', sorted(set(beyond)))} but scenes are numbered 1 to {n}"
        )
    if duplicates:
        parsed.problems.append(f"{_numbers('SCENE', sorted(set(duplicates)))} appeared more than once")
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
                    "properties": {
                        "description": {"type": "string", "minLength": 1, "maxLength": max_scene_chars}
                    },
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
        script = _StructuredScript.model_validate_json(_json_object_text(answer))
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
        text = clean_scene_text(scene.description)
        if text:
            parsed.scenes[i] = text
        else:
            empty.append(i + 1)
    if len(script.scenes) != n:
        parsed.problems.append(f'"scenes" has {len(script.scenes)} entries; it must have exactly {n}')
    if empty:
        parsed.problems.append(f"{_numbers('scene', empty)} {_has_have(empty)} an empty description")
    return parsed


def _json_object_text(answer: str) -> str:
    """The JSON object in an answer, without markdown fences or text around it."""
    start, end = answer.find("{"), answer.rfind("}")
    return answer[start : end + 1] if 0 <= start < end else answer


def _numbers(word: str, numbers: list[int]) -> str:
    return f"{word} {numbers[0]}" if len(numbers) == 1 else f"{word}s " + ", ".join(map(str, numbers))


def _is_are(numbers: list) -> str:
    return "is" if len(numbers) == 1 else "are"


def _has_have(numbers: list) -> str:
    return "has" if len(numbers) == 1 else "have"


# ---------------------------------------------------------------------------------------------
# The writer.
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One chat completion, as received."""

    content: str  # message.content; may still contain <think> blocks
    reasoning: str = ""  # the separate reasoning field, when the server splits it off
    finish_reason: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


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


def format_attempt(attempt: int, total: int, mode: str, reply: Reply, parsed: ParsedScript, repair_request: str = "") -> str:
    """One attempt as it goes into response.txt: the repair request that led to it (if any),
    everything the server sent back, reasoning included, then what the parser made of it."""
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
    lines += ["----- parsed -----", f"{len(parsed.scenes)} usable scenes"]
    lines += [f"problem: {problem}" for problem in parsed.problems]
    lines += [f"note: {note}" for note in parsed.notes]
    return "\n".join(lines)


def merge_scenes(durations: list[float], llm_scenes: dict[int, str], fallback_scenes: list[Scene] | None) -> list[Scene]:
    """One scene per duration: the LLM's where it wrote one (``source="llm"``), else the
    fallback writer's scene of the same index (``source="fallback"``)."""
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


class LLMScriptWriter:
    """Writes the scene script with an LLM behind an OpenAI-compatible chat endpoint.

    Parameters
    ----------
    settings : the ``script`` settings group: endpoint, model, output mode, sampling, timeout
        and the number of repair re-asks.
    fallback : a writer that fills the scenes the LLM did not deliver after every repair
        (called once with the same request; only the missing scenes are taken from it).
        Without one, an incomplete script raises `LLMScriptError`.
    retries : transport retries per request (connection error, timeout, 408/409/429, 5xx)
        after the first try; the wait doubles from `backoff_seconds` up to `max_backoff_seconds`.
    max_scene_chars, max_character_chars : string bounds of the structured-mode schema.
    client : an ``openai.OpenAI`` client to use instead of building one from `settings`.
    """

    name = "llm"

    def __init__(
        self,
        settings: ScriptSettings,
        fallback: ScriptWriter | None = None,
        *,
        retries: int = 4,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 30.0,
        max_scene_chars: int = 400,
        max_character_chars: int = 300,
        client: openai.OpenAI | None = None,
    ):
        self.settings = settings
        self.fallback = fallback
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_scene_chars = max_scene_chars
        self.max_character_chars = max_character_chars
        self.base_url = settings.llm_base_url
        # The openai client's own retries are switched off: ours are logged, recorded in the
        # result's notes, bounded by `retries` and end in an error that names the URL.
        self.client = client or openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "EMPTY",
            timeout=settings.timeout_seconds,
            max_retries=0,
        )
        self._model_id: str | None = settings.llm_model or None

    # -- identity ------------------------------------------------------------------------------

    def served_model_id(self) -> str:
        """The model that answers: ``settings.llm_model``, or else the first one the server's
        ``/models`` lists (asked once, then remembered). Part of `writer_id`, so of cache keys."""
        if self._model_id is None:
            page = self._with_retries("listing models", self.client.models.list, notes=[])
            if not page.data:
                raise SoundsightError(f"the LLM endpoint {self.base_url} serves no models (its /models list is empty)")
            self._model_id = page.data[0].id
        return self._model_id

    @property
    def writer_id(self) -> str:
        """Served model, output mode and parser version. Asks the server when no model is
        configured: a different model must never reuse another's cached script."""
        return f"openai-chat:{self.served_model_id()}:{self.settings.llm_output}:parser-{PARSER_VERSION}"

    # -- writing -------------------------------------------------------------------------------

    def __call__(self, request: ScriptRequest) -> ScriptResult:
        """Write one scene per entry of ``request.durations``.

        Raises `LLMUnavailableError` when the server stays unreachable (at any attempt: the
        script is worth waiting for rather than silently replacing), `LLMRequestError` when it
        refuses the first request, `LLMScriptError` when scenes are missing and there is no
        fallback writer.
        """
        n = len(request.durations)
        mode = self.settings.llm_output
        model = self.served_model_id()
        notes: list[str] = []
        transcript: list[str] = []

        # 1. The first question is the paper's Block 1 prompt as the pipeline filled it. In
        #    structured mode a description of the JSON follows, because Block 1 itself asks for
        #    "SCENE #:" lines.
        prompt = request.prompt if mode == "free_text" else request.prompt + "\n\n" + self._json_instruction(n)
        messages = [{"role": "user", "content": prompt}]

        # 2. Ask; while the answer cannot be used as is, ask again naming what is wrong. A
        #    re-ask is the original prompt, the previous answer without its reasoning (as R1's
        #    authors recommend for multi-turn chats) and the problems, so the context does not
        #    grow with the number of repairs.
        best = ParsedScript()
        total = self.settings.repair_attempts + 1
        repair_request = ""
        for attempt in range(1, total + 1):
            try:
                reply = self._chat(model, messages, n, seed=self.settings.seed + attempt - 1, notes=notes)
            except LLMRequestError as error:
                if attempt == 1:
                    raise
                # A re-ask is longer than the first ask and may not fit the context; keep what we have.
                notes.append(f"attempt {attempt} was refused ({error}); no further repairs")
                break
            answer, parsed = read_reply(reply, n, mode)
            transcript.append(format_attempt(attempt, total, mode, reply, parsed, repair_request))
            notes.extend(f"attempt {attempt}: {note}" for note in parsed.notes)

            # Later answers win ties: they were written knowing the earlier problems.
            if len(parsed.scenes) >= len(best.scenes):
                best = parsed
            if not parsed.problems:
                break
            notes.append(f"attempt {attempt}: " + "; ".join(parsed.problems))
            if attempt < total:
                repair_request = self._repair_request(parsed.problems, n)
                messages = [{"role": "user", "content": prompt}]
                if answer:
                    messages.append({"role": "assistant", "content": answer})
                messages.append({"role": "user", "content": repair_request})

        # 3. Scenes still missing come from the fallback writer; the LLM's scenes stay.
        missing = [i + 1 for i in range(n) if i not in best.scenes]
        fallback_result = None
        if missing:
            if self.fallback is None:
                raise LLMScriptError(
                    f"the LLM at {self.base_url} ({model}) left {_numbers('scene', missing)} unwritten "
                    f"after {len(transcript)} attempts and there is no fallback writer ({notes[-1]})"
                )
            fallback_name = getattr(self.fallback, "name", type(self.fallback).__name__)
            logger.warning("LLM script incomplete after %d attempts; %s fills %s", len(transcript), fallback_name, missing)
            notes.append(f"{_numbers('scene', missing)} written by the fallback writer '{fallback_name}'")
            fallback_result = self.fallback(request)
            if len(fallback_result.scenes) != n:
                raise SoundsightError(
                    f"the fallback writer '{fallback_name}' returned {len(fallback_result.scenes)} scenes for {n} segments"
                )
        scenes = merge_scenes(request.durations, best.scenes, fallback_result.scenes if fallback_result else None)

        # 4. Characters: the user's, else those the LLM described (structured mode). Style: the
        #    visual guidelines the prompt gave the LLM. When no LLM scene survived, the
        #    fallback's own characters and style match its scenes better.
        if fallback_result is not None and not best.scenes:
            characters, style = fallback_result.characters, fallback_result.style
        else:
            characters = request.characters.strip() or best.characters
            style = _visual_style(request)

        return ScriptResult(
            scenes=scenes,
            characters=characters,
            style=style,
            raw_response="\n\n".join(transcript),
            notes=notes,
        )

    # -- helpers, in the order __call__ uses them ----------------------------------------------

    def _json_instruction(self, n: int) -> str:
        return (
            "Answer with one JSON object only, no BEGIN SCRIPT or SCENE lines: "
            '{"characters": "<the characters, described once>", "scenes": [{"description": '
            f'"<scene 1 in one sentence>"}}, ...]}} with exactly {n} entries in "scenes", in order, '
            f"each at most {self.max_scene_chars} characters."
        )

    def _chat(self, model: str, messages: list[dict], n: int, *, seed: int, notes: list[str]) -> Reply:
        """One chat completion (with transport retries), unpacked into a `Reply`."""
        s = self.settings
        kwargs: dict = dict(
            model=model,
            messages=messages,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            seed=seed,
        )
        if s.llm_output == "structured":
            schema = script_json_schema(n, max_scene_chars=self.max_scene_chars, max_character_chars=self.max_character_chars)
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "scene_script", "schema": schema, "strict": True},
            }
        completion = self._with_retries("chat completion", lambda: self.client.chat.completions.create(**kwargs), notes)
        choice = completion.choices[0]
        # vLLM started with --reasoning-parser returns the reasoning beside the content, named
        # `reasoning_content` (older releases) or `reasoning` (newer ones).
        extra = choice.message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
        usage = completion.usage
        return Reply(
            content=choice.message.content or "",
            reasoning=reasoning if isinstance(reasoning, str) else json.dumps(reasoning),
            finish_reason=choice.finish_reason or "",
            model=completion.model or model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
        )

    def _with_retries(self, what: str, call: Callable[[], T], notes: list[str]) -> T:
        """Run `call`; after a transport failure wait and try again, `self.retries` times at most.

        Retried: connection errors and timeouts (the server is starting, restarting or
        overloaded), 408, 409, 429 and 5xx. Not retried: other 4xx, which would fail the same
        way again (`LLMRequestError`). After the last try, `LLMUnavailableError` names the URL.
        """
        delay = self.backoff_seconds
        for attempt in range(1, self.retries + 2):
            try:
                return call()
            except openai.APIConnectionError as error:  # includes APITimeoutError
                last: BaseException = error
            except openai.APIStatusError as error:
                if error.status_code < 500 and error.status_code not in (408, 409, 429):
                    raise LLMRequestError(self.base_url, error) from error
                last = error
            if attempt > self.retries:
                break
            wait = min(delay, self.max_backoff_seconds)
            message = (
                f"{what} at {self.base_url} failed ({_describe_error(last)}); "
                f"retry {attempt} of {self.retries} in {wait:g} s"
            )
            logger.warning(message)
            notes.append(message)
            time.sleep(wait)
            delay *= 2
        raise LLMUnavailableError(self.base_url, self.retries + 1, last) from last

    def _repair_request(self, problems: list[str], n: int) -> str:
        if self.settings.llm_output == "free_text":
            how = (
                f'Write the whole script again: first the line "BEGIN SCRIPT", then exactly {n} scenes, '
                f'each starting with "SCENE #:" from "SCENE 1:" to "SCENE {n}:", one sentence each, '
                f'then "END SCRIPT".'
            )
        else:
            how = (
                f'Answer again with only the JSON object: "scenes" must hold exactly {n} entries, each '
                f'with a non-empty one-sentence "description".'
            )
        return "Your answer cannot be used: " + "; ".join(problems) + ". " + how


def _visual_style(request: ScriptRequest) -> str:
    """The visual guidelines the prompt gave the LLM, as one style string for the video prompts."""
    sentences = [label.sentence().rstrip(". ") for label in request.analysis.visual.values()]
    return ". ".join(sentences) + "." if sentences else ""
