"""Beats, downbeats and spectral novelty from audio, with librosa.

Units: times in seconds; `HOP` analysis frames of 512 samples (23.2 ms at 22 050 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

HOP = 512


@dataclass(frozen=True)
class BeatGrid:
    tempo_bpm: float
    beats: np.ndarray  # seconds
    downbeats: np.ndarray  # seconds
    confidence: float  # 0..1: how much stronger onsets are on beats than elsewhere


def onset_envelope(y: np.ndarray, sr: int) -> np.ndarray:
    """Onset strength per HOP frame (librosa's spectral flux on a mel spectrogram)."""
    return librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP)


def track_beats(y: np.ndarray, sr: int, onset_env: np.ndarray | None = None, beats_per_bar: int = 4) -> BeatGrid:
    """Beat times with librosa's dynamic-programming tracker; downbeats by bar phase.

    Downbeats are every `beats_per_bar`-th beat, starting at the phase whose beats carry the
    most low-frequency onset energy (kick drums and bass notes land on bar starts more often).
    """
    if onset_env is None:
        onset_env = onset_envelope(y, sr)
    tempo, beat_frames = librosa.beat.beat_track(onset_envelope=onset_env, sr=sr, hop_length=HOP, units="frames")
    tempo = float(np.atleast_1d(tempo)[0])
    beats = librosa.frames_to_time(beat_frames, sr=sr, hop_length=HOP)
    if len(beat_frames) == 0:
        return BeatGrid(tempo, beats, beats, 0.0)

    low = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP, fmax=200.0, n_mels=32)
    strength = low[np.minimum(beat_frames, len(low) - 1)]
    phase = int(np.argmax([strength[p::beats_per_bar].mean() if len(strength[p::beats_per_bar]) else 0.0
                           for p in range(beats_per_bar)]))
    downbeats = beats[phase::beats_per_bar]

    on_beat = onset_env[np.minimum(beat_frames, len(onset_env) - 1)].mean()
    overall = onset_env.mean() + 1e-9
    confidence = float(np.clip(1.0 - overall / max(on_beat, 1e-9), 0.0, 1.0))
    return BeatGrid(tempo, beats, downbeats, confidence)


def spectral_novelty(y: np.ndarray, sr: int, context_seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A 0..1 novelty curve: how different the next `context_seconds` sound from the last ones.

    Foote-style: cosine distance between mean log-mel + chroma features of the window before and
    the window after each point, normalised by the song's maximum. Sampled every HOP*4 samples.
    """
    hop = HOP * 4
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, hop_length=hop, n_mels=40))
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, hop_length=hop)
    feats = np.vstack([(mel - mel.mean()) / (mel.std() + 1e-9), chroma * 3.0]).T  # (frames, dims)
    n = len(feats)
    k = max(1, int(round(context_seconds * sr / hop)))
    csum = np.vstack([np.zeros((1, feats.shape[1])), np.cumsum(feats, axis=0)])
    novelty = np.zeros(n)
    for i in range(k, n - k):
        before = (csum[i] - csum[i - k]) / k
        after = (csum[i + k] - csum[i]) / k
        denom = np.linalg.norm(before) * np.linalg.norm(after) + 1e-9
        novelty[i] = 1.0 - float(before @ after) / denom
    if novelty.max() > 0:
        novelty = novelty / novelty.max()
    times = librosa.frames_to_time(np.arange(n), sr=sr, hop_length=hop)
    return times, novelty
