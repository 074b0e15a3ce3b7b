"""The CLAP analysis backend: zero-shot labels from LAION-CLAP (the paper's section 3.1.1).

CLAP embeds audio and text in one space; the cosine similarity between a clip and the sentence
"<category name> is <option>", times the model's learned logit scale, is the clip's logit for
that option, and a softmax over one category's options is that category's distribution. The
checkpoints are LAION's, in transformers' format (`ClapModel` + `ClapProcessor`):
``laion/larger_clap_music`` (default), ``laion/larger_clap_music_and_speech``,
``laion/clap-htsat-unfused``, ``laion/clap-htsat-fused``, or a local directory holding one.

The algorithm, as `ClapAnalyser.__call__` runs it:

1. Resample the song to the model's rate (48 kHz) once.
2. Cut every segment into windows of at most the model's input length (10 s): a segment of
   ``d`` seconds becomes ``ceil(d / 10)`` equal windows (a 23 s segment: three of 7.67 s).
   Windows shorter than 10 s are repeat-padded exactly as `ClapFeatureExtractor` does
   (``padding="repeatpad"``), never randomly cropped.
3. Embed the vocabulary's sentences once per (checkpoint, dtype, vocabulary) and keep them on
   disk (`text_embeddings`).
4. Embed all windows of the song in forward passes of `batch_size` windows (log-mel spectrograms
   computed in torch on the model's device, equal to `ClapFeatureExtractor`'s).
5. A segment's embedding is the duration-weighted mean of its windows' unit embeddings,
   renormalised; the whole track's is the same mean over every window of the song.
6. Per category: softmax over the options of ``logit_scale_a * <audio, text>`` (CLAP's
   ``logits_per_audio``); segment categories use the segment embedding, track and visual
   categories the track embedding.

Only numpy and the standard library are imported at module level, so `clap_available` answers
(False) on an install without torch/transformers; `benchmarks/clap_throughput.py` reuses the
embedding functions on hosts without pydantic or librosa.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prompts import Category, Vocabulary
from soundsight.errors import MissingCheckpointError, SoundsightError

if TYPE_CHECKING:
    import torch

    from soundsight.schemas import Analysis, Label, Segment

logger = logging.getLogger(__name__)

DEFAULT_CLAP_MODEL = "laion/larger_clap_music"
TRANSFORMERS_CLAP_MODELS = (
    "laion/larger_clap_music",
    "laion/larger_clap_music_and_speech",
    "laion/larger_clap_general",
    "laion/clap-htsat-unfused",
    "laion/clap-htsat-fused",
)
ALGORITHM_VERSION = "clap-v1"  # bump when windowing, pooling or scoring changes
MIN_WINDOW_SECONDS = 1.0  # shorter segments are widened (around their centre) to this, seconds
TEXT_BATCH = 64  # sentences per text forward pass
ORIGINAL_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
_FEATURE_CONFIGS = ("preprocessor_config.json", "processor_config.json")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def download_hint(model_id: str = DEFAULT_CLAP_MODEL) -> str:
    """The shell command that puts `model_id` into the Hugging Face cache."""
    return f"hf download {model_id}  (huggingface_hub < 1.0: huggingface-cli download {model_id})"


class ClapCheckpointFormatError(SoundsightError):
    """The CLAP checkpoint exists but is not in transformers' format (e.g. a laion-clap ``.pt``)."""


def _original_checkpoint_message(where: str) -> str:
    return (
        f"{where} is an original LAION-CLAP checkpoint (.pt, for the laion-clap package), which soundsight "
        "does not load. The same LAION checkpoints are published in transformers' format: download one with "
        f"`{download_hint(DEFAULT_CLAP_MODEL)}` (music; also laion/larger_clap_music_and_speech, "
        "laion/clap-htsat-unfused, laion/clap-htsat-fused) and set analysis.clap_model to its id, or convert "
        "your .pt with transformers' src/transformers/models/clap/convert_clap_original_pytorch_to_hf.py and "
        "point analysis.clap_model at the output directory."
    )


