"""Pipeline 2: an audio-language model (LALM) listens to the song and writes the story.

The paper's second pipeline (section 3.2, supplementary Blocks 4-5) gives the raw song to an
LALM, asks it for "a concise short story or narrative arc that thematically and emotionally
aligns with the given song", then has a model break the story into one scene per pre-cut
segment. This module is the listening half (`LALMStoryWriter`, hearing the song as
`listening.plan_listening` says) and the ``lalm`` scene writer (`SCENE_WRITER`): the LLM script
writer (`llm.LLMScriptWriter`: JSON schema with exactly N scenes, bounded repairs, per-scene
fallback) pointed at the LALM, answering the prompt of `story_to_scenes.scene_prompt`. No
Prefect here.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from typing import Unpack

import numpy as np

from soundsight.models.base import ScriptWriter
from soundsight.models.script.answers import split_reasoning
from soundsight.models.script.chat import ChatClient, ChatTransport, Reply, ServedModel
from soundsight.models.script.listening import ModelLimit, audio_limit, audio_part, clock, plan_listening
from soundsight.models.script.llm import LLMScriptWriter
from soundsight.models.script.template import TemplateScriptWriter
from soundsight.prompts import template_hash, template_text
from soundsight.schemas import ListeningPlan, ListeningWindow
from soundsight.settings import ChatEndpoint, LALMSettings, ScriptSettings, Settings

__all__ = [
    "CONCURRENCY_LIMIT",
    "SCENE_WRITER",
    "STORY_VERSION",
    "UNAVAILABLE_HINT",
    "Heard",
    "LALMStoryWriter",
    "StoryRequest",
    "StoryResult",
]

logger = logging.getLogger(__name__)

# Bump when prompting or answer handling changes what a given model answer turns into: part of
# the story's cache key.
STORY_VERSION = "1"
STORY_PROMPTS = "lalm_story.toml"
STORY_ATTEMPTS = 2  # an empty story is asked for once more, then the scenes are written without one
UNAVAILABLE_HINT = (
    "Start the audio-language model's server (docs/lalm.md has the `vllm serve` line for each model) "
    "or point lalm.base_url at a running one."
)
# Requests to the audio-language model, from every run and worker, are capped by this Prefect global
# concurrency limit (`prefect gcl create lalm --limit N`); without it, they are not capped.
CONCURRENCY_LIMIT = "lalm"


# -- the story -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoryRequest:
    """What the story writer hears and is told.

    audio : the whole song, mono float32 at 16 kHz (`to_lalm_rate`).
    plan : from `plan_listening`.
    characters, story_cues : the user's (``script.characters``, ``script.story_cues``).
    """

    audio: np.ndarray
    plan: ListeningPlan
    characters: str = ""
    story_cues: str = ""


@dataclass
class Heard:
    """One request and its answer.

    what : ``"window 1 of 2 (0:00-7:04)"`` or ``"story"``.
    prompt : the request's text (the audio is described by `audio`).
    audio : the stretch of the song attached, or None.
    reply : everything the server sent back.
    answer : the reply's text without reasoning, cleaned.
    """

    what: str
    prompt: str
    audio: ListeningWindow | None
    reply: Reply
    answer: str


@dataclass
class StoryResult:
    """The story, the window descriptions it was written from, and every request made."""

    story: str
    windows: list[str]
    prompt: str  # the story request's text
    heard: list[Heard] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def transcript(self) -> str:
        """Every request of the stage, in order, as it goes into ``listen/response.txt``."""
        parts = []
        for k, h in enumerate(self.heard, 1):
            audio = f"{clock(h.audio.start)}-{clock(h.audio.end)} ({h.audio.seconds:.1f} s)" if h.audio else "none"
            usage = (
                f"tokens {h.reply.prompt_tokens} prompt + {h.reply.completion_tokens} completion"
                if h.reply.prompt_tokens is not None
                else "tokens unknown"
            )
            lines = [
                f"===== request {k} of {len(self.heard)} | {h.what} | model {h.reply.model} | audio {audio} "
                f"| finish_reason {h.reply.finish_reason or '?'} | {usage} =====",
                "----- prompt -----",
                h.prompt,
            ]
            if h.reply.reasoning.strip():
                lines += ["----- reasoning (separate field from the server) -----", h.reply.reasoning.strip()]
            lines += ["----- content (as received) -----", h.reply.content]
            parts.append("\n".join(lines))
        parts += [f"note: {note}" for note in self.notes]
        return "\n\n".join(parts) + "\n"


def _clean_prose(text: str) -> str:
    """Printable text, paragraphs kept, lines stripped (random or weak models emit control bytes)."""
    text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    paragraphs = [" ".join(p.split()) for p in text.replace("\r", "").split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p).strip()


class LALMStoryWriter:
    """Listens to a song through an OpenAI-compatible endpoint and writes the story (pipeline 2).

    Parameters
    ----------
    settings : LALMSettings
        Endpoint, model, audio limit, windowing, sampling and timeout.
    **transport : `chat.ChatTransport`
        Transport retries per request (``retries``, ``backoff_seconds``, ``max_backoff_seconds``),
        and ``client``, an ``openai.OpenAI`` client to use instead of building one from `settings`.
    """

    name = "lalm"

    def __init__(self, settings: LALMSettings, **transport: Unpack[ChatTransport]):
        self.settings = settings
        self.chat = ChatClient(**settings.chat_endpoint(), unavailable_hint=UNAVAILABLE_HINT, **transport)

    # -- identity and plan -----------------------------------------------------------------------

    def served_model(self) -> ServedModel:
        """The answering model's id and root (asked once, see `chat.ChatClient.served_model`)."""
        return self.chat.served_model()

    @property
    def story_id(self) -> str:
        """Served model (id and root), story prompts' hash and `STORY_VERSION`: part of cache keys."""
        served = self.served_model()
        prompts = template_hash(STORY_PROMPTS)[:16]
        return f"openai-audio-chat:{served.id}@{served.root or '?'}|story-prompts={prompts}|story-v{STORY_VERSION}"

    def limit(self) -> ModelLimit:
        """The longest audio one request carries (setting, else the model table)."""
        served = self.served_model()
        return audio_limit(served.id, served.root, self.settings.max_audio_seconds)

    def plan(self, pcm: np.ndarray, sr: int, boundaries: list[float]) -> ListeningPlan:
        """`plan_listening` for this model and these settings.

        Parameters
        ----------
        pcm, sr, boundaries
            The song (mono float32 numpy array at `sr` Hz) and its segment boundaries (list of
            float, seconds), as `plan_listening` takes them.
        """
        return plan_listening(
            served=self.served_model(),
            limit=self.limit(),
            pcm=pcm,
            sr=sr,
            boundaries=boundaries,
            settings=self.settings,
        )

    # -- listening ---------------------------------------------------------------------------------

    def __call__(self, request: StoryRequest) -> StoryResult:
        """Hear the song as `request.plan` says and write the story.

        Raises `LLMUnavailableError` when the server stays unreachable and `LLMRequestError` when
        it refuses a request (audio too long for its settings, unknown model): a story is worth
        an error that says what to fix rather than a silent replacement.
        """
        plan, prompts = request.plan, self._prompts()
        notes: list[str] = []
        heard: list[Heard] = []
        duration = clock(plan.duration)
        descriptions: list[str] = []

        # 1. Long songs: one description per window.
        if plan.mode == "windows":
            for k, window in enumerate(plan.windows):
                text = prompts["window"].format(
                    part=k + 1,
                    parts=len(plan.windows),
                    duration=duration,
                    start=clock(window.start),
                    end=clock(window.end),
                )
                what = f"window {k + 1} of {len(plan.windows)} ({clock(window.start)}-{clock(window.end)})"
                h = self._ask(request.audio, window, text, what, self.settings.window_max_tokens, k + 1, notes)
                heard.append(h)
                if not h.answer:
                    notes.append(f"{what}: the model described nothing")
                descriptions.append(h.answer or "(no description)")

        # 2. The story: from the whole song, its beginning, or the descriptions and an excerpt.
        if plan.mode == "windows":
            excerpt = plan.excerpt
            listening = prompts["listening_windows"].format(
                duration=duration,
                descriptions="\n\n".join(
                    f"Part {k + 1} ({clock(w.start)} to {clock(w.end)}): {text}"
                    for k, (w, text) in enumerate(zip(plan.windows, descriptions))
                ),
                excerpt=prompts["excerpt"].format(start=clock(excerpt.start), end=clock(excerpt.end))
                if excerpt
                else "",
            )
            audio = excerpt
        elif plan.mode == "truncated":
            listening = prompts["listening_truncated"].format(heard=clock(plan.windows[0].end), duration=duration)
            audio = plan.windows[0]
            notes.append(f"windowing is off: the model heard only 0:00-{clock(plan.windows[0].end)} of {duration}")
        else:
            listening = prompts["listening_whole"].format(duration=duration)
            audio = plan.windows[0]
        if request.characters.strip():
            characters = prompts["characters_given"].format(characters=request.characters.strip())
        else:
            characters = prompts["characters_free"]
        prompt = prompts["story"].format(
            listening=listening.strip(),
            additional_prompt=request.story_cues.strip(),
            character_instruction=characters,
        )
        story = ""
        for attempt in range(STORY_ATTEMPTS):
            h = self._ask(request.audio, audio, prompt, "story", self.settings.max_tokens, 1000 * attempt, notes)
            heard.append(h)
            story = h.answer
            if story:
                break
            notes.append(f"story attempt {attempt + 1}: the answer held no story")
        if story and heard[-1].reply.finish_reason == "length":
            notes.append("the story was cut off by lalm.max_tokens")
        return StoryResult(story=story, windows=descriptions, prompt=prompt, heard=heard, notes=notes)

    @staticmethod
    def _prompts() -> dict[str, str]:
        return tomllib.loads(template_text(STORY_PROMPTS))

    def _ask(
        self,
        audio16k: np.ndarray,
        window: ListeningWindow | None,
        text: str,
        what: str,
        max_tokens: int,
        seed_offset: int,
        notes: list[str],
    ) -> Heard:
        content: list[dict] = [audio_part(audio16k, window)] if window is not None else []
        content.append({"type": "text", "text": text})
        s = self.settings
        reply = self.chat.complete(
            [{"role": "user", "content": content}],
            notes=notes,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=max_tokens,
            seed=s.seed + seed_offset,
        )
        _, answer = split_reasoning(reply.content)
        logger.info("%s: %s prompt tokens", what, reply.prompt_tokens)
        return Heard(what=what, prompt=text, audio=window, reply=reply, answer=_clean_prose(answer))


