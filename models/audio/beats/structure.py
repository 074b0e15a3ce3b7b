"""Step 9 of `track_beats`: musical structure for cut planning, on any tracker's grid.

4/8-bar phrase starts and section boundaries (`song_structure` for a grid from another tracker),
and the spectral novelty curve of the rule-based cuts (`spectral_novelty`). Pure functions on
arrays (numpy, scipy, librosa). Times are seconds; features are per analysis frame of ``HOP``
samples at ``ANALYSIS_SAMPLE_RATE`` Hz (11.6 ms).

- `phrase_boundaries`: bars are counted from the downbeats; which downbeat starts a 4-bar group
  (and which 4-bar group starts an 8-bar one) is chosen by the timbre/harmony change at the
  candidate starts. Strength 0.5 (4-bar) or 1.0 (8-bar) x (0.5 + 0.5 x relative change).
- `section_boundaries`: Foote checkerboard novelty on a beat-synchronous self-similarity matrix
  of MFCC + chroma (the recurrence view of ``librosa.segment``), peaks at least 16 beats apart
  and at least 30 % of the largest, each moved onto the nearest downbeat. Strength = novelty /
  largest novelty (0..1).
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from soundsight.media import ANALYSIS_SAMPLE_RATE
from soundsight.models.audio.beats.cues import HOP, N_FFT, analysis_audio, feature_change

__all__ = ["phrase_boundaries", "section_boundaries", "song_structure", "spectral_novelty", "timbre_harmony"]


def timbre_harmony(power: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Standardised MFCC (13) + chroma (12) per frame: what sections differ in.

    Parameters
    ----------
    power : np.ndarray [shape=(1025, n)]
        Power spectrogram (2048-sample window, ``HOP`` hop, ``ANALYSIS_SAMPLE_RATE`` Hz).
    chroma : np.ndarray [shape=(12, n)]
        Chroma of the same frames.

    Returns
    -------
    np.ndarray [shape=(25, n)]
        Each row standardised to zero mean, unit variance over the song.
    """
    import librosa

    mel = librosa.feature.melspectrogram(S=power, sr=ANALYSIS_SAMPLE_RATE, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=13)
    mfcc = (mfcc - mfcc.mean(axis=1, keepdims=True)) / (mfcc.std(axis=1, keepdims=True) + 1e-9)
    chroma = chroma / (chroma.max(axis=0, keepdims=True) + 1e-9)
    chroma = (chroma - chroma.mean(axis=1, keepdims=True)) / (chroma.std(axis=1, keepdims=True) + 1e-9)
    return np.vstack([mfcc, chroma])


def _frames(t: np.ndarray, n: int) -> np.ndarray:
    return np.clip(np.round(np.asarray(t) * ANALYSIS_SAMPLE_RATE / HOP).astype(int), 0, max(0, n - 1))


