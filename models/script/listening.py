"""How an audio-language model hears a song: its audio limit, the listening plan, the audio it is sent.

Pipeline 2 (`models.script.lalm`) gives the raw song to an audio-language model. Each model hears
at most so many seconds per request (`audio_limit`, from ``prompts/lalm_models.toml`` or
``lalm.max_audio_seconds``). A longer song is described window by window - windows end on segment
boundaries, so no window splits a scene - and the story is then written from those descriptions
plus a short excerpt (the loudest passage). The plan (`plan_listening`, a `ListeningPlan`) is made
before any request and is part of the story's cache key.

Audio goes to any OpenAI-compatible server as an ``input_audio`` content part: 16 kHz mono
PCM-16 WAV, base64. 16 kHz because every supported model's feature extractor works at that
rate (the vLLM CPU build cannot resample: it fails with a misleading HTTP 500 on other rates);
PCM-16 because vLLM caps a clip at 25 MiB (600 s of PCM-16 is 18.3 MiB; float32 would be cut at
~409 s). No Prefect here.
"""

from __future__ import annotations

import base64
import io
import math
import tomllib
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf

from soundsight.models.script.chat import ServedModel
from soundsight.prompts import template_text
from soundsight.schemas import ListeningPlan, ListeningWindow
from soundsight.settings import LALMSettings

__all__ = [
    "LALM_SAMPLE_RATE",
    "ModelLimit",
    "audio_limit",
    "audio_part",
    "clock",
    "loudest_passage",
    "plan_listening",
    "to_lalm_rate",
    "wav_base64",
    "window_bounds",
]

LALM_SAMPLE_RATE = 16000  # Hz: what every supported model's feature extractor expects
MODEL_TABLE = "lalm_models.toml"


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


def audio_part(pcm16k: np.ndarray, window: ListeningWindow) -> dict:
    """`window` of the 16 kHz song as an ``input_audio`` content part of a chat request."""
    a, b = int(round(window.start * LALM_SAMPLE_RATE)), int(round(window.end * LALM_SAMPLE_RATE))
    return {"type": "input_audio", "input_audio": {"data": wav_base64(pcm16k[a:b]), "format": "wav"}}


def clock(seconds: float) -> str:
    """``m:ss`` (rounded to the second), how prompts state times."""
    whole = int(round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"
