"""The LLM script writer: the paper's Block 1 prompt sent to any OpenAI-compatible chat endpoint.

The paper (section 3.1.2, supplementary Blocks 1-3) asks DeepSeek-R1-Distill-Llama-8B for a script and cuts
the answer at "BEGIN SCRIPT", reading one "SCENE #:" line per segment. This module does the same
against any server that speaks the OpenAI chat API (vLLM, SGLang, TGI, llama.cpp, OpenAI
itself), in one of two output modes chosen by ``ScriptSettings.llm_output``:

- ``free_text``: the paper's format, read by `answers.parse_free_text`;
- ``structured``: the server is asked for JSON with exactly N scenes through
  ``response_format={"type": "json_schema", ...}`` (`answers.parse_structured`).

Robustness, in the order ``__call__`` meets it:

1. Transport (`chat.ChatClient`): connection errors, timeouts, 429 and 5xx answers are retried
   a bounded number of times; a server that stays down raises `LLMUnavailableError`, a request
   the server refuses `LLMRequestError`.
2. Content: a wrong scene count, empty scenes or an unparseable answer lead to a re-ask that
   names the specific problems, at most ``repair_attempts`` times.
3. Fallback: scenes still missing after that are written by the ``fallback`` writer (the
   deterministic template writer in the pipeline) and marked ``source="fallback"``; the
   scenes the LLM did write are kept and marked ``source="llm"``.

Nothing is thrown away: `ScriptResult.raw_response` holds every attempt's reasoning, answer and
the repair request that preceded it, which the script task writes to ``response.txt``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Unpack

from soundsight.errors import SoundsightError
from soundsight.models.base import ScriptRequest, ScriptResult, ScriptWriter
from soundsight.models.script.answers import (
    ParsedScript,
    format_attempt,
    merge_scenes,
    numbered,
    read_reply,
    script_json_schema,
    split_reasoning,
)
from soundsight.models.script.bible import bible_json_schema, build_bible, parse_bible
from soundsight.models.script.chat import DEFAULT_HINT, ChatClient, ChatTransport, LLMRequestError, Reply
from soundsight.models.script.content_checks import bible_problems, judge_scenes, prompt_wording, text_problem
from soundsight.models.script.style import style_sentence
from soundsight.models.script.template import TemplateScriptWriter, subject_phrase
from soundsight.schemas import Character, VisualBible
from soundsight.settings import ChatEndpoint, ScriptSettings, Settings

__all__ = ["BACKEND", "CONCURRENCY_LIMIT", "PARSER_VERSION", "SCENE_WRITER", "LLMScriptError", "LLMScriptWriter"]

logger = logging.getLogger(__name__)

# Bump when parsing or prompting changes what a given model answer turns into: part of writer_id,
# so cached scripts written by an older parser are not reused.
PARSER_VERSION = "3"
# Requests to the LLM, from every run and worker, are capped by this Prefect global concurrency
# limit (`prefect gcl create vllm --limit N`); without it, they are not capped.
CONCURRENCY_LIMIT = "vllm"
# How many of the last answer's problems a fallback warning quotes (response.txt has them all).
MAX_REASONS_IN_WARNING = 3


class LLMScriptError(SoundsightError):
    """No usable script and no fallback writer to fill the gaps."""


@dataclass
class _Answer:
    """One answer, judged: what it parsed into, what of it is usable, and what is wrong with it.

    usable : the scenes that passed the content checks, by 0-based index.
    bible : the model's bible minus its unusable parts (None when the answer had none).
    bible_reasons : why each removed part of the bible was removed, by field.
    cast : the characters every scene had to name (None: not checked).
    problems : shape and content problems, in the words the re-ask sends back.
    """

    parsed: ParsedScript
    usable: dict[int, str]
    bible: dict | None
    bible_reasons: dict[str, str]
    cast: list[Character] | None
    problems: list[str]

    @property
    def rank(self) -> tuple[int, int]:
        """Usable scenes first, then usable bible fields: the better of two answers ranks higher."""
        return len(self.usable), -len(self.bible_reasons)


class LLMScriptWriter:
    """Writes the scene script with an LLM behind an OpenAI-compatible chat endpoint.

    Parameters
    ----------
    settings : the ``script`` settings group: endpoint, model, output mode, sampling, timeout
        and the number of repair re-asks.
    fallback : a writer that fills the scenes the LLM did not deliver after every repair
        (called once with the same request; only the missing scenes are taken from it).
        Without one, an incomplete script raises `LLMScriptError`.
    max_scene_chars, max_character_chars : string bounds of the structured-mode schema.
    unavailable_hint : what the error says to do when the endpoint does not answer (default:
        start the paper's LLM or point ``script.llm_base_url`` at one).
    **transport : `chat.ChatTransport`
        ``retries`` per request (connection error, timeout, 408/409/429, 5xx) after the first try,
        the wait doubling from ``backoff_seconds`` up to ``max_backoff_seconds``; ``client``, an
        ``openai.OpenAI`` client to use instead of building one from `settings`.
    """

    name = "llm"

    def __init__(
        self,
        settings: ScriptSettings,
        fallback: ScriptWriter | None = None,
        *,
        max_scene_chars: int = 400,
        max_character_chars: int = 300,
        unavailable_hint: str = DEFAULT_HINT,
        **transport: Unpack[ChatTransport],
    ):
        self.settings = settings
        self.fallback = fallback
        self.max_scene_chars = max_scene_chars
        self.max_character_chars = max_character_chars
        self.base_url = settings.llm_base_url
        self.chat = ChatClient(**settings.chat_endpoint(), unavailable_hint=unavailable_hint, **transport)

    # -- identity ------------------------------------------------------------------------------

    def served_model_id(self) -> str:
        """The model that answers (see `ChatClient.served_model_id`)."""
        return self.chat.served_model_id()

    @property
    def writer_id(self) -> str:
        """Served model, output mode and parser version: part of cache keys.

        Asks the server when no model is configured: a different model must never reuse another's
        cached script.
        """
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
        # What an answer must not echo: the prompts' own words and the format instruction.
        wording = prompt_wording() + ("" if mode == "free_text" else "\n" + self._json_instruction(n))
        # The template's bible: the user's characters, or the cast the model's bible falls back to.
        template_bible = build_bible(
            request.analysis, seed=request.song_hash or "soundsight", characters=request.characters, title=request.title
        )

        # 2. Ask; while the answer cannot be used as is (its shape or its content), ask again
        #    naming what is wrong. A re-ask is the original prompt, the previous answer without
        #    its reasoning (as R1's authors recommend for multi-turn chats) and the problems, so
        #    the context does not grow with the number of repairs.
        best: _Answer | None = None
        total = self.settings.repair_attempts + 1
        repair_request = ""
        for attempt in range(1, total + 1):
            try:
                reply = self._chat(messages, n, seed=self.settings.seed + attempt - 1, notes=notes)
            except LLMRequestError as error:
                if attempt == 1:
                    raise
                # A re-ask is longer than the first ask and may not fit the context; keep what we have.
                notes.append(f"attempt {attempt} was refused ({error}); no further repairs")
                break
            # The bible (structured mode) is read apart from the scenes; the rest parses as before.
            without_bible, bible_data = _take_bible(reply) if mode == "structured" else (reply, None)
            answer, parsed = read_reply(without_bible, n, mode)
            answer = split_reasoning(reply.content)[1] if bible_data is not None else answer
            judged = self._judge(parsed, bible_data, wording, request, template_bible)
            transcript.append(
                format_attempt(attempt, total, mode, reply, parsed, repair_request, judged.usable, judged.problems)
            )
            notes.extend(f"attempt {attempt}: {note}" for note in parsed.notes)

            # Later answers win ties: they were written knowing the earlier problems.
            if best is None or judged.rank >= best.rank:
                best = judged
            if not judged.problems:
                break
            notes.append(f"attempt {attempt}: " + "; ".join(judged.problems))
            if attempt < total:
                repair_request = self._repair_request(judged.problems, n, judged.cast)
                messages = [{"role": "user", "content": prompt}]
                if answer:
                    messages.append({"role": "assistant", "content": answer})
                messages.append({"role": "user", "content": repair_request})
        assert best is not None  # the first attempt either answered or raised

        # 3. The bible: the model's fields where usable, the template's bible for the rest (and
        #    all of it in free-text mode). The user's characters always win.
        bible, bible_notes = parse_bible(best.bible, template_bible) if mode == "structured" else (template_bible, [])
        notes.extend(bible_notes)
        warnings = []
        if best.bible_reasons:
            fields = [
                key for key in ("characters", "setting", "lighting", "camera", "palette") if key in best.bible_reasons
            ]
            warnings.append(
                f"the bible's {', '.join(fields)} {'is' if len(fields) == 1 else 'are'} the template's, not the "
                f"model's ({model}): " + "; ".join(best.bible_reasons.values())
            )

        # 4. Scenes still unusable come from the fallback writer; the model's usable scenes stay.
        #    It writes about the bible's lead character, so that its scenes name the same cast.
        missing = [i + 1 for i in range(n) if i not in best.usable]
        fallback_result = None
        if missing:
            if self.fallback is None:
                raise LLMScriptError(
                    f"the LLM at {self.base_url} ({model}) left {numbered('scene', missing)} unwritten "
                    f"after {len(transcript)} attempts and there is no fallback writer ({notes[-1]})"
                )
            fallback_name = getattr(self.fallback, "name", type(self.fallback).__name__)
            logger.info("LLM script unusable after %d attempts; %s fills %s", len(transcript), fallback_name, missing)
            notes.append(f"{numbered('scene', missing)} written by the fallback writer '{fallback_name}'")
            fallback_request = request
            if bible.characters != template_bible.characters:
                lead = bible.characters[0]
                fallback_request = dataclasses.replace(request, characters=f"{lead.name}, {lead.description}")
            fallback_result = self.fallback(fallback_request)
            if len(fallback_result.scenes) != n:
                raise SoundsightError(
                    f"the fallback writer '{fallback_name}' returned {len(fallback_result.scenes)} scenes for {n} segments"
                )
            why = "; ".join(best.problems[:MAX_REASONS_IN_WARNING]) or "no answer"
            warnings.insert(
                0,
                f"{len(missing)} of {n} scenes are the {fallback_name} writer's, not the model's ({model}), "
                f"after {len(transcript)} attempt{'s' if len(transcript) != 1 else ''}: {why}",
            )
        scenes = merge_scenes(request.durations, best.usable, fallback_result.scenes if fallback_result else None)

        # 5. Characters: the user's, else those the model described (structured mode) when that
        #    text is usable. Style: the visual guidelines the prompt gave the model. When no
        #    scene of the model's survived, the fallback's own characters and style match its
        #    scenes better.
        if fallback_result is not None and not best.usable:
            characters, style = fallback_result.characters, fallback_result.style
        else:
            described = best.parsed.characters if not text_problem(best.parsed.characters, wording) else ""
            characters = request.characters.strip() or described or subject_phrase(bible).rstrip(",")
            style = style_sentence(request.analysis)

        return ScriptResult(
            scenes=scenes,
            characters=characters,
            style=style,
            raw_response="\n\n".join(transcript),
            notes=notes,
            bible=bible,
            warnings=warnings,
        )

    def _judge(
        self, parsed: ParsedScript, bible_data: dict | None, wording: str, request: ScriptRequest, template: VisualBible
    ) -> _Answer:
        """One answer's usable scenes and bible, and everything wrong with it.

        The bible is judged first: the scenes must name its characters, which are the user's when
        given, else the model's own when usable, else the template's (the re-ask then names them).
        In free-text mode without the user's characters the model never hears of any cast, so
        scenes are not asked to name one.
        """
        bible, bible_reasons = bible_problems(bible_data, wording) if isinstance(bible_data, dict) else (bible_data, {})
        if request.characters.strip() and isinstance(bible, dict):
            bible = {key: value for key, value in bible.items() if key != "characters"}
            bible_reasons.pop("characters", None)
        if request.characters.strip() or self.settings.llm_output == "structured":
            own = parse_bible(bible, template)[0].characters if isinstance(bible, dict) else template.characters
            cast: list[Character] | None = own
        else:
            cast = None
        judgement = judge_scenes(parsed.scenes, wording, cast)
        who = ", ".join(c.name or c.description for c in cast or [])
        problems = parsed.problems + judgement.problems(who) + list(bible_reasons.values())
        return _Answer(parsed, judgement.usable, bible, bible_reasons, cast, problems)

    # -- helpers, in the order __call__ uses them ----------------------------------------------

    def _json_instruction(self, n: int) -> str:
        return (
            "Answer with one JSON object only, no BEGIN SCRIPT or SCENE lines: "
            '{"characters": "<the characters, described once>", "scenes": [{"description": '
            f'"<scene 1 in one sentence>"}}, ...], "bible": {{...}}}} with exactly {n} entries in "scenes", in order, '
            f"each at most {self.max_scene_chars} characters. "
            '"bible" fixes the look of every scene: "characters" (each a "name" and one physical '
            '"description" repeated word for word in every scene), "setting", "lighting", "camera" '
            '(lens and camera style) and "palette" (4 to 6 colours, each a "name" and a "hex" like "#1a2b3c").'
        )

    def _chat(self, messages: list[dict], n: int, *, seed: int, notes: list[str]) -> Reply:
        """One chat completion of `messages` with this run's sampling (and schema, in structured mode)."""
        s = self.settings
        request: dict = dict(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=seed)
        if s.llm_output == "structured":
            schema = script_json_schema(
                n, max_scene_chars=self.max_scene_chars, max_character_chars=self.max_character_chars
            )
            schema["properties"]["bible"] = bible_json_schema(max_chars=self.max_character_chars)
            schema["required"] = [*schema["required"], "bible"]
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "scene_script", "schema": schema, "strict": True},
            }
        return self.chat.complete(messages, notes=notes, **request)

    def _repair_request(self, problems: list[str], n: int, cast: list[Character] | None) -> str:
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
        who = ""
        if cast:
            names = "; ".join(f"{c.name} ({c.description})" if c.name else c.description for c in cast)
            who = f" Every scene says, in your own words, what one of these characters does and where: {names}."
        return "Your answer cannot be used: " + "; ".join(problems) + ". " + how + who