# --------------------------------------------------------------------------------------------
# Finding a checkpoint on this machine (never the network)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClapCheckpoint:
    """A transformers-format CLAP checkpoint found on this machine.

    model_id : what the user named: a hub id or a directory.
    path : the directory `from_pretrained` reads (for a hub id: its snapshot in the HF cache).
    revision : the hub commit hash (the snapshot directory's name), or ``local-<sha256[:16]>``
        of the config, feature-extractor config and weight files for any other directory.
    source : "hub-cache" or "local".
    """

    model_id: str
    path: Path
    revision: str
    source: str


def _looks_like_path(model_id: str) -> bool:
    return (
        model_id.startswith(("/", "./", "../", "~", "\\"))
        or model_id.count("/") > 1
        or (os.sep != "/" and os.sep in model_id)
    )


def _check_directory(model_id: str, path: Path, hint: str) -> None:
    """Raise unless `path` holds config, weights, feature-extractor config and a tokenizer."""
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    if "config.json" not in names:
        if any(n.lower().endswith(ORIGINAL_CHECKPOINT_SUFFIXES) for n in names):
            raise ClapCheckpointFormatError(_original_checkpoint_message(f"'{model_id}' ({path})"))
        if path.is_dir() and names and not _COMMIT.match(path.name):
            raise ClapCheckpointFormatError(
                f"'{model_id}' ({path}) has no config.json: a transformers-format CLAP directory holds "
                "config.json, model.safetensors or pytorch_model.bin, preprocessor_config.json and the "
                f"tokenizer files. Get one with `{hint}`."
            )
        raise MissingCheckpointError(model_id, hint)
    has_weights = any(n in names for n in _WEIGHT_FILES)
    has_features = any(n in names for n in _FEATURE_CONFIGS)
    has_tokenizer = "tokenizer.json" in names or {"vocab.json", "merges.txt"} <= names
    if not (has_weights and has_features and has_tokenizer):
        missing = [
            what
            for what, ok in (("weights", has_weights), ("preprocessor_config.json", has_features), ("tokenizer", has_tokenizer))
            if not ok
        ]
        raise MissingCheckpointError(model_id, f"{hint}  [incomplete: missing {', '.join(missing)} in {path}]")


_CONTENT_HASHES: dict[tuple, str] = {}


def _directory_revision(path: Path) -> str:
    """``local-<sha256[:16]>`` over config, feature-extractor config and weight files (cached by size/mtime)."""
    files = sorted(
        p for p in path.iterdir()
        if p.is_file() and (p.name == "config.json" or p.name in _FEATURE_CONFIGS or p.suffix in (".safetensors", ".bin"))
    )  # fmt: skip
    stamp = (str(path.resolve()), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stamp not in _CONTENT_HASHES:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
        _CONTENT_HASHES[stamp] = "local-" + h.hexdigest()[:16]
    return _CONTENT_HASHES[stamp]


def resolve_clap_checkpoint(model_id: str = DEFAULT_CLAP_MODEL) -> ClapCheckpoint:
    """Find `model_id` on this machine without touching the network.

    A path that exists is used as it is; anything else is looked up as a hub id in the local
    Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``) with ``local_files_only=True``.

    Raises
    ------
    MissingCheckpointError
        Not on this machine (or only partly downloaded); the message names `model_id` and the
        command that downloads it.
    ClapCheckpointFormatError
        An original LAION-CLAP ``.pt`` checkpoint (or a directory of them), or a directory that is
        not a transformers checkpoint; the message says how to get the transformers-format one.
    """
    model_id = str(model_id)
    local = Path(model_id).expanduser()
    if model_id.lower().endswith(ORIGINAL_CHECKPOINT_SUFFIXES):
        raise ClapCheckpointFormatError(_original_checkpoint_message(f"'{model_id}'"))
    if local.exists():
        if local.is_file():
            raise ClapCheckpointFormatError(
                f"'{model_id}' is a file; analysis.clap_model takes a transformers-format checkpoint directory "
                f"or a hub id (e.g. {DEFAULT_CLAP_MODEL})."
            )
        hint = f"hf download {DEFAULT_CLAP_MODEL} --local-dir {model_id}"
        _check_directory(model_id, local, hint)
        revision = local.name if local.parent.name == "snapshots" and _COMMIT.match(local.name) else _directory_revision(local)
        return ClapCheckpoint(model_id, local.resolve(), revision, "local")
    if _looks_like_path(model_id):
        raise MissingCheckpointError(model_id, f"hf download {DEFAULT_CLAP_MODEL} --local-dir {model_id}")

    hint = download_hint(model_id)
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(model_id, local_files_only=True))
    except ImportError:
        raise MissingCheckpointError(model_id, "pip install 'soundsight[models]' && " + hint) from None
    except (OSError, ValueError):  # LocalEntryNotFoundError, HFValidationError (a malformed id)
        raise MissingCheckpointError(model_id, hint) from None
    _check_directory(model_id, snapshot, hint)
    return ClapCheckpoint(model_id, snapshot, snapshot.name, "hub-cache")


