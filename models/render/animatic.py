"""The embedded renderer: an audio-reactive animatic, one clip per scene, on the CPU.

A storyboard to judge the script and the cuts before spending GPU hours. Every frame shows:
  - the run's palette (from the visual-style label) as a gradient: one look for all scenes;
  - a pulsing disc whose size and brightness follow that segment's RMS energy;
  - a ring that bursts outwards on every onset (positive energy flux);
  - a 24-band spectrum along the bottom edge;
  - the scene sentence as a caption, and the scene number with its time span.

Frames are drawn with numpy on precomputed maps and piped to ffmpeg (libx264), exactly
`job.frames` of them at `job.fps`, so assembly can concatenate clips without re-encoding.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from soundsight.media import FrameEncoder
from soundsight.models.base import ClipInfo, RenderSpec, SceneJob

__all__ = ["RENDERER_ID", "AnimaticRenderer", "audio_envelopes"]

RENDERER_ID = "animatic-v2"
BANDS = 24
# (top colour, bottom colour, accent) per visual-style option of vocabulary.toml, RGB 0..1.
PALETTES = {
    "Vibrant and colorful": ((0.95, 0.35, 0.45), (0.20, 0.15, 0.55), (1.00, 0.85, 0.25)),
    "Monochromatic or limited color palette": ((0.55, 0.62, 0.70), (0.10, 0.12, 0.16), (0.85, 0.90, 0.95)),
    "Dark and moody": ((0.18, 0.12, 0.22), (0.02, 0.02, 0.05), (0.75, 0.25, 0.30)),
    "Soft pastel tones": ((0.98, 0.80, 0.85), (0.70, 0.82, 0.95), (1.00, 1.00, 0.90)),
    "High-contrast neon": ((0.05, 0.00, 0.15), (0.00, 0.00, 0.02), (0.10, 1.00, 0.85)),
    "Warm golden tones": ((0.98, 0.70, 0.30), (0.35, 0.15, 0.05), (1.00, 0.95, 0.70)),
}
DEFAULT_PALETTE = PALETTES["Vibrant and colorful"]


def audio_envelopes(
    audio: np.ndarray, sample_rate: int, frames: int, fps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output frame: RMS level (0..1), onset strength (0..1) and a BANDS-band spectrum (0..1).

    Each frame looks at a 2048-sample window centred on the frame's time (92.9 ms at 22.05 kHz).
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


class AnimaticRenderer:
    """Renders a `SceneJob` as an audio-reactive storyboard clip at the output frame rate."""

    name = "animatic"
    backend_id = RENDERER_ID

    def __init__(self, fps: int):
        # Works on the output grid directly: any frame count, no retiming needed.
        self.spec = RenderSpec(native_fps=float(fps))

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        # The moving picture is drawn at half resolution (4x fewer pixels to compute) and scaled
        # up by ffmpeg; the caption is overlaid by ffmpeg at full resolution so text stays sharp.
        """Render `job` into the MP4 `out_path` (written atomically)."""
        W, H, n = job.width, job.height, job.frames
        w, h = max(8, W // 2), max(8, H // 2)
        top, bottom, accent = (np.array(c, np.float32) for c in PALETTES.get(job.palette_hint, DEFAULT_PALETTE))

        # 1. What never changes within the scene: background, distance map, band layout.
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        background = (top * (1 - t) + bottom * t) * np.ones((1, w, 1), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        radius_map = np.hypot(xx - w / 2, yy - h * 0.42)
        band_of_x = np.minimum((np.arange(w) * BANDS / w).astype(int), BANDS - 1)
        bar_zone = int(h * 0.22)
        rows = np.arange(bar_zone)[::-1][:, None]

        # 2. What the music drives, one value per frame.
        audio = job.audio if job.audio is not None else np.zeros(int(job.seconds * job.sample_rate), np.float32)
        level, onset, bands = audio_envelopes(audio, job.sample_rate, n, job.fps)

        # 3. Draw each frame and stream it to ffmpeg, which scales, captions and encodes.
        base_r, ring_r = 0.10 * h, 0.0
        with tempfile.TemporaryDirectory() as scratch:
            caption = Path(scratch) / "caption.png"
            self._caption(job, W, H).save(caption, format="PNG")
            graph = f"[0:v]format=yuv420p,scale={W}:{H}:flags=bilinear[bg];[bg][1:v]overlay=0:0:format=yuv420"
            with FrameEncoder(
                out_path, width=w, height=h, fps=job.fps, frames=n, inputs=(caption,), filter_complex=graph
            ) as encoder:
                for i in range(n):
                    ring_r = ring_r + 0.04 * h if onset[i] < 0.15 else base_r
                    disc = np.clip(base_r * (0.8 + 1.2 * level[i]) - radius_map, 0.0, 1.0)
                    ring = np.clip(1.5 - np.abs(radius_map - ring_r), 0.0, 1.0) * (0.3 + 0.7 * onset[i])
                    glow = np.maximum(disc * (0.6 + 0.4 * level[i]), ring)[..., None]
                    frame = background * ((0.55 + 0.45 * level[i]) * (1 - glow)) + accent * glow
                    bars = (rows < (bands[i][band_of_x] * bar_zone)[None, :])[..., None] * np.float32(0.5)
                    frame[h - bar_zone :] = frame[h - bar_zone :] * (1 - bars) + accent * bars
                    encoder.write((frame * 255).astype(np.uint8))
        return ClipInfo(out_path, n, float(job.fps), W, H)

    @staticmethod
    def _caption(job: SceneJob, w: int, h: int) -> Image.Image:
        """The scene sentence (bottom) and 'SCENE n' (top left) as a transparent RGBA image."""
        overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        size = max(10, h // 24)
        font = ImageFont.load_default(size=size)
        small = ImageFont.load_default(size=max(8, int(size * 0.8)))
        chars = max(20, int(w / (size * 0.55)))
        lines = textwrap.wrap(job.caption, width=chars)[:4]
        box_h = (len(lines) + 1) * int(size * 1.25)
        draw.rectangle([0, h - box_h - int(h * 0.02), w, h], fill=(0, 0, 0, 140))
        for k, line in enumerate(lines):
            draw.text((size, h - box_h + k * int(size * 1.25)), line, font=font, fill=(255, 255, 255, 255))
        draw.text((size // 2, size // 2), f"SCENE {job.index + 1}", font=small, fill=(255, 255, 255, 230))
        return overlay
