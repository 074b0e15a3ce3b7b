"""A weight-free vocal-activity detector for songs (librosa + numpy). No Prefect here.

Idea (REPET-SIM, Rafii & Pardo 2012): the accompaniment repeats, the voice does not. Per frame,
the median of its 20 most similar frames (cosine similarity of a 48-band log-mel up to 4.2 kHz,
frames within 2 s excluded, searched in 60 s blocks) estimates the repeating background; a soft
mask against it leaves the foreground. Per 1 s window, five foreground features feed a logistic
model: the foreground's share of the 300-3400 Hz energy, that share minus the track's median,
the spectral envelope's motion (delta-MFCC) and its 2-8 Hz "syllabic" level modulation (both
relative to the track's median), and the foreground's level.

The model was fitted on espeak speech mixed over three music beds plus nine instrumental tracks
(`docs/lyrics.md`): it tells "a voice added to this music" from "this music" well, but not a sung
song from an instrumental with a lead melody (bagpipes, orchestral lines look like a voice).
At the default threshold (p >= 0.9) it is precise and misses much: treat it as a cheap gate that
saves loading Whisper on instrumentals, not as a singing detector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DETECTOR_VERSION",
    "THRESHOLD",
    "TRACK_MIN_FRACTION",
    "VocalActivity",
    "segments_with_vocals",
    "track_has_vocals",
    "vocal_activity",
]

N_FFT = 2048
HOP = 512
BAND = (300.0, 3400.0)  # Hz: where a voice's energy sits
F_MAX = 4200.0  # Hz: every feature lives below this
COEF = {
    "fg_share": 8.3225,
    "fg_share_minus_track_median": 1.2345,
    "fg_motion_log2_rel": 3.3931,
    "fg_mod_log2_rel": 1.6426,
    "fg_level_db/10": 1.8065,
}
INTERCEPT = 0.9524
THRESHOLD = 0.9  # probability: 0.5 balances recall, 0.9 keeps instrumentals quiet
TRACK_MIN_FRACTION = 0.10  # the song has vocals when at least this share of its windows is vocal
_PARAMS = {"n_fft": N_FFT, "hop": HOP, "band": BAND, "f_max": F_MAX, "coef": COEF, "intercept": INTERCEPT}
DETECTOR_VERSION = "repet-sim-logit-1:" + hashlib.sha256(json.dumps(_PARAMS, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class VocalActivity:
    """Per-window vocal activity of a song.

    Attributes
    ----------
    window_s : float
        Window length, seconds.
    times : numpy.ndarray
        Window starts, seconds.
    probability : numpy.ndarray
        The detector's probability per window, 0..1.
    active : numpy.ndarray
        bool per window: ``probability >= threshold``.
    threshold : float
    """

    window_s: float
    times: np.ndarray
    probability: np.ndarray
    active: np.ndarray
    threshold: float
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def active_fraction(self) -> float:
        """Share of the windows that are vocal, 0..1."""
        return float(self.active.mean()) if len(self.active) else 0.0

    def regions(self, min_gap_s: float = 1.0, min_len_s: float = 1.0) -> list[tuple[float, float]]:
        """Vocal windows merged into regions.

        Parameters
        ----------
        min_gap_s : float
            Gaps shorter than this are closed, seconds.
        min_len_s : float
            Shorter regions are dropped, seconds.

        Returns
        -------
        list of (float, float)
            [start, end) seconds, sorted.
        """
        out: list[list[float]] = []
        for t, a in zip(self.times, self.active):
            if not a:
                continue
            if out and t - out[-1][1] < min_gap_s - 1e-9:
                out[-1][1] = float(t + self.window_s)
            else:
                out.append([float(t), float(t + self.window_s)])
        return [(round(a, 3), round(b, 3)) for a, b in out if b - a >= min_len_s - 1e-9]


def _background(
    S: np.ndarray, frames_per_s: float, *, sr: int, width_s: float = 2.0, block_s: float = 60.0, k: int = 20
):
    """The repeating background of magnitude spectrogram `S`.

    Per frame, the element-wise median of its `k` most similar frames (cosine similarity of log-mel
    frames, frames within +-`width_s` excluded), capped by the frame itself.

    A vectorised replacement for ``librosa.decompose.nn_filter(aggregate=np.median)``, which spends
    minutes per minute of audio in scipy.sparse; blocks of `block_s` seconds bound the O(n^2) part.
    """
    import librosa

    n = S.shape[1]
    block = max(1, int(block_s * frames_per_s))
    width = max(1, int(width_s * frames_per_s))
    mel_fb = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=48, fmax=F_MAX)[:, : S.shape[0]]
    M = librosa.power_to_db(mel_fb @ S**2, ref=np.max)
    M = M - M.mean(axis=0, keepdims=True)
    M /= np.linalg.norm(M, axis=0, keepdims=True) + 1e-9
    bg = np.empty_like(S)
    for a in range(0, n, block):
        b = min(n, a + block)
        a0 = max(0, b - block)  # the last block reaches back so it is full length
        m = b - a0
        kk = min(k, m - 2 * width - 1)
        if kk < 3:
            bg[:, a:b] = S[:, a:b]
            continue
        sim = M[:, a0:b].T @ M[:, a0:b]
        idx = np.arange(m)
        sim[np.abs(idx[:, None] - idx[None, :]) <= width] = -np.inf
        nbrs = np.argpartition(-sim, kk, axis=1)[:, :kk]
        part = S[:, a0:b]
        bg[:, a:b] = np.minimum(part, np.median(part[:, nbrs], axis=2))[:, a - a0 :]
    return bg


def _frame_features(y: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    import librosa

    S = np.abs(librosa.stft(np.asarray(y, dtype=np.float32), n_fft=N_FFT, hop_length=HOP))
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    keep = freqs <= F_MAX
    S, freqs = S[keep], freqs[keep]
    fps = sr / HOP
    bg = _background(S, fps, sr=sr)
    fg = librosa.util.softmask(S - bg, 2.0 * bg, power=2) * S
    band = (freqs >= BAND[0]) & (freqs <= BAND[1])
    P, Pfg = S**2, fg**2
    eps = 1e-10
    band_fg = Pfg[band].sum(0)
    share = band_fg / (P[band].sum(0) + eps)
    level = 10 * np.log10(band_fg + eps)
    ref = np.percentile(10 * np.log10(P[band].sum(0) + eps), 95)
    mel = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=40, fmin=200, fmax=4000)[:, : Pfg.shape[0]] @ Pfg
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel + eps), n_mfcc=13)
    motion = np.sqrt((librosa.feature.delta(mfcc[1:], width=5) ** 2).mean(0))

    def moving_average(x: np.ndarray, seconds: float) -> np.ndarray:
        w = max(1, int(round(seconds * fps)))
        return np.convolve(x, np.ones(w) / w, mode="same")

    env = np.maximum(level, level.max() - 80)
    mod = moving_average(env, 1 / 8) - moving_average(env, 1 / 2)  # 2-8 Hz: syllables
    return {
        "fg_share": share,
        "fg_motion": motion,
        "fg_level_db": level - ref,
        "fg_mod": np.sqrt(moving_average(mod**2, 1.0)),
        "fps": np.array(fps),
    }


def _windows(x: np.ndarray, fps: float, window_s: float) -> np.ndarray:
    w = max(1, int(round(window_s * fps)))
    n = int(np.ceil(len(x) / w))
    padded = np.concatenate([x, np.full(n * w - len(x), np.nan)])
    return np.nanmean(padded.reshape(n, w), axis=1)


def _window_features(f: dict[str, np.ndarray], window_s: float) -> dict[str, np.ndarray]:
    """Per-window classifier inputs, smoothed over +-1 window.

    Motion and modulation are relative to the track's own median, which removes most of the genre
    dependence.
    """
    fps = float(f["fps"])
    w = {key: _windows(f[key], fps, window_s) for key in ("fg_share", "fg_motion", "fg_level_db", "fg_mod")}

    def smooth(x: np.ndarray) -> np.ndarray:
        return np.convolve(np.nan_to_num(x), np.ones(3) / 3, mode="same")

    def log2_rel(x: np.ndarray) -> np.ndarray:
        return smooth(np.log2((x + 1e-6) / (np.nanmedian(x) + 1e-6)))

    share = smooth(w["fg_share"])
    return {
        "fg_share": share,
        "fg_share_minus_track_median": share - np.nanmedian(share),
        "fg_motion_log2_rel": log2_rel(w["fg_motion"]),
        "fg_mod_log2_rel": log2_rel(w["fg_mod"]),
        "fg_level_db/10": np.nan_to_num(w["fg_level_db"], nan=-80.0) / 10,
    }


def vocal_activity(y: np.ndarray, sr: int, *, window_s: float = 1.0, threshold: float = THRESHOLD) -> VocalActivity:
    """Per-window vocal activity of a song.

    Costs about 1-2 s of CPU per minute of audio.

    Parameters
    ----------
    y : numpy.ndarray
        Mono audio, float32.
    sr : int
        Sample rate, Hz (the stage passes 22 050).
    window_s : float
        Window length, seconds.
    threshold : float
        A window is vocal at or above this probability, 0..1.

    Returns
    -------
    VocalActivity
    """
    n_windows = int(np.ceil(len(y) / sr / window_s)) if len(y) else 0
    if len(y) < N_FFT * 4:  # too short to estimate a background: nothing is vocal
        z = np.zeros(n_windows)
        return VocalActivity(window_s, np.arange(n_windows) * window_s, z, z.astype(bool), threshold)
    w = _window_features(_frame_features(y, sr), window_s)
    z = INTERCEPT + sum(COEF[k] * w[k] for k in COEF)
    p = 1.0 / (1.0 + np.exp(-z))
    return VocalActivity(window_s, np.arange(len(p)) * window_s, p, p >= threshold, threshold, w)


def track_has_vocals(va: VocalActivity, min_fraction: float = TRACK_MIN_FRACTION) -> bool:
    """The song-level gate: whether to transcribe at all.

    Instrumental lead lines make a few windows fire; a sung song keeps many more vocal.

    Parameters
    ----------
    va : VocalActivity
    min_fraction : float
        Share of vocal windows needed, 0..1.

    Returns
    -------
    bool
    """
    return bool(len(va.active)) and va.active_fraction >= min_fraction


def segments_with_vocals(
    va: VocalActivity, segments: Sequence[tuple[float, float]], *, min_fraction: float = 0.2, min_seconds: float = 1.0
) -> list[dict]:
    """Per-segment decisions.

    Parameters
    ----------
    va : VocalActivity
    segments : sequence of (float, float)
        [start, end) seconds.
    min_fraction : float
        Share of a segment that must be vocal, 0..1.
    min_seconds : float
        Vocal time a segment needs at least, seconds.

    Returns
    -------
    list of dict
        ``{"index", "start", "end", "active_s" (seconds), "fraction" (0..1), "vocals" (bool)}``.
    """
    out = []
    for i, (a, b) in enumerate(segments):
        sel = (va.times + va.window_s > a) & (va.times < b)
        overlap = np.minimum(va.times[sel] + va.window_s, b) - np.maximum(va.times[sel], a)
        active_s = float((overlap * va.active[sel]).sum())
        fraction = active_s / max(1e-9, b - a)
        out.append(
            {
                "index": i,
                "start": a,
                "end": b,
                "active_s": round(active_s, 2),
                "fraction": round(fraction, 3),
                "vocals": bool(fraction >= min_fraction and active_s >= min_seconds),
            }
        )
    return out
