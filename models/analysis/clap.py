"""The CLAP analysis backend: zero-shot labels from LAION-CLAP (the paper's section 3.1.1).

CLAP embeds audio and text in one space; the cosine similarity between a clip and the sentence
"<category name> is <option>", times the model's learned logit scale, is the clip's logit for
that option, and a softmax over one category's options is that category's distribution.
Finding and loading the checkpoint: `clap_model`; the on-disk text-embedding cache:
`embedding_cache`.

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

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundsight.models.analysis.clap_model import (
    DEFAULT_CLAP_MODEL,
    LoadedClap,
    clap_available,
    clap_backend_id,
    load_clap,
    resolve_clap_checkpoint,
)
from soundsight.models.analysis.embedding_cache import cached_embeddings
from soundsight.models.hub import resolve_device
from soundsight.prompts import Category, Vocabulary, load_vocabulary
from soundsight.settings import AnalysisSettings

if TYPE_CHECKING:
    import torch

    from soundsight.schemas import Analysis, Label, Segment

__all__ = [
    "BACKEND",
    "ClapAnalyser",
    "SegmentEmbeddings",
    "category_distributions",
    "plan_windows",
    "pool_windows",
    "text_embeddings",
]

MIN_WINDOW_SECONDS = 1.0  # shorter segments are widened (around their centre) to this, seconds
TEXT_BATCH = 64  # sentences per text forward pass


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


def log_mel_features(clap: LoadedClap, waveforms: torch.Tensor) -> torch.Tensor:
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
    if key not in clap.mel_filters:
        bank = fe.mel_filters if clap.fused else fe.mel_filters_slaney  # (freq_bins, mel_bins)
        clap.mel_filters[key] = (
            torch.as_tensor(np.asarray(bank).T, dtype=torch.float32, device=device),
            torch.hann_window(fe.fft_window_size, periodic=True, dtype=torch.float32, device=device),
        )
    mel_bank, window = clap.mel_filters[key]
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
        waves = np.stack(
            [pad_window(audio[w.start : w.end], clap.window_samples, clap.feature_extractor.padding) for w in batch]
        )
        waves_t = torch.from_numpy(waves).to(clap.device)
        with torch.inference_mode():
            features = log_mel_features(clap, waves_t).to(clap.dtype)
            is_longer = torch.zeros((len(batch), 1), dtype=torch.bool, device=clap.device)
            embeds = clap.model.get_audio_features(input_features=features, is_longer=is_longer).pooler_output
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


def text_embeddings(clap: LoadedClap, vocabulary: Vocabulary, cache_dir: str | Path | None = None) -> np.ndarray:
    """Unit text embeddings of `vocabulary_sentences`, computed once per checkpoint and dtype.

    Returns
    -------
    numpy.ndarray
        ``(n_sentences, projection_dim)`` float32; cached in memory and on disk
        (`embedding_cache.cached_embeddings`), keyed by the backend id and the exact sentences.
    """
    sentences, _ = vocabulary_sentences(vocabulary)
    embeddings, _ = cached_embeddings(
        "clap-text",
        clap.backend_id,
        sentences,
        lambda s: _embed_sentences(clap, s),
        width=clap.model.config.projection_dim,
        cache_dir=cache_dir,
    )
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
        out.append(embeds.float().cpu().numpy())
    return _unit(np.concatenate(out))


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


def _label(category: Category, p: np.ndarray) -> Label:
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
        dtype: str | None = None,
        batch_size: int = 16,
        cache_dir: str | Path | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.vocabulary = vocabulary
        self.model_id = str(model_id)
        self.checkpoint = resolve_clap_checkpoint(self.model_id)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.backend_id = clap_backend_id(self.checkpoint, self.device, self.dtype)

    def __call__(
        self, y: np.ndarray, sr: int, segments: list[Segment], tempo_bpm: float, beats: list[float]
    ) -> Analysis:
        """Label `segments` of the mono song `y` (float32 at `sr` Hz); see the module docstring."""
        return self.label(self.embed_segments(y, sr, segments), tempo_bpm)

    def embed_segments(self, y: np.ndarray, sr: int, segments: list[Segment]) -> SegmentEmbeddings:
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
        )

    def embeddings_from_json(self, data: dict) -> SegmentEmbeddings:
        """What `embed_segments` returned, read back from its JSON."""
        return SegmentEmbeddings.from_json(data)

    def label(self, parts: SegmentEmbeddings | list[SegmentEmbeddings], tempo_bpm: float) -> Analysis:
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

    def to_json(self) -> dict:
        """A JSON-able dict that `from_json` reads back."""
        return {
            "indices": self.indices,
            "windows": self.windows,
            "track_sum": [float(x) for x in self.track_sum],
            "segments": [[float(x) for x in row] for row in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict) -> SegmentEmbeddings:
        """Embeddings read back from `to_json`'s dict."""
        return cls(
            indices=list(data["indices"]),
            segments=np.asarray(data["segments"], dtype=np.float32),
            windows=list(data["windows"]),
            track_sum=np.asarray(data["track_sum"], dtype=np.float64),
        )


class ClapBackend:
    """``analysis.backend = clap``: LAION-CLAP zero-shot labels, embedding batches fanned out (`models.base.AnalyserBackend`)."""

    name = "clap"
    fans_out = True
    hears_vocals = True  # a CLAP "Vocals" prominent element is heard, not guessed from descriptors

    def available(self, settings: AnalysisSettings) -> bool:
        """Whether ``analysis.clap_model`` is on this machine."""
        return clap_available(settings.clap_model)

    def analyser(self, settings: AnalysisSettings) -> ClapAnalyser:
        """The CLAP analyser the settings describe (it loads its model on first use, once per worker process)."""
        return ClapAnalyser(
            load_vocabulary(),
            model_id=settings.clap_model,
            device=settings.device,
            dtype=None if settings.clap_dtype == "auto" else settings.clap_dtype,
            batch_size=settings.clap_batch_size,
        )


BACKEND = ClapBackend()
