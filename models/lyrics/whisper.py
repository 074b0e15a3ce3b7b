"""Whisper through transformers, found on this machine and loaded once per process. No Prefect here.

Any Whisper checkpoint in transformers' format works (`WhisperForConditionalGeneration` with its
processor): ``openai/whisper-large-v3-turbo`` (default, MIT licence), ``openai/whisper-large-v3``,
``distil-whisper/...``, a fine-tune, or a local folder. Word times come from the pipeline's
``return_timestamps="word"`` (cross-attention alignment over the checkpoint's
``alignment_heads``); a checkpoint without alignment heads falls back to Whisper's segment times
with words spread inside by syllables.

Short vocal regions are packed into 30 s windows (Whisper pads every input to 30 s, so one call
per 6 s region would cost five times the work); longer regions run through the pipeline's own
30 s chunking. Only numpy and the standard library are imported at module level.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from soundsight.errors import MissingCheckpointError
from soundsight.models import hub
from soundsight.models.hub import Checkpoint, LoadedModels
from soundsight.models.lyrics.align import clean_asr_words, spread_words

if TYPE_CHECKING:
    import torch

__all__ = [
    "ASR_RATE",
    "DEFAULT_WHISPER_MODEL",
    "LoadedWhisper",
    "Piece",
    "clear_whisper_cache",
    "load_whisper",
    "pack_regions",
    "resolve_whisper_checkpoint",
    "transcribe",
    "whisper_available",
    "whisper_backend_id",
]

logger = logging.getLogger(__name__)

DEFAULT_WHISPER_MODEL = "openai/whisper-large-v3-turbo"
ASR_RATE = 16_000  # Hz: what every Whisper's feature extractor expects
WINDOW_S = 30.0  # seconds: Whisper's input length


def check_whisper_folder(model_id: str, path: Path, hint: str) -> None:
    """Raise unless `path` holds a transformers-format Whisper (config, weights, processor, tokenizer).

    Raises
    ------
    MissingCheckpointError
        Files missing (a partial download, or not a Whisper folder).
    """
    hub.require_transformers_files(model_id, path, hint, also=("config.json", "generation_config.json"))


def resolve_whisper_checkpoint(model_id: str = DEFAULT_WHISPER_MODEL) -> Checkpoint:
    """Find a Whisper checkpoint on this machine without touching the network.

    Parameters
    ----------
    model_id : str
        Hub id (looked up in the local Hugging Face cache) or a folder holding a transformers-format
        Whisper (`check_whisper_folder`).

    Returns
    -------
    soundsight.models.hub.Checkpoint
        Its folder and revision.

    Raises
    ------
    MissingCheckpointError
        Not on this machine, or incomplete; the message names the download command.
    """
    return hub.resolve_checkpoint(str(model_id), check=check_whisper_folder, example_hub_id=DEFAULT_WHISPER_MODEL)


def whisper_available(model_id: str = DEFAULT_WHISPER_MODEL) -> bool:
    """True when `model_id` is complete on this machine and torch + transformers are installed.

    Never touches the network and never loads weights.
    """
    return hub.checkpoint_available(resolve_whisper_checkpoint, model_id)


def whisper_backend_id(model: str | Checkpoint = DEFAULT_WHISPER_MODEL) -> str:
    """``whisper:<model>@<revision>|transformers=<version>``: what lyrics cache keys depend on.

    transformers' version is part of it because its Whisper decoding (timestamps, cleanup of
    chunk seams) changes between releases. A local folder appears by its name (its content is the
    revision). No weights are loaded.

    Raises
    ------
    MissingCheckpointError
        As `resolve_whisper_checkpoint`.
    """
    import importlib.metadata

    checkpoint = model if isinstance(model, Checkpoint) else resolve_whisper_checkpoint(model)
    try:
        version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    return f"whisper:{checkpoint.name}@{checkpoint.revision}|transformers={version}"


@dataclass
class LoadedWhisper:
    """A Whisper model in an ASR pipeline, on `device` in `dtype`."""

    checkpoint: Checkpoint
    pipe: Any  # transformers.AutomaticSpeechRecognitionPipeline
    device: str
    dtype: torch.dtype

    @property
    def backend_id(self) -> str:
        """See `whisper_backend_id`."""
        return whisper_backend_id(self.checkpoint)

    @property
    def multilingual(self) -> bool:
        """Whether it takes a language and a task (the ``*.en`` checkpoints do not)."""
        return bool(getattr(self.pipe.model.generation_config, "is_multilingual", True))

    @property
    def word_timestamps(self) -> bool:
        """Whether its generation config names alignment heads (needed for word times)."""
        return bool(getattr(self.pipe.model.generation_config, "alignment_heads", None))


_MODELS: LoadedModels[LoadedWhisper] = LoadedModels()


def clear_whisper_cache() -> None:
    """Forget the models loaded in this process."""
    _MODELS.clear()


def load_whisper(
    model_id: str = DEFAULT_WHISPER_MODEL, device: str = "auto", dtype: str | None = None
) -> LoadedWhisper:
    """Load a Whisper checkpoint into an ASR pipeline, once per process.

    Parameters
    ----------
    model_id : str
        Hub id or folder.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
    dtype : {"auto", "float32", "float16", "bfloat16"} or None
        ``auto``/None: float16 on CUDA, float32 on CPU.

    Returns
    -------
    LoadedWhisper
        Shared by every caller in this process, keyed by (model id, revision, dtype, device).

    Raises
    ------
    MissingCheckpointError
        Not on this machine, or torch/transformers not installed.
    """
    checkpoint = resolve_whisper_checkpoint(model_id)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise MissingCheckpointError(model_id, "pip install 'soundsight[models]' (torch and transformers)") from None
    return _MODELS.load(checkpoint, device, dtype, _load)


def _load(checkpoint: Checkpoint, device: str, dtype: torch.dtype) -> LoadedWhisper:
    from transformers import AutoProcessor, WhisperForConditionalGeneration, pipeline

    logger.info("loading Whisper %s (%s) on %s as %s", checkpoint.model_id, checkpoint.revision, device, dtype)
    model, processor = hub.load_pretrained(WhisperForConditionalGeneration, AutoProcessor, checkpoint, device, dtype)
    tokenizer = processor.tokenizer
    # transformers 5 can quietly build a near-empty tokenizer when tokenizer files are missing.
    if len(tokenizer) < model.config.vocab_size // 2:
        raise MissingCheckpointError(
            checkpoint.model_id,
            f"{hub.download_hint(checkpoint.model_id)}  [its tokenizer has {len(tokenizer)} tokens, the model "
            f"expects {model.config.vocab_size}: tokenizer files in {checkpoint.path} are missing or wrong]",
        )
    pipe = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=tokenizer,
        feature_extractor=processor.feature_extractor,
        device=model.device,
    )
    return LoadedWhisper(checkpoint, pipe, device, dtype)


@dataclass(frozen=True)
class Piece:
    """A stretch of the song inside a transcription window.

    Attributes
    ----------
    start, end : float
        In the song, seconds.
    offset : float
        Where it starts inside the window, seconds.
    """

    start: float
    end: float
    offset: float


def pack_regions(
    regions: Sequence[tuple[float, float]],
    duration: float,
    *,
    pad_s: float = 0.5,
    gap_s: float = 0.5,
    window_s: float = WINDOW_S,
) -> list[list[Piece]]:
    """Regions to transcribe, packed into as few Whisper windows as they fit.

    Each region is padded by `pad_s` (within the song), overlapping ones merged; short ones share a
    window, `gap_s` of silence apart, up to `window_s`; a region longer than a window gets a window
    of its own (the pipeline chunks it).

    Parameters
    ----------
    regions : sequence of (float, float)
        [start, end) seconds in the song.
    duration : float
        The song's length, seconds.
    pad_s, gap_s, window_s : float
        Seconds.

    Returns
    -------
    list of list of Piece
        Windows in song order, each a list of pieces in song order.
    """
    merged: list[list[float]] = []
    for a, b in sorted(regions):
        a, b = max(0.0, a - pad_s), min(duration, b + pad_s)
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    windows: list[list[Piece]] = []
    used = 0.0
    for a, b in merged:
        length = b - a
        if windows and length <= window_s and used + gap_s + length <= window_s:
            windows[-1].append(Piece(a, b, used + gap_s))
            used += gap_s + length
        else:
            windows.append([Piece(a, b, 0.0)])
            used = length if length <= window_s else window_s + 1.0  # a long region fills its window
    return [[Piece(round(p.start, 3), round(p.end, 3), round(p.offset, 3)) for p in w] for w in windows]


def _window_audio(y: np.ndarray, sr: int, pieces: list[Piece]) -> np.ndarray:
    length = max(int(round((p.offset + p.end - p.start) * sr)) for p in pieces)
    out = np.zeros(length, dtype=np.float32)
    for p in pieces:
        clip = y[int(round(p.start * sr)) : int(round(p.end * sr))]
        i = int(round(p.offset * sr))
        out[i : i + len(clip)] = clip[: len(out) - i]
    return out


def _distance(t: float, piece: Piece) -> float:
    """How far window time `t` lies from `piece`'s place in the window, seconds (0 inside it)."""
    return max(0.0, piece.offset - t, t - (piece.offset + piece.end - piece.start))