def clap_available(model_id: str = DEFAULT_CLAP_MODEL) -> bool:
    """True when `model_id` is complete on this machine and torch + transformers are installed.

    Never touches the network; never loads weights (a local directory's files are hashed once for
    its revision). Backend ``auto`` picks CLAP exactly when this is true.
    """
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return False
    try:
        resolve_clap_checkpoint(model_id)
    except SoundsightError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Loading, once per process
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is used as given."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def resolve_dtype(dtype: "str | torch.dtype | None", device: str) -> "torch.dtype":
    """``None``/``auto``: float16 on CUDA (LAION trained CLAP with fp16 mixed precision), float32 on CPU."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"CLAP dtype must be one of {sorted(names)} or 'auto', not {dtype!r}")
    return names[dtype]


def clap_backend_id(
    model: str | ClapCheckpoint = DEFAULT_CLAP_MODEL, device: str = "auto", dtype: "str | torch.dtype | None" = None
) -> str:
    """``clap-v1:<model>@<revision>:<dtype>``: what analysis cache keys depend on.

    `model` is a model id / directory (resolved with `resolve_clap_checkpoint`, so this raises
    the same errors) or an already resolved `ClapCheckpoint`; `device` and `dtype` as for
    `ClapAnalyser` (the dtype, which follows the device when ``auto``, changes the numbers).
    No weights are loaded. For a local directory the model part is the directory's name (its
    content hash is the revision), so the id does not depend on where the checkpoint lies.
    """
    checkpoint = model if isinstance(model, ClapCheckpoint) else resolve_clap_checkpoint(model)
    torch_dtype = resolve_dtype(dtype, resolve_device(device))
    name = checkpoint.model_id if checkpoint.source == "hub-cache" else Path(checkpoint.model_id).name
    return f"{ALGORITHM_VERSION}:{name}@{checkpoint.revision}:{str(torch_dtype).removeprefix('torch.')}"


@dataclass
class LoadedClap:
    """A CLAP model with its feature extractor and tokenizer, on `device` in `dtype`."""

    checkpoint: ClapCheckpoint
    model: Any  # transformers.ClapModel, eval mode
    feature_extractor: Any  # transformers.ClapFeatureExtractor
    tokenizer: Any  # transformers.RobertaTokenizer
    device: str
    dtype: "torch.dtype"
    _mel_filters: dict = field(default_factory=dict, repr=False)

    @property
    def sample_rate(self) -> int:
        """The rate the audio encoder expects, Hz (48000 for every LAION checkpoint)."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def window_samples(self) -> int:
        """The audio encoder's input length, samples (10 s = 480000)."""
        return int(self.feature_extractor.nb_max_samples)

    @property
    def fused(self) -> bool:
        """Feature-fusion checkpoints (``clap-htsat-fused``) take 4 stacked mel channels."""
        return self.feature_extractor.truncation == "fusion"

    @property
    def backend_id(self) -> str:
        return clap_backend_id(self.checkpoint, self.device, self.dtype)

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale_a)``: multiplies cosine similarities into ``logits_per_audio``."""
        return float(self.model.logit_scale_a.detach().float().exp().item())


_MODELS: dict[tuple[str, str, str, str], LoadedClap] = {}
_LOCK = threading.Lock()
_STATS: Counter = Counter()


def clap_stats() -> dict[str, int]:
    """Counters for tests and logs: ``loads``, ``text_forward``, ``audio_forward``, ``text_cache_hits``."""
    return dict(_STATS)


def reset_clap_stats() -> None:
    """Zero the counters of `clap_stats`."""
    _STATS.clear()


def clear_clap_cache(reset_stats: bool = True) -> None:
    """Forget loaded models (and text embeddings held in memory); optionally zero the counters."""
    with _LOCK:
        _MODELS.clear()
        _TEXT_MEMORY.clear()
        if reset_stats:
            _STATS.clear()


def load_clap(model_id: str = DEFAULT_CLAP_MODEL, device: str = "auto", dtype: "str | torch.dtype | None" = None) -> LoadedClap:
    """Load a CLAP checkpoint once per process, keyed by (model id, revision, dtype, device).

    Reads only local files (``local_files_only=True``); see `resolve_clap_checkpoint` for the
    errors. Thread-safe: concurrent callers in one worker share one load.
    """
    checkpoint = resolve_clap_checkpoint(model_id)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    key = (checkpoint.model_id, checkpoint.revision, str(torch_dtype), device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load(checkpoint, device, torch_dtype)
            _STATS["loads"] += 1
        return _MODELS[key]


def _load(checkpoint: ClapCheckpoint, device: str, dtype: "torch.dtype") -> LoadedClap:
    from transformers import ClapModel, ClapProcessor

    logger.info("loading CLAP %s (%s) on %s as %s", checkpoint.model_id, checkpoint.revision, device, dtype)
    model = ClapModel.from_pretrained(checkpoint.path, dtype=dtype, local_files_only=True)
    model = model.to(device).eval()
    processor = ClapProcessor.from_pretrained(checkpoint.path, local_files_only=True)
    tokenizer = processor.tokenizer
    vocab_size = model.config.text_config.vocab_size
    # transformers 5 can quietly build a ~5-token tokenizer when tokenizer files are missing.
    if not (vocab_size // 2 <= len(tokenizer) <= vocab_size):
        raise ClapCheckpointFormatError(
            f"'{checkpoint.model_id}': its tokenizer has {len(tokenizer)} tokens but the text model expects "
            f"{vocab_size}; the tokenizer files in {checkpoint.path} are missing or wrong "
            f"(re-download with `{download_hint(checkpoint.model_id)}`)."
        )
    return LoadedClap(checkpoint, model, processor.feature_extractor, tokenizer, device, dtype)


# --------------------------------------------------------------------------------------------
# The algorithm's pieces
# --------------------------------------------------------------------------------------------


def resample(y: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Mono float32 `y` at `sr` Hz -> float32 at `target_sr` Hz (librosa, ``soxr_hq``)."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {y.shape}")
    if sr == target_sr:
        return y
    import librosa

    return librosa.resample(y, orig_sr=sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


@dataclass(frozen=True)
class Window:
    """One encoder input: samples ``[start, end)`` of the resampled song, belonging to segment `owner`."""

    owner: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(
    spans: Sequence[tuple[float, float]],
    n_samples: int,
    sample_rate: int,
    window_samples: int,
    min_seconds: float = MIN_WINDOW_SECONDS,
) -> list[Window]:
    """Cut each span into the fewest equal windows of at most `window_samples` samples.

    Parameters
    ----------
    spans : ``(start, end)`` of each segment, seconds.
    n_samples : length of the resampled song, samples.
    sample_rate : Hz of the resampled song.
    window_samples : the encoder's input length, samples (10 s at 48 kHz = 480000).
    min_seconds : a span shorter than this is widened around its centre to this length (clipped
        to the song), so no window is a handful of samples repeated a thousand times.

    Returns
    -------
    Windows in segment order; a span of ``L`` samples gets ``ceil(L / window_samples)`` windows
    whose lengths differ by at most one sample.
    """
    if n_samples <= 0:
        raise ValueError("empty audio")
    min_len = min(n_samples, window_samples, max(1, int(round(min_seconds * sample_rate))))
    windows: list[Window] = []
    for owner, (t0, t1) in enumerate(spans):
        a = int(np.clip(round(t0 * sample_rate), 0, n_samples))
        b = int(np.clip(round(t1 * sample_rate), 0, n_samples))
        if b - a < min_len:
            centre = (a + b) // 2
            a = int(np.clip(centre - min_len // 2, 0, n_samples - min_len))
            b = a + min_len
        count = math.ceil((b - a) / window_samples)
        edges = np.round(np.linspace(a, b, count + 1)).astype(int)
        windows.extend(Window(owner, int(edges[j]), int(edges[j + 1])) for j in range(count))
    return windows


def pad_window(x: np.ndarray, length: int, mode: str = "repeatpad") -> np.ndarray:
    """Bring a window of at most `length` samples to exactly `length`, as `ClapFeatureExtractor` does.

    ``repeatpad``: tile whole copies, then zero-pad; ``repeat``: tile and cut; ``pad``: zero-pad.
    """
    if len(x) > length:
        raise ValueError(f"window of {len(x)} samples exceeds the encoder's {length}")
    if len(x) < length:
        if mode == "repeat":
            x = np.tile(x, length // len(x) + 1)[:length]
        elif mode == "repeatpad":
            x = np.tile(x, length // len(x))
        x = np.pad(x, (0, length - len(x)))
    return x.astype(np.float32, copy=False)


def log_mel_features(clap: LoadedClap, waveforms: "torch.Tensor") -> "torch.Tensor":
    """Batched log-mel input features, equal to `ClapFeatureExtractor`'s for windows <= 10 s.

    Parameters
    ----------
    waveforms : (batch, window_samples) float32 at `clap.sample_rate`, already padded
        (`pad_window`), on any device.

    Returns
    -------
    (batch, channels, frames, mel_bins) float32 power spectrogram in dB (``10 log10(max(P,1e-10))``,
    Hann window of ``fft_window_size``, hop ``hop_length``, centred with reflect padding). One
    channel with the Slaney mel bank (``rand_trunc`` checkpoints), or the HTK bank repeated over
    4 channels for fusion checkpoints - what the extractor gives a clip that is not longer than
    10 s. Computing it in torch on the model's device keeps the CPU out of the GPU's way.
    """
    import torch

    fe = clap.feature_extractor
    device = waveforms.device
    key = str(device)
    if key not in clap._mel_filters:
        bank = fe.mel_filters if clap.fused else fe.mel_filters_slaney  # (freq_bins, mel_bins)
        clap._mel_filters[key] = (
            torch.as_tensor(np.asarray(bank).T, dtype=torch.float32, device=device),
            torch.hann_window(fe.fft_window_size, periodic=True, dtype=torch.float32, device=device),
        )
    mel_bank, window = clap._mel_filters[key]
    spec = torch.stft(
        waveforms.float(),
        n_fft=fe.fft_window_size,
        hop_length=fe.hop_length,
        win_length=fe.fft_window_size,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (batch, freq_bins, frames)
    power = spec.real.square() + spec.imag.square()
    mel = torch.matmul(mel_bank, power).clamp_min(1e-10)  # (batch, mel_bins, frames)
    log_mel = (10.0 * torch.log10(mel)).transpose(1, 2).unsqueeze(1)  # (batch, 1, frames, mel_bins)
    return log_mel.expand(-1, 4, -1, -1).contiguous() if clap.fused else log_mel


def embed_windows(clap: LoadedClap, audio: np.ndarray, windows: Sequence[Window], batch_size: int) -> np.ndarray:
    """Unit-length audio embeddings of `windows`, `batch_size` windows per forward pass.

    Parameters
    ----------
    audio : the whole song, mono float32 at `clap.sample_rate`.
    windows : from `plan_windows`; each at most `clap.window_samples` long.
    batch_size : windows per forward pass (memory vs. speed; results do not depend on it).

    Returns
    -------
    (len(windows), projection_dim) float32, rows of unit L2 norm.

    ``is_longer`` is False for every window (none exceeds 10 s), so fusion checkpoints take
    their global branch deterministically - the feature extractor's habit of marking one random
    clip of an all-short batch as "longer" (a training-time trick) would make a segment's labels
    depend on its batch neighbours.
    """
    import torch

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    out = []
    for first in range(0, len(windows), batch_size):
        batch = windows[first : first + batch_size]
        waves = np.stack([pad_window(audio[w.start : w.end], clap.window_samples, clap.feature_extractor.padding) for w in batch])
        waves_t = torch.from_numpy(waves).to(clap.device)
        with torch.inference_mode():
            features = log_mel_features(clap, waves_t).to(clap.dtype)
            is_longer = torch.zeros((len(batch), 1), dtype=torch.bool, device=clap.device)
            embeds = clap.model.get_audio_features(input_features=features, is_longer=is_longer).pooler_output
        _STATS["audio_forward"] += 1
        out.append(embeds.float().cpu().numpy())
    embeddings = np.concatenate(out) if out else np.zeros((0, clap.model.config.projection_dim), np.float32)
    return _unit(embeddings)


def pool_windows(embeddings: np.ndarray, windows: Sequence[Window], n_groups: int | None = None) -> np.ndarray:
    """Duration-weighted mean of unit window embeddings, renormalised to unit length.

    With `n_groups`, one row per segment (windows grouped by `Window.owner`); without, a single
    (1, dim) row over all windows: the whole-track embedding.
    """
    weights = np.array([w.length for w in windows], dtype=np.float64)
    owners = np.array([w.owner for w in windows]) if n_groups is not None else np.zeros(len(windows), int)
    groups = n_groups if n_groups is not None else 1
    pooled = np.zeros((groups, embeddings.shape[1]), dtype=np.float64)
    np.add.at(pooled, owners, embeddings.astype(np.float64) * weights[:, None])
    return _unit(pooled)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def vocabulary_sentences(vocabulary: Vocabulary) -> tuple[list[str], dict[str, slice]]:
    """All categories' "<name> is <option>" sentences in file order, and each category's rows."""
    sentences: list[str] = []
    rows: dict[str, slice] = {}
    for category in vocabulary.categories:
        rows[category.key] = slice(len(sentences), len(sentences) + len(category.options))
        sentences.extend(category.sentences())
    return sentences, rows


def default_cache_dir() -> Path:
    """``$SOUNDSIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/soundsight`` (``~/.cache/soundsight``)."""
    if os.environ.get("SOUNDSIGHT_CACHE_DIR"):
        return Path(os.environ["SOUNDSIGHT_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "soundsight"


_TEXT_MEMORY: dict[str, np.ndarray] = {}


def text_cache_path(clap: LoadedClap, vocabulary: Vocabulary, cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/clap-text/<sha256>.npy``; the hash covers the backend id (model, revision,
    dtype), the vocabulary's content hash and the exact sentences."""
    sentences, _ = vocabulary_sentences(vocabulary)
    key = json.dumps({"backend_id": clap.backend_id, "vocabulary": vocabulary.content_hash, "sentences": sentences})
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "clap-text" / (hashlib.sha256(key.encode()).hexdigest() + ".npy")


