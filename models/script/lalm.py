"""Pipeline 2: an audio-language model (LALM) listens to the song and writes the story.

The paper's second pipeline (section 3.2, supplementary Blocks 4-5) gives the raw song to an
LALM, asks it for "a concise short story or narrative arc that thematically and emotionally
aligns with the given song", then has a model break the story into one scene per pre-cut
segment. This module is the listening half and the scene prompt; the splitting reuses the LLM
script writer (`llm.LLMScriptWriter`: JSON schema with exactly N scenes, bounded repairs,
per-scene fallback), pointed at the LALM or at the pipeline-1 LLM. No Prefect here.

Audio goes to any OpenAI-compatible server as an ``input_audio`` content part: 16 kHz mono
PCM-16 WAV, base64. 16 kHz because every supported model's feature extractor works at that
rate (the vLLM CPU build cannot resample: it fails with a misleading HTTP 500 on other rates);
PCM-16 because vLLM caps a clip at 25 MiB (600 s of PCM-16 is 18.3 MiB; float32 would be cut at
~409 s).

Long songs: each model hears at most so many seconds per request (`audio_limit`, from
``prompts/lalm_models.toml`` or ``lalm.max_audio_seconds``). A longer song is described window
by window - windows end on segment boundaries, so no window splits a scene - and the story is
then written from those descriptions plus a short excerpt (the loudest passage). The plan
(`plan_listening`, a `ListeningPlan`) is made before any request and is part of the story's
cache key.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import tomllib
from dataclasses import dataclass, field
from functools import cache
from typing import Unpack

import numpy as np
import soundfile as sf

from soundsight.models.script.answers import split_reasoning
from soundsight.models.script.chat import ChatClient, ChatTransport, Reply, ServedModel
from soundsight.prompts import character_instruction, lyrics_sentence, sung_here, template_hash, template_text
from soundsight.schemas import Analysis, ListeningPlan, ListeningWindow, Segmentation
from soundsight.settings import LALMSettings

__all__ = [
    "LALM_SAMPLE_RATE",
    "STORY_VERSION",
    "Heard",
    "LALMStoryWriter",
    "ModelLimit",
    "StoryRequest",
    "StoryResult",
    "audio_limit",
    "clock",
    "loudest_passage",
    "plan_listening",
    "scene_prompt",
    "segment_levels",
    "to_lalm_rate",
    "wav_base64",
    "window_bounds",
]

logger = logging.getLogger(__name__)

LALM_SAMPLE_RATE = 16000  # Hz: what every supported model's feature extractor expects
# Bump when prompting or answer handling changes what a given model answer turns into: part of
# the story's cache key.
STORY_VERSION = "1"
STORY_PROMPTS = "lalm_story.toml"
SCENES_PROMPT = "lalm_scenes.txt"
MODEL_TABLE = "lalm_models.toml"
STORY_ATTEMPTS = 2  # an empty story is asked for once more, then the scenes are written without one
UNAVAILABLE_HINT = (
    "Start the audio-language model's server (docs/lalm.md has the `vllm serve` line for each model) "
    "or point lalm.base_url at a running one."
)


# -- which model hears how much ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelLimit:
    """The longest audio one request may carry, seconds, and where that number comes from."""

    seconds: float
    source: str


@cache
def _model_table() -> dict:
    return tomllib.loads(template_text(MODEL_TABLE))


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def audio_limit(model_id: str, root: str = "", override: float = 0.0) -> ModelLimit:
    """The longest audio one request to this model may carry.

    Parameters
    ----------
    model_id : str
        The served model's id (vLLM: ``--served-model-name``, else the hub id or folder).
    root : str
        What the server loaded (vLLM's ``root``: hub id or checkpoint folder), matched too.
    override : float
        ``lalm.max_audio_seconds``, seconds; above 0 it wins over the table.

    Returns
    -------
    ModelLimit
        Seconds, and the table row, setting or default that gave them.
    """
    if override > 0:
        return ModelLimit(float(override), "setting lalm.max_audio_seconds")
    table = _model_table()
    names = [_normalise(name) for name in (model_id, root) if name]
    for row in table["model"]:
        if any(_normalise(pattern) in name for pattern in row["match"] for name in names):
            return ModelLimit(
                float(row["max_audio_seconds"]), f"prompts/{MODEL_TABLE}, row {row['name']}: {row['limited_by']}"
            )
    default = float(table["default"])
    return ModelLimit(
        default,
        f"{model_id} is not in prompts/{MODEL_TABLE}: {default:g} s assumed (set lalm.max_audio_seconds)",
    )


def window_bounds(duration: float, boundaries: list[float], longest: float) -> list[ListeningWindow]:
    """Cut ``[0, duration]`` into the fewest windows of at most `longest` seconds, on `boundaries`.

    Parameters
    ----------
    duration : float
        The song's length, seconds.
    boundaries : list of float
        Where cuts may fall (segment boundaries), seconds.
    longest : float
        Longest window, seconds.

    Returns
    -------
    list of ListeningWindow
        Contiguous windows from 0 to `duration`, of about equal length: with ``k`` windows, cut
        ``i`` falls on the boundary nearest ``i * duration / k`` that keeps every window within
        `longest`. Only where no boundary lies within reach (a segment longer than `longest`)
        does a window end between boundaries.
    """
    if longest <= 0:
        raise ValueError(f"a listening window must be longer than 0 s, got {longest}")
    if duration <= longest:
        return [ListeningWindow(start=0.0, end=duration)]
    inner = sorted(b for b in set(boundaries) if 0.0 < b < duration)
    for k in range(math.ceil(duration / longest), 4 * math.ceil(duration / longest) + 2):
        cuts, previous = [], 0.0
        for i in range(1, k):
            reach = [b for b in inner if previous < b <= previous + longest]
            ideal = i * duration / k
            cut = min(reach, key=lambda b: (abs(b - ideal), b)) if reach else previous + longest
            cuts.append(cut)
            previous = cut
        if duration - previous <= longest + 1e-9:
            edges = [0.0, *cuts, duration]
            return [ListeningWindow(start=a, end=b) for a, b in zip(edges, edges[1:]) if b > a]
    raise AssertionError("unreachable: a greedy cut at `longest` always succeeds")  # pragma: no cover


def loudest_passage(pcm: np.ndarray, sr: int, boundaries: list[float], seconds: float) -> ListeningWindow:
    """The loudest stretch of at most `seconds` that starts and ends on `boundaries`.

    Parameters
    ----------
    pcm : numpy.ndarray
        The song, mono float32.
    sr : int
        Its sample rate, Hz.
    boundaries : list of float
        Segment boundaries, seconds, including 0 and the song's end.
    seconds : float
        Longest passage, seconds.

    Returns
    -------
    ListeningWindow
        Of the runs of whole segments that last at least three quarters of `seconds` (a single
        segment longer than `seconds` is cut to it), the one with the highest mean power; ties
        go to the earliest.
    """
    duration = len(pcm) / sr
    edges = sorted({0.0, duration, *(b for b in boundaries if 0.0 < b < duration)})
    power = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    passages = []
    for i, start in enumerate(edges[:-1]):
        ends = [e for e in edges[i + 1 :] if e - start <= seconds + 1e-9] or [min(edges[i + 1], start + seconds)]
        passages.append(ListeningWindow(start=start, end=ends[-1]))
    # Mean power favours a short loud burst over a full-length passage: only passages of nearly
    # the full length compete (all of them when none is that long).
    full = [p for p in passages if p.seconds >= 0.75 * min(seconds, duration)] or passages
    best, best_power = None, -1.0
    for passage in full:
        a = int(passage.start * sr)
        b = min(len(pcm), max(a + 1, int(passage.end * sr)))
        mean = (power[b] - power[a]) / max(1, b - a)
        if mean > best_power + 1e-12:
            best, best_power = passage, mean
    assert best is not None
    return best


def plan_listening(
    *,
    served: ServedModel,
    limit: ModelLimit,
    pcm: np.ndarray,
    sr: int,
    boundaries: list[float],
    settings: LALMSettings,
) -> ListeningPlan:
    """How the model will hear the song: whole, window by window, or (windowing off) its beginning.

    Parameters
    ----------
    served : ServedModel
        The answering model (id and root go into the plan, so into the story's cache key).
    limit : ModelLimit
        From `audio_limit`.
    pcm : numpy.ndarray
        The song, mono float32 (used to find the excerpt's loudest passage).
    sr : int
        Its sample rate, Hz.
    boundaries : list of float
        Segment boundaries, seconds.
    settings : LALMSettings
        ``windowing``, ``window_seconds``, ``excerpt_seconds``.

    Returns
    -------
    ListeningPlan
        A song within the limit is heard whole, whatever the segments: its plan (and so the story)
        does not change when only the segmentation does.
    """
    duration = round(len(pcm) / sr, 3)
    common = dict(
        model=served.id,
        model_root=served.root,
        limit_seconds=limit.seconds,
        limit_source=limit.source,
        duration=duration,
    )
    if duration <= limit.seconds:
        return ListeningPlan(**common, mode="whole", windows=[ListeningWindow(start=0.0, end=duration)])
    if settings.windowing == "off":
        return ListeningPlan(**common, mode="truncated", windows=[ListeningWindow(start=0.0, end=limit.seconds)])
    longest = min(limit.seconds, settings.window_seconds or limit.seconds)
    windows = [
        ListeningWindow(start=round(w.start, 3), end=round(w.end, 3))
        for w in window_bounds(duration, boundaries, longest)
    ]
    excerpt = None
    if settings.excerpt_seconds > 0:
        found = loudest_passage(pcm, sr, boundaries, min(settings.excerpt_seconds, limit.seconds))
        excerpt = ListeningWindow(start=round(found.start, 3), end=round(found.end, 3))
    return ListeningPlan(**common, mode="windows", windows=windows, excerpt=excerpt)


# -- audio as the server takes it ----------------------------------------------------------------


def to_lalm_rate(pcm: np.ndarray, sr: int) -> np.ndarray:
    """The song resampled to 16 kHz mono float32 (polyphase filter, exact rational ratio).

    Parameters
    ----------
    pcm : numpy.ndarray
        Mono samples, float, any rate.
    sr : int
        Their sample rate, Hz.

    Returns
    -------
    numpy.ndarray
        Mono float32 at `LALM_SAMPLE_RATE` (16,000 Hz).
    """
    pcm = np.asarray(pcm, dtype=np.float32)
    if sr == LALM_SAMPLE_RATE:
        return pcm
    from scipy.signal import resample_poly

    g = math.gcd(LALM_SAMPLE_RATE, sr)
    return resample_poly(pcm, LALM_SAMPLE_RATE // g, sr // g).astype(np.float32)


def wav_base64(pcm16k: np.ndarray) -> str:
    """16 kHz mono samples as a base64 PCM-16 WAV file (what an ``input_audio`` part carries).

    Parameters
    ----------
    pcm16k : numpy.ndarray
        Mono float samples at 16 kHz, nominally in [-1, 1] (clipped there).

    Returns
    -------
    str
        Base64 of the WAV file's bytes: 32,000 bytes per second of audio before encoding.
    """
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(pcm16k, -1.0, 1.0), LALM_SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _audio_part(pcm16k: np.ndarray, window: ListeningWindow) -> dict:
    a, b = int(round(window.start * LALM_SAMPLE_RATE)), int(round(window.end * LALM_SAMPLE_RATE))
    return {"type": "input_audio", "input_audio": {"data": wav_base64(pcm16k[a:b]), "format": "wav"}}


def clock(seconds: float) -> str:
    """``m:ss`` (rounded to the second), how prompts state times."""
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


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
        content: list[dict] = [_audio_part(audio16k, window)] if window is not None else []
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


# -- from story to scenes ------------------------------------------------------------------------

_REASONS = {
    "novelty": "ends where the sound changes",
    "beat_count": "ends after its run of beats",
    "max_length": "ends at the longest scene length",
    "random": "ends on a random cut",
    "end": "ends with the song",
    "start": "ends on a cut",
}


def segment_levels(pcm: np.ndarray, sr: int, segmentation: Segmentation) -> list[float]:
    """Each segment's loudness relative to the loudest segment, dB (0 for the loudest).

    Parameters
    ----------
    pcm : numpy.ndarray
        The song, mono float.
    sr : int
        Its sample rate, Hz.
    segmentation : Segmentation
        The cut (``segments.json``).

    Returns
    -------
    list of float
        One value per segment, dB, at most 0 (floored at -60).
    """
    power = []
    for seg in segmentation.segments:
        part = pcm[int(seg.start * sr) : max(int(seg.start * sr) + 1, int(seg.end * sr))]
        power.append(float(np.mean(np.square(part, dtype=np.float64))) if len(part) else 0.0)
    top = max(power) if power and max(power) > 0 else 1.0
    return [max(-60.0, 10 * math.log10(p / top)) if p > 0 else -60.0 for p in power]


def _segment_line(seg, downbeats: list[float], level_db: float, labels: list[str]) -> str:
    inside = [t - seg.start for t in downbeats if seg.start <= t < seg.end]
    beats = f"{len(seg.beats)} beat{'s' if len(seg.beats) != 1 else ''}"
    if inside:
        beats += ", downbeats at " + ", ".join(f"+{t:.1f} s" for t in inside[:8])
    line = (
        f"Scene {seg.index + 1}: starts at {clock(seg.start)} ({seg.start:.1f} s), lasts {seg.duration:.2f} s; "
        f"{beats}; loudness {int(round(level_db)):+d} dB; {_REASONS.get(seg.reason, 'ends on a cut')}."
    )
    if labels:
        line += " " + ". ".join(labels) + "."
    return line


def scene_prompt(
    *,
    story: str,
    segmentation: Segmentation,
    levels_db: list[float],
    characters: str = "",
    story_cues: str = "",
    sung: list[str] | None = None,
    themes: list[str] | None = None,
    analysis: Analysis | None = None,
) -> str:
    """The story-to-scenes prompt (``prompts/lalm_scenes.txt``): the story and every segment.

    Parameters
    ----------
    story : str
        The LALM's story (empty: the prompt says none was written).
    segmentation : Segmentation
        Segments (start, duration, beats, why each ends), downbeats and tempo.
    levels_db : list of float
        Per segment, loudness relative to the loudest, dB (`segment_levels`).
    characters : str
        The user's characters; empty: the story's.
    story_cues : str
        Extra instructions (the paper's ``additional_prompt``).
    sung, themes : list of str, optional
        Per segment, the words sung in it; the lyrics' frequent words (from the lyrics stage).
    analysis : Analysis, optional
        Labels (``pipeline_2_analysis``): each segment's and the whole track's.

    Returns
    -------
    str
        The prompt; the scene writer adds its output instructions (JSON or ``SCENE #:``).
    """
    segments = segmentation.segments
    if len(levels_db) != len(segments):
        raise ValueError("one loudness per segment")
    per_segment: list[list[str]] = [[] for _ in segments]
    labels = ""
    if analysis is not None:
        for seg_labels in analysis.segments:
            if 0 <= seg_labels.index < len(segments):
                per_segment[seg_labels.index] = [label.sentence() for label in seg_labels.labels.values()]
        whole = [label.sentence() for label in analysis.track.values()]
        visual = [label.sentence() for label in analysis.visual.values()]
        labels = (
            "When listening to the entire song, it can be described like this: "
            + ". ".join(whole)
            + ".\nEach scene needs to visually match the following guidelines: "
            + ". ".join(visual)
            + ".\n"
        )
    lines = [
        _segment_line(seg, segmentation.downbeats, level, per_segment[i]) + sung_here(sung, i)
        for i, (seg, level) in enumerate(zip(segments, levels_db))
    ]
    if sung and any(s.strip() for s in sung):
        labels += lyrics_sentence(themes) + "\n"
    who = character_instruction(
        characters,
        "Keep the story's characters, and repeat each one's description, word for word, in every scene they appear in.",
    )
    return template_text(SCENES_PROMPT).format(
        additional_prompt=story_cues.strip(),
        story=story.strip() or "(The audio-language model wrote no story: invent one that fits the segments below.)",
        number_of_scenes=len(segments),
        duration=clock(segmentation.duration),
        tempo=f" at about {segmentation.tempo_bpm:.0f} BPM" if segmentation.tempo_bpm else "",
        scene_descriptions="\n".join(lines),
        labels=labels,
        character_instruction=who,
    )


def scenes_prompt_hash() -> str:
    """sha256 of the scene prompt template: part of the script stage's cache key in pipeline 2."""
    return template_hash(SCENES_PROMPT)