def _take_bible(reply: Reply) -> tuple[Reply, dict | None]:
    """The reply without its JSON answer's ``bible`` member, and that member (None when absent)."""
    _, answer = split_reasoning(reply.content)
    start, end = answer.find("{"), answer.rfind("}")
    try:
        data = json.loads(answer[start : end + 1], strict=False) if 0 <= start < end else None  # as parse_structured
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "bible" not in data:
        return reply, None
    bible = data.pop("bible")
    return dataclasses.replace(reply, content=json.dumps(data)), bible if isinstance(bible, dict) else {}


class LLMBackend:
    """``script.backend = llm``: the LLM at ``script.llm_base_url`` (`models.base.ScriptWriterBackend`).

    The template writer fills the scenes it does not deliver.
    """

    name = "llm"
    concurrency_limit = CONCURRENCY_LIMIT
    unavailable_hint = DEFAULT_HINT

    def writer(self, settings: ScriptSettings) -> LLMScriptWriter:
        """The LLM writer at the settings' endpoint, with the template writer as its fallback."""
        return LLMScriptWriter(settings, fallback=TemplateScriptWriter(), unavailable_hint=self.unavailable_hint)

    def endpoint(self, settings: ScriptSettings) -> ChatEndpoint | None:
        """``script.llm_base_url``."""
        return settings.chat_endpoint()


class LLMSceneWriterBackend(LLMBackend):
    """``script.scene_writer = llm``: the pipeline-1 LLM splits the story (`models.base.SceneWriterBackend`)."""

    credit = "lalm+llm"  # the audio-language model's story, the LLM's scenes
    scene_source = "llm"

    def script_settings(self, settings: Settings) -> ScriptSettings:
        """The ``script`` settings, ``backend`` pinned: changing pipeline 1's writer does not re-split a story."""
        return settings.script.model_copy(update={"backend": "llm"})


BACKEND = LLMBackend()
SCENE_WRITER = LLMSceneWriterBackend()