def text_embeddings(clap: LoadedClap, vocabulary: Vocabulary, cache_dir: str | Path | None = None) -> np.ndarray:
    """Unit text embeddings of `vocabulary_sentences`, computed once and cached in memory and on disk.

    Returns (n_sentences, projection_dim) float32. A cache file that cannot be read or has the
    wrong shape is recomputed and replaced (written atomically, safe across processes).
    """
    sentences, _ = vocabulary_sentences(vocabulary)
    path = text_cache_path(clap, vocabulary, cache_dir)
    if path.name in _TEXT_MEMORY:
        _STATS["text_cache_hits"] += 1
        return _TEXT_MEMORY[path.name]
    embeddings = None
    if path.is_file():
        try:
            embeddings = np.load(path, allow_pickle=False)
            if embeddings.shape != (len(sentences), clap.model.config.projection_dim):
                embeddings = None
            else:
                _STATS["text_cache_hits"] += 1
        except (OSError, ValueError):
            embeddings = None
    if embeddings is None:
        embeddings = _embed_sentences(clap, sentences)
        _save_atomic(path, embeddings, {"backend_id": clap.backend_id, "vocabulary": vocabulary.content_hash, "sentences": sentences})
    _TEXT_MEMORY[path.name] = embeddings
    return embeddings


