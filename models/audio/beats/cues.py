"""Step 1 of `track_beats`: what the tracker reads from the audio (`compute_cues`).

One 2048/256 STFT gives three onset-like curves, each with its local mean (0.5 s) removed,
clipped at zero and scaled to unit standard deviation:

- ``mel``: log-mel spectral flux (librosa's default onset function);
- ``low``: the same flux over mel bands below 200 Hz (kick drum, bass notes);
- ``harm``: harmonic change, the chroma cosine distance between the 0.12 s before and after
  each frame (chords change on beats; hi-hats and snares do not change the harmony).

Their sum is the *beat envelope* that drives tempo estimation and the dynamic-programming
tracker. A 512/64 STFT (`fine_onset_envelope`, 2.9 ms hop) places beats on note attacks at the end.

Audio is mono at ``ANALYSIS_SAMPLE_RATE`` (22 050 Hz); "frames" are ``HOP`` samples (11.6 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage

from soundsight.media import ANALYSIS_SAMPLE_RATE

__all__ = ["HOP", "N_FFT", "Cues", "analysis_audio", "compute_cues", "feature_change", "fine_onset_envelope", "peak_at"]

HOP = 256  # analysis hop, samples (11.6 ms)
N_FFT = 2048
FINE_NFFT, FINE_HOP = 512, 64  # attack envelope: 23 ms window, 2.9 ms hop


@dataclass(frozen=True)
class Cues:
    """Everything the tracker reads from the audio.

    Attributes
    ----------
    power : np.ndarray [shape=(1025, n)]
        Power spectrogram, 2048-sample window, ``HOP`` hop.
    mel, low, harm : np.ndarray [shape=(n,)]
        Normalised onset cues (see module docstring), one value per frame.
    envelope : np.ndarray [shape=(n,)]
        Beat envelope ``mel + low + harm``.
    raw_mel, raw_low : np.ndarray [shape=(n,)]
        Unnormalised full-band and low-band flux (dB per band), for downbeat features.
    chroma, bass_chroma : np.ndarray [shape=(12, n)]
        Chroma of the whole spectrum and of the part below 250 Hz.
    times : np.ndarray [shape=(n,)]
        Frame times, seconds.
    fine_times, fine : np.ndarray
        Attack envelope (512-sample window, 64-sample hop = 2.9 ms), times in seconds.
    """

    power: np.ndarray
    mel: np.ndarray
    low: np.ndarray
    harm: np.ndarray
    envelope: np.ndarray
    raw_mel: np.ndarray
    raw_low: np.ndarray
    chroma: np.ndarray
    bass_chroma: np.ndarray
    times: np.ndarray
    fine_times: np.ndarray
    fine: np.ndarray


def analysis_audio(y: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at `ANALYSIS_SAMPLE_RATE` Hz (channels-first or channels-last stereo accepted)."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0 if y.shape[0] <= 2 and y.shape[1] > 2 else 1)
    if sr != ANALYSIS_SAMPLE_RATE:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=ANALYSIS_SAMPLE_RATE, res_type="soxr_hq")
    return y


def _normalise(x: np.ndarray, smooth_frames: int = 43) -> np.ndarray:
    """Remove the local mean (``smooth_frames`` frames, 0.5 s), clip at zero, divide by the std."""
    x = x - scipy.ndimage.uniform_filter1d(x, smooth_frames, mode="nearest")
    x = np.maximum(x, 0.0)
    return x / (x.std() + 1e-9)


def feature_change(features: np.ndarray, frames: np.ndarray, width: int) -> np.ndarray:
    """Cosine distance between the mean feature over [f - width, f) and over [f, f + width), per frame f.

    Parameters
    ----------
    features : np.ndarray [shape=(d, n)]
    frames : np.ndarray of int, frame indices where the change is measured.
    width : int, window length in frames.
    """
    f = features / (np.linalg.norm(features, axis=0, keepdims=True) + 1e-9)
    cs = np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(f, axis=1)], axis=1)
    n = f.shape[1]
    t = np.clip(np.asarray(frames, dtype=int), 0, n)
    a, b = np.clip(t - width, 0, n), np.clip(t + width, 0, n)
    before, after = cs[:, t] - cs[:, a], cs[:, b] - cs[:, t]
    num = (before * after).sum(axis=0)
    den = np.linalg.norm(before, axis=0) * np.linalg.norm(after, axis=0)
    return np.where(den > 1e-9, 1.0 - num / (den + 1e-12), 0.0)


def compute_cues(y: np.ndarray) -> Cues:
    """All cues of mono audio `y` at ``ANALYSIS_SAMPLE_RATE`` Hz (module docstring)."""
    import librosa

    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    n = power.shape[1]
    mel = librosa.feature.melspectrogram(S=power, sr=ANALYSIS_SAMPLE_RATE, n_mels=128)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    centres = librosa.mel_frequencies(n_mels=130)[1:-1]
    flux = np.maximum(0.0, np.diff(db, axis=1, prepend=db[:, :1]))
    raw_mel = flux.mean(axis=0)
    raw_low = flux[centres < 200.0].mean(axis=0)
    freqs = librosa.fft_frequencies(sr=ANALYSIS_SAMPLE_RATE, n_fft=N_FFT)
    chroma = librosa.feature.chroma_stft(S=power, sr=ANALYSIS_SAMPLE_RATE, tuning=0.0)
    bass = librosa.feature.chroma_stft(S=power * (freqs < 250.0)[:, None], sr=ANALYSIS_SAMPLE_RATE, tuning=0.0)
    harm_raw = feature_change(chroma, np.arange(n), int(round(0.12 * ANALYSIS_SAMPLE_RATE / HOP)))
    m, lo, h = _normalise(raw_mel), _normalise(raw_low), _normalise(harm_raw)
    fine_times, fine = fine_onset_envelope(y)
    return Cues(
        power,
        m,
        lo,
        h,
        m + lo + h,
        raw_mel,
        raw_low,
        chroma,
        bass,
        librosa.frames_to_time(np.arange(n), sr=ANALYSIS_SAMPLE_RATE, hop_length=HOP),
        fine_times,
        fine,
    )


def fine_onset_envelope(y: np.ndarray, sr: int = ANALYSIS_SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Short-window onset envelope: 512-sample window (23 ms), 64-sample hop (2.9 ms), 64 mel bands.

    Parameters
    ----------
    y : np.ndarray
        Mono audio at `sr`.
    sr : int
        Sampling rate, Hz.

    Returns
    -------
    times : np.ndarray
        Seconds.
    strength : np.ndarray
        Onset strength (librosa units: mean positive log-mel flux).
    """
    import librosa

    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=FINE_HOP, n_fft=FINE_NFFT, n_mels=64)
    return librosa.frames_to_time(np.arange(len(env)), sr=sr, hop_length=FINE_HOP), env


def peak_at(x: np.ndarray, frames: np.ndarray, radius: int) -> np.ndarray:
    """Max of `x` within +-`radius` frames of each frame (0 outside the signal)."""
    frames = np.asarray(frames, dtype=int)
    if len(x) == 0 or len(frames) == 0:
        return np.zeros(len(frames))
    win = scipy.ndimage.maximum_filter1d(x, 2 * radius + 1, mode="constant")
    ok = (frames >= 0) & (frames < len(x))
    out = np.zeros(len(frames))
    out[ok] = win[frames[ok]]
    return out