class LALMSceneWriterBackend:
    """``script.scene_writer = lalm``: the audio-language model splits its own story (`models.base.SceneWriterBackend`).

    A text request to ``lalm.base_url`` through the LLM script writer; the template writer fills the
    scenes it does not deliver.
    """

    name = "lalm"
    credit = "lalm"
    scene_source = "lalm"  # the LALM wrote them: say so in script.json
    concurrency_limit = CONCURRENCY_LIMIT
    unavailable_hint = UNAVAILABLE_HINT

    def script_settings(self, settings: Settings) -> ScriptSettings:
        """The ``script`` settings pointed at the audio-language model's endpoint, ``backend`` pinned."""
        lalm = settings.lalm
        return settings.script.model_copy(
            update={
                "backend": "llm",
                "llm_base_url": lalm.base_url,
                "llm_api_key": lalm.api_key,
                "llm_model": lalm.model,
            }
        )

    def writer(self, settings: ScriptSettings) -> ScriptWriter:
        """The LLM writer at the audio-language model's endpoint, with the template writer as its fallback."""
        return LLMScriptWriter(settings, fallback=TemplateScriptWriter(), unavailable_hint=self.unavailable_hint)

    def endpoint(self, settings: ScriptSettings) -> ChatEndpoint | None:
        """``lalm.base_url`` (as `script_settings` put it)."""
        return settings.chat_endpoint()


SCENE_WRITER = LALMSceneWriterBackend()
