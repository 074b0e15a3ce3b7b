"""Silero VAD as a second vocal cue: windows where a speech detector hears a voice. No Prefect here.

Silero VAD v6 (MIT) ships inside faster-whisper as ONNX (``faster_whisper/assets/silero_vad_v6.onnx``,
run by onnxruntime): no other package and no download. It gives a speech probability per 32 ms
frame; a vocal-check window counts as speech when at least half its frames reach 0.5.

It is used as a cue that can only add vocal windows to the weight-free check (`vocals`), never as a
gate or a filter in front of Whisper: on espeak-ng lines over the shared instrumentals it finds a
voice the weight-free check misses at 0 dB, but it loses sung lines over dense music by -6 dB
(benchmarks/lyrics_real.py). It costs about 0.1 s of CPU per audio minute.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FRAME_THRESHOLD", "SILERO_VERSION", "WINDOW_SHARE", "speech_windows"]

RATE = 16_000  # Hz: what Silero takes
FRAME = 512  # samples per Silero frame (32 ms)
FRAME_THRESHOLD = 0.5  # speech probability of a frame (Silero's own default)
WINDOW_SHARE = 0.5  # share of a window's frames that must be speech
SILERO_VERSION = f"silero-vad-6-onnx:{FRAME_THRESHOLD}/{WINDOW_SHARE}"


def speech_windows(y: np.ndarray, sr: int, n_windows: int, window_s: float = 1.0) -> np.ndarray:
    """Which windows of a song Silero VAD hears speech in.

    Parameters
    ----------
    y : numpy.ndarray
        Mono audio, float32.
    sr : int
        Its sample rate, Hz (resampled to 16 kHz here).
    n_windows : int
        How many windows to decide (those of the vocal check).
    window_s : float
        Window length, seconds; window ``i`` is [i * window_s, (i + 1) * window_s).

    Returns
    -------
    numpy.ndarray
        bool per window.
    """
    import librosa
    from faster_whisper.vad import get_vad_model

    y16 = np.asarray(y, dtype=np.float32)
    if sr != RATE:
        y16 = librosa.resample(y16, orig_sr=sr, target_sr=RATE).astype(np.float32)
    out = np.zeros(n_windows, dtype=bool)
    if not len(y16):
        return out
    padded = np.pad(y16, (0, -len(y16) % FRAME))
    speech = np.asarray(get_vad_model()(padded)).reshape(-1) >= FRAME_THRESHOLD
    frame_s = FRAME / RATE
    for i in range(n_windows):
        a = int(round(i * window_s / frame_s))
        b = int(round((i + 1) * window_s / frame_s))
        frames = speech[a:b]
        out[i] = bool(len(frames)) and frames.mean() >= WINDOW_SHARE
    return out