def _embed_sentences(clap: LoadedClap, sentences: list[str]) -> np.ndarray:
    import torch

    out = []
    for first in range(0, len(sentences), TEXT_BATCH):
        tokens = clap.tokenizer(sentences[first : first + TEXT_BATCH], padding=True, return_tensors="pt")
        with torch.inference_mode():
            embeds = clap.model.get_text_features(
                input_ids=tokens["input_ids"].to(clap.device), attention_mask=tokens["attention_mask"].to(clap.device)
            ).pooler_output
        _STATS["text_forward"] += 1
        out.append(embeds.float().cpu().numpy())
    return _unit(np.concatenate(out))


def _save_atomic(path: Path, array: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in (
        (path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1).encode())),
        (path, lambda f: np.save(f, array, allow_pickle=False)),
    ):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def category_distributions(
    audio_embeddings: np.ndarray, text: np.ndarray, rows: dict[str, slice], logit_scale: float
) -> dict[str, np.ndarray]:
    """Per category key: (n_audio, n_options) softmax of ``logit_scale * audio @ text.T`` over its options."""
    logits = logit_scale * (audio_embeddings.astype(np.float64) @ text.astype(np.float64).T)
    out = {}
    for key, sl in rows.items():
        z = logits[:, sl]
        z = np.exp(z - z.max(axis=1, keepdims=True))
        out[key] = z / z.sum(axis=1, keepdims=True)
    return out


