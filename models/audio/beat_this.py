"""Optional learned beat tracker: beat-this (Foscarin et al., ISMIR 2024; MIT) without torchaudio.

``segment.beat_tracker = "beat_this"`` with ``segment.beat_checkpoint`` = a checkpoint file the
user downloaded. Nothing is downloaded here: a missing file raises `MissingCheckpointError` with
the command that fetches it (beat-this's own loader would download silently).

The beat-this package (1.1.0) declares torchaudio as a requirement, and PyPI's torchaudio does
not work beside soundsight's CPU torch; so it is not in pyproject's extras. Install it without
dependencies (its model and postprocessor need only torch, einops and rotary-embedding-torch)::

    .venv/bin/pip install --no-deps beat-this==1.1.0 einops rotary-embedding-torch

Only ``beat_this.preprocessing`` uses torchaudio (its mel front end and an audio loader); `log_mel`
rebuilds that front end with ``torch.stft`` and librosa's mel filters, and ``beat_this.inference``
is imported with a stand-in ``torchaudio`` that exists only during that import (and raises if
called). The model class, chunked inference and postprocessor are the package's own.

Front end (read from beat-this 1.1.0's ``LogMelSpect`` and ``Audio2Frames``): mono at 22 050 Hz,
STFT with a 1024-sample periodic Hann window and 441-sample hop (50 frames per second), centre
reflect padding, divided by sqrt(sum(window^2)), magnitude; 128 Slaney mel bands 30-11 000 Hz
without filter normalisation; ``log1p(1000 * mel)``; shape (frames, 128).

CPU cost: the full-size model (20 M parameters) needs minutes per song on a laptop CPU, far over
the segment stage's 0.05 x duration budget: it is meant for machines with a GPU (``device``).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from soundsight.errors import MissingCheckpointError, SoundsightError
from soundsight.media import sha256_file
from soundsight.models.audio.beats.confidence import tempo_regularity
from soundsight.models.audio.beats.structure import song_structure
from soundsight.models.base import BeatGrid
from soundsight.settings import SegmentSettings

__all__ = [
    "BACKEND",
    "CHECKPOINT_HINT",
    "INSTALL_HINT",
    "BeatThisTracker",
    "load_beat_this",
    "log_mel",
    "track_beats_beat_this",
]

NAME = "beat_this"  # its key in soundsight.backends.BEAT_TRACKERS, and BeatGrid.tracker of its grids
# beat-this's input rate, fixed by its checkpoints (not the run's analysis rate, which it resamples from)
MODEL_SAMPLE_RATE = 22050  # Hz
N_FFT = 1024
HOP = 441  # samples: 50 frames per second
FPS = 50.0
F_MIN, F_MAX, N_MELS = 30.0, 11000.0, 128  # Hz, Hz, bands
LOG_MULTIPLIER = 1000.0
CHECKPOINT_URL = "https://cloud.cp.jku.at/public.php/dav/files/7ik4RrBKTS273gp"  # beat-this 1.1.0's CHECKPOINT_URL
INSTALL_HINT = ".venv/bin/pip install --no-deps beat-this==1.1.0 einops rotary-embedding-torch"
CHECKPOINT_HINT = (
    f"curl -L -o final0.ckpt {CHECKPOINT_URL}/final0.ckpt  and set segment.beat_checkpoint to that file "
    "(other checkpoints: small0.ckpt, fold0.ckpt ...)"
)


def log_mel(y: np.ndarray, sr: int):
    """beat-this's input spectrogram (module docstring) as a torch tensor.

    Parameters
    ----------
    y : np.ndarray
        Mono audio (or (samples, channels)), float.
    sr : int
        Sampling rate of `y`, Hz (resampled to 22 050 Hz with soxr when different).

    Returns
    -------
    torch.Tensor [shape=(frames, 128)]
        50 frames per second, float32.
    """
    import librosa
    import torch

    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if sr != MODEL_SAMPLE_RATE:
        import soxr

        y = soxr.resample(y, sr, MODEL_SAMPLE_RATE)
    x = torch.tensor(y, dtype=torch.float32)
    window = torch.hann_window(N_FFT)
    # torch.stft's defaults (centred frames, reflect padding, one-sided, unnormalised) are beat-this's front end
    spec = torch.stft(x, N_FFT, hop_length=HOP, window=window, return_complex=True)
    mag = (spec / window.pow(2.0).sum().sqrt()).abs()
    fb = librosa.filters.mel(
        sr=MODEL_SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX, htk=False, norm=None
    )
    mel = torch.tensor(fb, dtype=torch.float32) @ mag
    return torch.log1p(LOG_MULTIPLIER * mel).T.contiguous()


def _inference_module() -> types.ModuleType:
    """``beat_this.inference``, imported with a stand-in ``torchaudio`` if the real one does not import."""
    try:
        import beat_this.model.beat_tracker  # noqa: F401 - raises ImportError when the package is missing
    except ImportError as exc:
        raise SoundsightError(
            f"segment.beat_tracker=beat_this needs the beat-this package ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    if "beat_this.inference" in sys.modules:
        return sys.modules["beat_this.inference"]
    try:
        import torchaudio  # noqa: F401

        stub = None
    except Exception:  # noqa: BLE001 - missing, or present but broken beside this torch
        stub = types.ModuleType("torchaudio")

        def _unavailable(*_args, **_kwargs):
            raise RuntimeError("torchaudio is not available: soundsight computes beat-this's spectrogram itself")

        stub.load = _unavailable
        stub.transforms = types.SimpleNamespace(MelSpectrogram=_unavailable)
        sys.modules["torchaudio"] = stub
    try:
        import beat_this.inference as inference
    finally:
        if stub is not None and sys.modules.get("torchaudio") is stub:
            del sys.modules["torchaudio"]
    return inference


@lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int, device: str):
    try:
        return _inference_module().load_model(path, device)
    except SoundsightError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: say which and why
        raise SoundsightError(f"{path}: not a usable beat-this checkpoint ({type(exc).__name__}: {exc})") from exc


def load_beat_this(checkpoint: str | Path, device: str = "cpu"):
    """A beat-this model from a local checkpoint file (never downloads).

    Parameters
    ----------
    checkpoint : str or Path
        A Lightning checkpoint as beat-this publishes them (``hyper_parameters`` + ``state_dict``
        with a ``model.`` prefix), saved with ``torch.save``.
    device : str
        torch device.

    Returns
    -------
    beat_this.model.beat_tracker.BeatThis
        In eval mode; cached per file and modification time.

    Raises
    ------
    MissingCheckpointError
        `checkpoint` is empty or not a file (the message says how to download one).
    SoundsightError
        The beat-this package is not installed, or the file is not a beat-this checkpoint.
    """
    path = Path(str(checkpoint)).expanduser() if str(checkpoint) else None
    if path is None or not path.is_file():
        raise MissingCheckpointError(str(checkpoint) or "beat-this (segment.beat_checkpoint is empty)", CHECKPOINT_HINT)
    return _load(str(path.resolve()), path.stat().st_mtime_ns, device)


def track_beats_beat_this(model, y: np.ndarray, sr: int, device: str = "cpu") -> BeatGrid:
    """Beats and downbeats from a beat-this model, with the built-in phrase/section analysis.

    Parameters
    ----------
    model : BeatThis
        From `load_beat_this`.
    y : np.ndarray
        Mono audio at `sr`.
    sr : int
        Sampling rate, Hz.
    device : str
        torch device the model is on.

    Returns
    -------
    BeatGrid
        ``tracker = "beat_this"``. Confidence = sqrt(mean beat probability at the beats) x
        `beats.confidence.tempo_regularity`; 0 with fewer than eight beats.
    """
    import torch
    from beat_this.model.postprocessor import Postprocessor

    inference = _inference_module()
    spect = log_mel(y, sr).to(device)
    with torch.inference_mode():
        pred = inference.split_predict_aggregate(
            spect=spect, chunk_size=1500, overlap_mode="keep_first", border_size=6, model=model
        )
    beat_logits, down_logits = pred["beat"].float().cpu(), pred["downbeat"].float().cpu()
    beats, downbeats = Postprocessor(type="minimal", fps=int(FPS))(beat_logits, down_logits)
    beats = np.asarray(beats, dtype=float)
    downbeats = np.asarray(downbeats, dtype=float)
    if len(beats) < 2:
        return BeatGrid(0.0, beats, downbeats, 0.0, tracker=NAME)
    prob = torch.sigmoid(beat_logits).numpy()
    frames = np.clip(np.round(beats * FPS).astype(int), 0, len(prob) - 1)
    at_beats = prob[frames]
    terms = {"on_attack": float(np.mean(at_beats)), "regularity": tempo_regularity(beats)}
    confidence = float(np.sqrt(terms["on_attack"]) * terms["regularity"]) if len(beats) >= 8 else 0.0
    # downbeats from the model's own head; meter = median beats between them
    per_bar = 4
    if len(downbeats) > 2:
        counts = np.diff(np.searchsorted(beats, downbeats - 1e-3))
        per_bar = 3 if np.median(counts) <= 3 else 4
    phr, phr_s, sec, sec_s = song_structure(y, sr, beats, downbeats)
    return BeatGrid(
        tempo_bpm=60.0 / float(np.median(np.diff(beats))),
        beats=beats,
        downbeats=downbeats,
        confidence=confidence,
        beats_per_bar=per_bar,
        strength=np.clip(at_beats, 0.0, 1.0),
        phrase_boundaries=phr,
        phrase_strength=phr_s,
        section_boundaries=sec,
        section_strength=sec_s,
        confidence_terms={k: round(float(v), 4) for k, v in terms.items()},
        tracker=NAME,
    )


@dataclass(frozen=True)
class BeatThisTracker:
    """beat-this as a `BeatTracker`: the checkpoint file ``segment.beat_checkpoint``, on a GPU when one is visible."""

    name: str = NAME

    def identity(self, settings: SegmentSettings) -> str:
        """The checkpoint's content: ``beat_this=<sha256>``, or ``beat_this=missing``."""
        checkpoint = Path(settings.beat_checkpoint).expanduser() if settings.beat_checkpoint else None
        return f"beat_this={sha256_file(checkpoint) if checkpoint and checkpoint.is_file() else 'missing'}"

    def track(self, y: np.ndarray, sr: int, settings: SegmentSettings) -> BeatGrid:
        """`track_beats_beat_this` with the checkpoint ``settings.beat_checkpoint`` (`load_beat_this`)."""
        from soundsight.models.hub import resolve_device

        device = resolve_device("auto")
        return track_beats_beat_this(load_beat_this(settings.beat_checkpoint, device), y, sr, device)


BACKEND = BeatThisTracker()
