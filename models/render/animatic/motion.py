"""What moves with the music: audio envelopes per frame, hops on the beats, camera moves, particles."""

from __future__ import annotations

import numpy as np

from soundsight.models.render.animatic.shots import PaletteRoles

__all__ = ["BANDS", "Particles", "audio_envelopes", "camera_path", "hops", "onset_beats"]

BANDS = 24


def audio_envelopes(
    audio: np.ndarray, sample_rate: int, frames: int, fps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output frame: RMS level, onset strength and a BANDS-band spectrum, each 0..1.

    Parameters
    ----------
    audio : numpy.ndarray
        Mono samples of the scene.
    sample_rate : int
        Hz.
    frames : int
        Output frames.
    fps : int
        Output frames per second.

    Returns
    -------
    level, onset : numpy.ndarray
        (frames,) each; a 2048-sample window centred on each frame's time (92.9 ms at 22.05 kHz).
    bands : numpy.ndarray
        (frames, BANDS).
    """
    n_fft = 2048
    padded = np.pad(audio.astype(np.float32), (n_fft // 2, n_fft))
    centres = (np.arange(frames) / fps * sample_rate).astype(int) + n_fft // 2
    idx = centres[:, None] + np.arange(-n_fft // 2, n_fft // 2)[None, :]
    idx = np.clip(idx, 0, len(padded) - 1)
    windows = padded[idx] * np.hanning(n_fft).astype(np.float32)
    rms = np.sqrt(np.mean(windows**2, axis=1))
    level = np.clip((20 * np.log10(rms + 1e-6) + 45.0) / 40.0, 0.0, 1.0)
    onset = np.clip(np.diff(level, prepend=level[:1]) * 6.0, 0.0, 1.0)
    spectrum = np.abs(np.fft.rfft(windows, axis=1))[:, 1:]
    edges = np.geomspace(1, spectrum.shape[1], BANDS + 1).astype(int)
    bands = np.stack([spectrum[:, a : max(b, a + 1)].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    bands = np.clip((20 * np.log10(bands + 1e-6) + 10.0) / 50.0, 0.0, 1.0)
    return level, onset, bands


def hops(times: np.ndarray, beats: np.ndarray, length: float = 0.22) -> np.ndarray:
    """0..1 per frame: a hop that rises and lands within `length` seconds after each beat."""
    if len(beats) == 0:
        return np.zeros_like(times)
    dt = times[:, None] - beats[None, :]
    shape = np.where((dt >= 0) & (dt < length), np.sin(np.pi * np.clip(dt / length, 0, 1)), 0.0)
    return shape.max(axis=1)


def onset_beats(onset: np.ndarray, fps: int) -> np.ndarray:
    """Beat stand-ins, seconds: onset peaks above 0.3 at least 0.25 s apart."""
    peaks, last = [], -1e9
    for i in range(1, len(onset) - 1):
        if onset[i] > 0.3 and onset[i] >= onset[i - 1] and onset[i] >= onset[i + 1] and i / fps - last > 0.25:
            peaks.append(i / fps)
            last = i / fps
    return np.array(peaks)


def camera_path(move: str, progress: np.ndarray, direction: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: zoom (>= 1) and offsets x, y (fractions of the view) of a camera move."""
    e = progress * progress * (3 - 2 * progress)  # ease in and out
    zero = np.zeros_like(e)
    if move == "push_in":
        return 1.0 + 0.45 * e, zero, zero
    if move == "close":
        return 1.02 + 0.1 * e, zero, zero
    if move == "rise":
        return 1.04 + zero, zero, (0.5 - e) * 0.3
    if move == "pan":
        return 1.04 + zero, (e - 0.5) * 0.32 * direction, zero
    return 1.0 + 0.04 * e, zero, zero  # still: a slow breath


class Particles:
    """Particles drifting over the picture, in view pixels (working resolution)."""

    def __init__(self, kind: str, w: int, h: int, rng: np.random.Generator, roles: PaletteRoles):
        count = {"rain": 110, "stars": 70, "fireflies": 36, "embers": 50}.get(kind, 60)
        self.kind, self.w, self.h = kind, w, h
        self.p0 = rng.uniform(0, 1, (count, 2)) * [w, h]
        self.phase = rng.uniform(0, 2 * np.pi, count)
        speed = {"rain": (40, 220), "stars": (0, 0), "fireflies": (6, -4), "embers": (4, -22)}.get(kind, (5, -3))
        self.velocity = np.array(speed, np.float32) * rng.uniform(0.6, 1.4, (count, 1))
        self.colour = roles.light if kind in ("rain", "stars", "dust") else roles.accent
        self.alpha = {"rain": 0.35, "stars": 0.7, "fireflies": 0.9, "embers": 0.8}.get(kind, 0.4)
        if kind == "stars":
            self.p0[:, 1] *= 0.45
        offsets = {"rain": [(0, 0), (1, 1), (2, 2)], "fireflies": [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]}
        self.offsets = np.array(offsets.get(kind, [(0, 0), (1, 0)]))
        self.weights = np.array([1.0] + [0.45] * (len(self.offsets) - 1), np.float32)

    def draw(self, picture: np.ndarray, t: float, glow: float) -> None:
        """Add the particles at time `t` seconds, `glow` (0..1+) times their brightness, to `picture`."""
        pos = self.p0 + self.velocity * t
        if self.kind in ("fireflies", "embers", "dust"):
            pos[:, 0] += 3.0 * np.sin(t * 1.7 + self.phase)
        pos[:, 0] %= self.w
        pos[:, 1] %= self.h
        alpha = self.alpha * glow
        if self.kind in ("stars", "fireflies"):
            alpha = alpha * (0.55 + 0.45 * np.sin(t * 3.0 + self.phase))[:, None]
        xs = (pos[:, None, 0] + self.offsets[None, :, 0]).astype(int) % self.w
        ys = (pos[:, None, 1] + self.offsets[None, :, 1]).astype(int) % self.h
        flat = picture.reshape(-1, 3)
        amount = np.broadcast_to(np.asarray(alpha, np.float32).reshape(-1, 1), (len(pos), 1)) * self.weights[None, :]
        np.add.at(flat, (ys * self.w + xs).ravel(), (amount.reshape(-1, 1) * self.colour[None, :]))
