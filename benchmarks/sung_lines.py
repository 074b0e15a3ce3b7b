"""Sung and spoken lines from espeak-ng with exact word onsets, mixed over shared instrumentals.

Every word is synthesised on its own, so its true onset in the line is known exactly:

- ``speech``: each word at the voice's normal rate (150 words per minute), words 60 ms apart;
- ``sung``: each word on a note of a simple melody (espeak-ng's ``-p`` pitch per word, a slow rate),
  time-stretched to fill its note at the line's tempo (one beat per word, two for words of six
  letters or more), legato: a crude stand-in for singing, with vowels held.

`mix` puts a voice over a music excerpt with the voice's level over its active samples `snr_db`
above the music's over the same samples (the convention of ``tests/whisper_fixtures.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LINES", "SR", "VOICES", "Line", "load_bed", "mix", "rms", "spoken", "sung"]

SR = 16_000  # Hz: what Whisper takes

LINES = [
    "hold me closer tonight and never let me go",
    "the city lights are shining on the water",
    "we were young and we were running through the rain",
    "remember me when the summer comes again",
    "every heart has a song that it cannot say",
    "I will follow you down to the end of the road",
]
VOICES = ["en-us", "en-us+f3", "en-gb+m3", "en-gb-scotland+f2"]  # male, female and accent variants
MELODY = [0, 4, 7, 4, 9, 7, 4, 2, 0, 2, 4]  # semitone-ish steps of espeak-ng's pitch, cycled


@dataclass
class Line:
    """One synthesised line.

    Attributes
    ----------
    text : str
    audio : numpy.ndarray
        Mono float32 at `SR`.
    onsets, ends : list of float
        Each word's start and end in `audio`, seconds.
    style : {"speech", "sung"}
    voice : str
        espeak-ng voice.
    tempo : float or None
        Beats per minute of a sung line.
    """

    text: str
    audio: np.ndarray
    onsets: list[float]
    ends: list[float]
    style: str
    voice: str
    tempo: float | None

    @property
    def label(self) -> str:
        """``speech`` or ``sung <tempo> BPM``."""
        return self.style if self.tempo is None else f"sung {self.tempo:g} BPM"


def _espeak(word: str, voice: str, *, rate: int, pitch: int) -> np.ndarray:
    import librosa
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (apt-get install -y espeak-ng, or ./install.sh --test)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "w.wav"
        command = [exe, "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav), word]
        subprocess.run(command, check=True, capture_output=True)
        y, rate_in = sf.read(wav, dtype="float32", always_2d=True)
    y = librosa.resample(y.mean(axis=1), orig_sr=rate_in, target_sr=SR)
    voiced = np.flatnonzero(np.abs(y) > 10 ** (-45 / 20))
    return y[voiced[0] : voiced[-1] + 1] if voiced.size else y


def spoken(text: str, voice: str) -> Line:
    """`text` spoken word by word by espeak-ng voice `voice`."""
    pieces, onsets, ends, t = [], [], [], 0
    gap = np.zeros(int(0.06 * SR), np.float32)
    for word in text.split():
        w = _espeak(word, voice, rate=150, pitch=50)
        onsets.append(t / SR)
        ends.append((t + len(w)) / SR)
        pieces += [w, gap]
        t += len(w) + len(gap)
    return Line(text, np.concatenate(pieces), onsets, ends, "speech", voice, None)


def sung(text: str, voice: str, tempo: float, *, key: int = 0) -> Line:
    """`text` "sung" by espeak-ng voice `voice` at `tempo` beats per minute, the melody shifted by `key`."""
    import librosa

    beat = 60.0 / tempo
    pieces, onsets, ends, t = [], [], [], 0
    for k, word in enumerate(text.split()):
        pitch = int(np.clip(35 + 3 * (MELODY[k % len(MELODY)] + key), 0, 99))
        w = _espeak(word, voice, rate=90, pitch=pitch)
        beats = 2 if len(word) >= 6 else 1
        target = int(beats * beat * SR * 0.95)
        if len(w) < target:  # hold the word: stretched up to 2.5x, then silence
            w = librosa.effects.time_stretch(w, rate=max(len(w) / target, 0.4))
        w = w[:target]
        note = np.zeros(int(beats * beat * SR), np.float32)
        note[: len(w)] = w
        onsets.append(t / SR)
        ends.append((t + len(w)) / SR)
        pieces.append(note)
        t += len(note)
    return Line(text, np.concatenate(pieces), onsets, ends, "sung", voice, tempo)


def load_bed(path: Path, start: float, seconds: float) -> np.ndarray:
    """`seconds` of a track from `start`, mono float32 at `SR`."""
    import librosa

    y, _ = librosa.load(str(path), sr=SR, mono=True, offset=start, duration=seconds)
    return y.astype(np.float32)


def rms(x: np.ndarray) -> float:
    """Root mean square."""
    return float(np.sqrt(np.mean(np.square(x)) + 1e-12))


def mix(voice: np.ndarray, bed: np.ndarray | None, snr_db: float | None, at: float = 1.0) -> np.ndarray:
    """The voice placed `at` seconds into `bed` at `snr_db` (None: the voice alone, peak 0.3).

    The result lasts the bed's length, or the voice plus 1 s of silence when that is longer.
    """
    out_len = max(0 if bed is None else len(bed), int(at * SR) + len(voice) + SR)
    v = np.zeros(out_len, np.float32)
    i = int(at * SR)
    v[i : i + len(voice)] = voice
    if snr_db is None or bed is None:
        return (v * (0.3 / max(1e-6, float(np.max(np.abs(v)))))).astype(np.float32)
    b = np.zeros(out_len, np.float32)
    b[: len(bed)] = bed[:out_len]
    active = np.abs(v) > 1e-4
    y = b + v * (10 ** (snr_db / 20) * rms(b[active]) / rms(v[active]))
    y *= min(1.0, 0.99 / float(np.max(np.abs(y))))
    return y.astype(np.float32)