def _label(category: Category, p: np.ndarray) -> "Label":
    from soundsight.schemas import Label

    return Label.from_distribution(category.key, category.name, category.options, p)


# --------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------


class ClapAnalyser:
    """Zero-shot labels for every segment and the whole track from a LAION-CLAP checkpoint.

    Parameters
    ----------
    vocabulary : the label vocabulary (`prompts.load_vocabulary()`).
    model_id : hub id (looked up in the local HF cache) or a transformers-format directory.
    device : ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1`` ...
    dtype : ``None``/``auto`` (float16 on CUDA, float32 on CPU), ``float32``, ``float16``, ``bfloat16``.
    batch_size : windows (<= 10 s each) per audio forward pass.
    cache_dir : root of the text-embedding cache (default `default_cache_dir()`).

    Construction checks the checkpoint (raising `MissingCheckpointError` /
    `ClapCheckpointFormatError`) and fixes `backend_id`, but loads no weights: the first call
    loads the model through `load_clap`, once per process.
    """

    name = "clap"

    def __init__(
        self,
        vocabulary: Vocabulary,
        model_id: str = DEFAULT_CLAP_MODEL,
        *,
        device: str = "auto",
        dtype: "str | torch.dtype | None" = None,
        batch_size: int = 16,
        cache_dir: str | Path | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.vocabulary = vocabulary
        self.model_id = str(model_id)
        self.checkpoint = resolve_clap_checkpoint(self.model_id)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.backend_id = clap_backend_id(self.checkpoint, self.device, self.dtype)

    def __call__(
        self, y: np.ndarray, sr: int, segments: list[Segment], tempo_bpm: float, beats: list[float]
    ) -> Analysis:
        """Label `segments` of the mono song `y` (float32 at `sr` Hz); see the module docstring."""
        return self.label(self.embed_segments(y, sr, segments), tempo_bpm)

    def embed_segments(self, y: np.ndarray, sr: int, segments: list[Segment]) -> "SegmentEmbeddings":
        """Audio embeddings of some (contiguous) segments of the song - one fan-out unit.

        Only the span the segments cover is resampled and embedded. Besides one unit embedding
        per segment it returns the duration-weighted *sum* of its window embeddings and the total
        weight, so embeddings of several batches combine into exactly the whole-track embedding
        a single call would compute.
        """
        if not segments:
            raise ValueError("CLAP analysis needs at least one segment")
        clap = load_clap(self.model_id, self.device, self.dtype)

        # 1. The covered span at the encoder's rate (48 kHz).
        first = int(np.floor(segments[0].start * sr))
        last = min(len(y), int(np.ceil(segments[-1].end * sr)))
        audio = resample(y[first:last], sr, clap.sample_rate)
        offset = first / sr

        # 2. Every segment as windows of at most 10 s.
        spans = [(s.start - offset, s.end - offset) for s in segments]
        windows = plan_windows(spans, len(audio), clap.sample_rate, clap.window_samples)

        # 3. All windows' audio embeddings, `batch_size` per forward pass.
        window_embeddings = embed_windows(clap, audio, windows, self.batch_size)

        # 4. Segment = duration-weighted mean of its windows; the track's part = the weighted sum.
        weights = np.array([w.length for w in windows], dtype=np.float64)
        return SegmentEmbeddings(
            indices=[s.index for s in segments],
            segments=pool_windows(window_embeddings, windows, n_groups=len(segments)),
            windows=np.bincount([w.owner for w in windows], minlength=len(segments)).tolist(),
            track_sum=(window_embeddings.astype(np.float64) * weights[:, None]).sum(axis=0),
            track_weight=float(weights.sum()),
        )

    def label(self, parts: "SegmentEmbeddings | list[SegmentEmbeddings]", tempo_bpm: float) -> Analysis:
        """Zero-shot labels from segment embeddings (one or several batches, in song order)."""
        from soundsight.schemas import Analysis, SegmentLabels

        parts = [parts] if isinstance(parts, SegmentEmbeddings) else sorted(parts, key=lambda p: p.indices[0])
        clap = load_clap(self.model_id, self.device, self.dtype)
        segment_embeddings = np.concatenate([p.segments for p in parts]).astype(np.float32)
        track_embedding = _unit(sum(p.track_sum for p in parts)[None, :])
        counts = [c for p in parts for c in p.windows]

        # 5. The vocabulary's text embeddings (cached per checkpoint, dtype and vocabulary).
        text = text_embeddings(clap, self.vocabulary, self.cache_dir)
        _, rows = vocabulary_sentences(self.vocabulary)

        # 6. Zero-shot distributions: segment scope per segment, track and visual scope for the song.
        v = self.vocabulary
        per_segment = category_distributions(
            segment_embeddings, text, {c.key: rows[c.key] for c in v.scope("segment")}, clap.logit_scale
        )
        whole = category_distributions(
            track_embedding, text, {c.key: rows[c.key] for c in v.scope("track") + v.scope("visual")}, clap.logit_scale
        )

        # 7. The shared schema.
        n = len(segment_embeddings)
        segment_labels = [
            SegmentLabels(index=i, labels={c.key: _label(c, per_segment[c.key][i]) for c in v.scope("segment")})
            for i in range(n)
        ]
        similarity = segment_embeddings.astype(np.float64) @ track_embedding[0].astype(np.float64)
        return Analysis(
            backend=self.name,
            backend_id=self.backend_id,
            vocabulary_hash=v.content_hash,
            track={c.key: _label(c, whole[c.key][0]) for c in v.scope("track")},
            visual={c.key: _label(c, whole[c.key][0]) for c in v.scope("visual")},
            segments=segment_labels,
            descriptors={
                "tempo_bpm": round(float(tempo_bpm), 4),
                "clap_windows": float(sum(counts)),
                "clap_logit_scale": round(clap.logit_scale, 4),
            },
            segment_descriptors=[
                {"clap_windows": float(counts[i]), "clap_track_similarity": round(float(similarity[i]), 4)}
                for i in range(n)
            ],
        )


@dataclass
class SegmentEmbeddings:
    """CLAP embeddings of a batch of segments (see `ClapAnalyser.embed_segments`)."""

    indices: list[int]
    segments: np.ndarray  # (n, dim) unit vectors
    windows: list[int]  # windows per segment
    track_sum: np.ndarray  # (dim,) sum of duration-weighted window embeddings
    track_weight: float  # total window length, samples at 48 kHz

    def to_json(self) -> dict:
        return {"indices": self.indices, "windows": self.windows, "track_weight": self.track_weight,
                "track_sum": [float(x) for x in self.track_sum],
                "segments": [[float(x) for x in row] for row in self.segments]}

    @classmethod
    def from_json(cls, data: dict) -> "SegmentEmbeddings":
        return cls(indices=list(data["indices"]), segments=np.asarray(data["segments"], dtype=np.float32),
                   windows=list(data["windows"]), track_sum=np.asarray(data["track_sum"], dtype=np.float64),
                   track_weight=float(data["track_weight"]))