def _to_song_time(words: list[dict], pieces: list[Piece]) -> list[dict]:
    """Window times -> song times: each word goes with the piece holding its midpoint (or the nearest)."""
    out = []
    for w in words:
        p = min(pieces, key=lambda q: _distance((w["start"] + w["end"]) / 2, q))
        s = min(max(p.start + w["start"] - p.offset, p.start), p.end)
        e = min(max(p.start + w["end"] - p.offset, s), p.end)
        out.append({**w, "start": round(s, 3), "end": round(e, 3)})
    return out


def _line_chunks_to_words(chunks: list[dict]) -> list[dict]:
    """Segment-level chunks (a phrase each) -> words spread over their phrase by syllables."""
    out = []
    for c in chunks:
        s, e = (list(c.get("timestamp") or ()) + [None, None])[:2]
        words = (c.get("text") or "").split()
        if not words or s is None:
            continue
        e = s + 0.3 * len(words) if e is None or e < s else e
        out += [{"text": w, "timestamp": span} for w, span in zip(words, spread_words(words, s, e))]
    return out


def transcribe(
    loaded: LoadedWhisper,
    y: np.ndarray,
    sr: int,
    regions: Sequence[tuple[float, float]],
    *,
    language: str = "",
    timestamps: Literal["word", "line"] = "word",
    num_beams: int = 1,
    max_new_tokens: int = 160,
) -> tuple[list[dict], str, str]:
    """Timed words of the song's `regions`.

    Parameters
    ----------
    loaded : LoadedWhisper
    y : numpy.ndarray
        The song, mono float32.
    sr : int
        Its sample rate, Hz (resampled to 16 kHz here).
    regions : sequence of (float, float)
        [start, end) seconds to transcribe (packed by `pack_regions`).
    language : str
        Language code or name; "" detects it.
    timestamps : {"word", "line"}
        Word times (alignment heads), or Whisper's segment times with words spread by syllables.
    num_beams : int
        1 decodes greedily (the pipeline alone would use 5 beams).
    max_new_tokens : int
        Longest output per 30 s window, tokens: caps runaway decoding on music.

    Returns
    -------
    words : list of dict
        ``{"text", "start", "end"}`` in song seconds, cleaned (`clean_asr_words`), starts non-decreasing.
    language : str
        The language given, or the code of the one most often detected ("" if none).
    note : str
        What fell back ("" when nothing did).
    """
    import librosa

    y16 = librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=sr, target_sr=ASR_RATE) if sr != ASR_RATE else y
    duration = len(y16) / ASR_RATE
    note = ""
    mode = timestamps
    if mode == "word" and not loaded.word_timestamps:
        mode = "line"
        note = f"{loaded.checkpoint.name} names no alignment heads: word times spread over Whisper's segment times"
    generate: dict[str, Any] = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
    if loaded.multilingual:
        generate["task"] = "transcribe"
        if language:
            generate["language"] = language
    detected: Counter = Counter()
    words: list[dict] = []
    for pieces in pack_regions(regions, duration):
        audio = _window_audio(y16, ASR_RATE, pieces)
        out = loaded.pipe(
            {"raw": audio, "sampling_rate": ASR_RATE},
            return_timestamps="word" if mode == "word" else True,
            return_language=loaded.multilingual and not language,
            chunk_length_s=WINDOW_S,
            ignore_warning=True,
            generate_kwargs=dict(generate),
        )
        chunks = out.get("chunks") or []
        detected.update(c["language"] for c in chunks if c.get("language"))
        if mode == "line":
            chunks = _line_chunks_to_words(chunks)
        words += _to_song_time(clean_asr_words(chunks, len(audio) / ASR_RATE), pieces)
    words = clean_asr_words([{"text": w["text"], "timestamp": (w["start"], w["end"])} for w in words], duration)
    if not language and detected:
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

        name = detected.most_common(1)[0][0]
        language = TO_LANGUAGE_CODE.get(str(name).lower(), str(name))  # the pipeline names it: "english" -> "en"
    return words, language, note