def phrase_boundaries(features: np.ndarray, downbeats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4- and 8-bar phrase starts and their strength.

    Parameters
    ----------
    features : np.ndarray [shape=(d, n)]
        Per-frame features (`timbre_harmony`).
    downbeats : np.ndarray
        Seconds.

    Returns
    -------
    times : np.ndarray
        Seconds (a subset of `downbeats`); empty with fewer than 8 bars.
    strength : np.ndarray
        0..1: 0.5 for a 4-bar start, 1.0 for an 8-bar start, times 0.5 + 0.5 x its change
        (one bar before vs after) relative to the largest one.
    """
    if len(downbeats) < 8:
        return np.zeros(0), np.zeros(0)
    bar = int(round(float(np.median(np.diff(downbeats))) * ANALYSIS_SAMPLE_RATE / HOP))
    change = feature_change(features - features.min(), _frames(downbeats, features.shape[1]), max(2, bar))
    best4 = max(range(4), key=lambda o: change[o::4].mean() if len(change[o::4]) else -1)
    best8 = max((best4, best4 + 4), key=lambda o: change[o::8].mean() if len(change[o::8]) else -1)
    idx = np.arange(best4, len(downbeats), 4)
    level = np.where((idx - best8) % 8 == 0, 1.0, 0.5)
    rel = change[idx] / (change.max() + 1e-9)
    return downbeats[idx], np.clip(level * (0.5 + 0.5 * rel), 0.0, 1.0)


def section_boundaries(
    features: np.ndarray,
    beats: np.ndarray,
    downbeats: np.ndarray,
    kernel_beats: int = 16,
    min_strength: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Section boundaries on downbeats and their strength.

    Parameters
    ----------
    features : np.ndarray [shape=(d, n)]
        Per-frame features (`timbre_harmony`).
    beats, downbeats : np.ndarray
        Seconds.
    kernel_beats : int
        Half-width of the checkerboard kernel, beats (16 = four bars of 4/4); also the least
        distance between two boundaries.
    min_strength : float
        Peaks below this share (0..1) of the largest novelty are not boundaries.

    Returns
    -------
    times : np.ndarray
        Seconds, on downbeats (on beats when there are none).
    strength : np.ndarray
        0..1, novelty relative to the song's largest.
    """
    if len(beats) < 2 * kernel_beats + 2:
        return np.zeros(0), np.zeros(0)
    fr = _frames(beats, features.shape[1])
    # one column per beat, its span up to the next beat (`librosa.util.sync` adds a leading
    # column only when the first beat is after frame 0, which shifted every beat by one when not)
    ends = np.concatenate([fr[1:], [features.shape[1]]])
    sync = np.stack([features[:, a : max(a + 1, b)].mean(axis=1) for a, b in zip(fr, ends)], axis=1)
    sync = sync / (np.linalg.norm(sync, axis=0, keepdims=True) + 1e-9)
    ssm = sync.T @ sync
    k = kernel_beats
    u = np.arange(-k, k) + 0.5
    taper = np.exp(-0.5 * (u / (0.5 * k)) ** 2)
    kernel = np.outer(np.sign(u), np.sign(u)) * np.outer(taper, taper)
    n = ssm.shape[0]
    padded = np.pad(ssm, k, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * k, 2 * k))
    nov = np.array([np.sum(kernel * windows[i, i]) for i in range(n)])
    nov = np.maximum(nov, 0.0)
    nov[: k // 2] = 0.0
    nov[n - k // 2 :] = 0.0
    if nov.max() <= 0:
        return np.zeros(0), np.zeros(0)
    nov = nov / nov.max()
    peaks, _ = scipy.signal.find_peaks(nov, height=min_strength, distance=k)
    times = beats[np.clip(peaks, 0, len(beats) - 1)]
    if len(downbeats):
        times = downbeats[np.argmin(np.abs(downbeats[None, :] - times[:, None]), axis=1)]
    times, first = np.unique(times, return_index=True)
    return times, nov[peaks][first]


def song_structure(
    y: np.ndarray, sr: int, beats: np.ndarray, downbeats: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phrases and sections of a song for a grid from another tracker (e.g. beat-this).

    Parameters
    ----------
    y : np.ndarray
        The song's audio, mono or stereo, at any rate (resampled to ``ANALYSIS_SAMPLE_RATE``).
    sr : int
        Its sampling rate, Hz.
    beats, downbeats : np.ndarray
        The other tracker's grid, seconds.

    Returns
    -------
    phrases, phrase_strength, sections, section_strength : np.ndarray
        As `phrase_boundaries` and `section_boundaries`.
    """
    import librosa

    y = analysis_audio(y, sr)
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    chroma = librosa.feature.chroma_stft(S=power, sr=ANALYSIS_SAMPLE_RATE, tuning=0.0)
    feats = timbre_harmony(power, chroma)
    phr, phr_s = phrase_boundaries(feats, downbeats)
    sec, sec_s = section_boundaries(feats, beats, downbeats)
    return phr, phr_s, sec, sec_s


def spectral_novelty(y: np.ndarray, sr: int, context_seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A 0..1 novelty curve: how different the next `context_seconds` sound from the previous ones.

    Foote-style: cosine distance between the mean standardised log-mel + chroma features of the
    window before and the window after each point, divided by the song's maximum - so 0.3 means
    "30 % of the biggest change of timbre/harmony in this song".

    Parameters
    ----------
    y : np.ndarray
        Audio at `sr`.
    sr : int
        Sampling rate, Hz.
    context_seconds : float
        Window on each side, seconds (`plan_segments` uses one bar, 1.5-4 s).

    Returns
    -------
    times : np.ndarray
        Seconds, every 93 ms (2048 samples at 22 050 Hz).
    novelty : np.ndarray
        0..1.
    """
    import librosa

    y = analysis_audio(y, sr)
    hop = 2048
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=ANALYSIS_SAMPLE_RATE, hop_length=hop, n_mels=40))
    chroma = librosa.feature.chroma_stft(y=y, sr=ANALYSIS_SAMPLE_RATE, hop_length=hop)
    feats = np.vstack([(mel - mel.mean()) / (mel.std() + 1e-9), chroma * 3.0]).T
    n = len(feats)
    k = max(1, int(round(context_seconds * ANALYSIS_SAMPLE_RATE / hop)))
    csum = np.vstack([np.zeros((1, feats.shape[1])), np.cumsum(feats, axis=0)])
    novelty = np.zeros(n)
    if n > 2 * k:
        idx = np.arange(k, n - k)
        before = (csum[idx] - csum[idx - k]) / k
        after = (csum[idx + k] - csum[idx]) / k
        denom = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9
        novelty[idx] = 1.0 - (before * after).sum(1) / denom
    if novelty.max() > 0:
        novelty = novelty / novelty.max()
    return librosa.frames_to_time(np.arange(n), sr=ANALYSIS_SAMPLE_RATE, hop_length=hop), novelty
