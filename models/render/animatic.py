"""The embedded renderer: a storyboard of the run's visual bible, one clip per scene, on the CPU.

What a newcomer sees first, and what a person judges the script's pacing and look from before
spending GPU hours. Every clip is drawn from the run's `VisualBible` and the scene sentence:

- the bible's palette, and only it: sky, silhouettes and figures are palette colours (the
  palette also stands as swatches in the top bar);
- a title card over the first `title_seconds` of scene 0: the title, the characters with
  their descriptions, the setting, lighting, camera and the named palette;
- a layout read from the sentence (``prompts/storyboard.toml``): open plain, forest, water,
  city skyline, ruins, sky islands or an interior, drawn procedurally in parallax layers, with
  the bible's characters as silhouettes (beast, bird or person, from their descriptions);
- a camera move read from the sentence: push-in, close-up, crane up, pan or a still frame, and
  light effects (a fade, a change of light halfway);
- motion from the music: figures hop on every beat (``SceneJob.beat_times``), particles flare
  and the camera bumps on onsets, brightness follows the RMS level, beat ticks light up on the
  timeline in the top bar;
- the scene sentence as a caption, the scene number and time span and the shot in the top bar;
- a visible cut: every clip but the first opens on a two-frame flash of the palette's light.

Frames are drawn with numpy at half the output size on layers prepared once per clip, then
scaled, captioned (text overlaid at full size, so it stays sharp) and encoded by ffmpeg through
`soundsight.media.FrameEncoder`: exactly ``job.frames`` frames at ``job.fps``.
"""

from __future__ import annotations

import re
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from soundsight.media import FrameEncoder
from soundsight.models.base import ClipInfo, RenderSpec, SceneJob
from soundsight.prompts import load_storyboard
from soundsight.schemas import Character, VisualBible

__all__ = ["RENDERER_ID", "AnimaticRenderer", "Shot", "audio_envelopes", "fallback_bible", "palette_roles", "read_shot"]

RENDERER_ID = "animatic-v3"
BANDS = 24
TOP_BAR, BOTTOM_BAR = 0.1, 0.17  # of the frame height: scene info and timeline / caption
SOURCE_SCALE = 2  # layers are drawn at twice the working resolution, for smooth camera moves
MARGIN_X, MARGIN_Y = 0.3, 0.2  # layer canvas beyond the view, for pans and rises, of the view size
CUT_FLASH = (0.85, 0.45)  # how far the first frames of a clip are washed with the palette's light
LAYER_DEPTH = {"sky": 0.05, "far": 0.3, "mid": 0.65, "near": 1.3}


# -- audio ---------------------------------------------------------------------------------------


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


# -- what to draw --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """How one scene is staged: what the sentence and the bible say, read by `read_shot`.

    layout : "interior", "water", "forest", "city", "ruins", "sky" or "plain".
    move : camera move, "push_in", "close", "rise", "pan" or "still".
    effect : "", "fade" (the light dims to the end) or "flash" (a change of light halfway).
    particles : "dust", "rain", "stars", "fireflies" or "embers".
    action : what the characters do: "run" (cross the frame), "rise" (lift off), "rest" (stay
        low) or "" (stand and hop on the beats).
    """

    layout: str
    move: str
    effect: str
    particles: str
    action: str = ""


def _matches(text: str, words: list[str]) -> bool:
    return any(re.search(r"\b" + re.escape(word.lower()), text) for word in words)


def _first_match(text: str, table: dict[str, list[str]], default: str) -> str:
    return next((name for name, words in table.items() if _matches(text, words)), default)


def read_shot(sentence: str, bible: VisualBible, index: int = 0) -> Shot:
    """The staging of a scene from its sentence (any writer's) and the run's bible.

    Parameters
    ----------
    sentence : str
        The scene sentence.
    bible : VisualBible
        The run's bible: its setting and location labels give the layout when no word of the
        sentence does, its visual setting the particles.
    index : int
        Scene index: without a camera word, scenes alternate between a pan and a push-in.

    Returns
    -------
    Shot
    """
    board = load_storyboard()
    text = sentence.lower()
    for character in bible.characters:  # "a bat" or "a moth the size of a kite" say nothing of the place
        text = text.replace(character.description.lower(), " ")
    # A place of the bible named in the sentence decides the layout ("outruns a rushing wave on a
    # skybridge" is a city, not the sea); else any word of the sentence.
    place = next((p.lower() for p in bible.places if p.lower() in text), text)
    setting, location = bible.labels.get("visual_setting", ""), bible.labels.get("location", "exterior")
    default = board["default_layouts"].get(
        "interior" if location == "interior" else f"{setting}.exterior",
        "interior" if location == "interior" else "plain",
    )
    return Shot(
        layout=_first_match(place, board["layouts"], default),
        move=_first_match(text, board["moves"], ("pan", "push_in")[index % 2]),
        effect=_first_match(text, board["effects"], ""),
        particles=board["particles"].get(setting, "dust"),
        action=_first_match(text, board["actions"], ""),
    )


def fallback_bible(palette_hint: str = "") -> VisualBible:
    """A bible for jobs that carry none: the palette of the visual style `palette_hint`, one figure."""
    from soundsight.models.script.bible import palette_for  # only here: renderers need no script writer

    return VisualBible(
        characters=[Character(name="", description="the protagonist")],
        setting="an open landscape",
        palette=palette_for(palette_hint, ""),
        lighting="",
        camera="",
        labels={"visual_style": palette_hint},
    )


@dataclass(frozen=True)
class PaletteRoles:
    """What each palette colour paints, sRGB 0..1: from darkest (shadow) to lightest (light)."""

    shadow: np.ndarray
    deep: np.ndarray
    mid: np.ndarray
    light: np.ndarray
    accent: np.ndarray
    second: np.ndarray  # the second character's colour


def palette_roles(bible: VisualBible) -> PaletteRoles:
    """Roles of the bible's palette colours, by CIELAB lightness and chroma.

    The darkest colour is the shadow, the lightest the light, the most chromatic of the rest the
    accent (the lead character, particles, lit windows); the others are deep and mid tones.
    """
    from skimage.color import rgb2lab

    rgb = np.array([c.rgb() for c in bible.palette], np.float32) / 255.0
    lab = rgb2lab(rgb[None].astype(np.float64))[0]
    order = list(np.argsort(lab[:, 0]))
    shadow, light = order[0], order[-1]
    rest = order[1:-1]
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    accent = max(rest, key=lambda i: chroma[i])
    tones = [i for i in rest if i != accent] or [accent]
    deep, mid = tones[0], tones[-1]
    second = max((i for i in order if i not in (accent, shadow)), key=lambda i: chroma[i] + 0.3 * lab[i, 0])
    return PaletteRoles(*(rgb[i] for i in (shadow, deep, mid, light, accent, second)))


# -- layers --------------------------------------------------------------------------------------


class _Canvas:
    """Coordinate grids of a layer canvas (source pixels) and helpers to paint RGBA shapes on it."""

    def __init__(self, width: int, height: int, view_w: int, view_h: int):
        self.w, self.h, self.view_w, self.view_h = width, height, view_w, view_h
        self.y, self.x = np.mgrid[0:height, 0:width].astype(np.float32)
        self.x0, self.y0 = (width - view_w) / 2, (height - view_h) / 2  # view origin on the canvas

    def vy(self, fraction: float) -> float:
        """Canvas y of a fraction of the view height."""
        return self.y0 + fraction * self.view_h

    def vx(self, fraction: float) -> float:
        """Canvas x of a fraction of the view width."""
        return self.x0 + fraction * self.view_w

    def layer(self) -> np.ndarray:
        return np.zeros((self.h, self.w, 4), np.float32)


def _paint(layer: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> None:
    """Paint `colour` where `mask` (0..1) is set, over what `layer` (premultiplied RGBA) holds."""
    a = (np.clip(mask, 0.0, 1.0) * alpha)[..., None]
    layer[..., :3] = layer[..., :3] * (1 - a) + colour * a
    layer[..., 3:] = layer[..., 3:] * (1 - a) + a


def _edge(d: np.ndarray) -> np.ndarray:
    """A one-pixel antialiased mask from a signed distance (negative inside)."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _ridge(c: _Canvas, base: float, amp: float, freqs: tuple[float, ...], phase: float) -> np.ndarray:
    """Mask below a wavy ridge line at view fraction `base` +/- `amp` (sum of sines)."""
    line = np.zeros(c.w, np.float32)
    for k, f in enumerate(freqs):
        line += np.sin(c.x[0] / c.view_w * f * 2 * np.pi + phase * (k + 1)) / (k + 1)
    line = c.vy(base) - amp * c.view_h * line / sum(1 / (k + 1) for k in range(len(freqs)))
    return _edge(line[None, :] - c.y)


def _trees(c: _Canvas, base: float, height: float, count: int, rng: np.random.Generator, width: float = 0.5, avoid=()):
    """Mask of pine silhouettes standing on view fraction `base`, `height` of the view tall.

    `avoid`: (start, stop) view fractions kept clear (where the characters stand).
    """
    mask = np.zeros((c.h, c.w), np.float32)
    for xc in rng.uniform(0, c.w, count):
        if any(c.vx(a) < xc < c.vx(b) for a, b in avoid):
            continue
        h = height * c.view_h * rng.uniform(0.7, 1.2)
        top, foot = c.vy(base) - h, c.vy(base)
        rows = slice(max(0, int(top)), min(c.h, int(foot + 3)))
        cols = slice(max(0, int(xc - width * h)), min(c.w, int(xc + width * h) + 1))
        y, x = c.y[rows, cols], c.x[rows, cols]
        inside = (y > top) & (y < foot) & (np.abs(x - xc) < width * h * 0.5 * ((y - top) / h))
        trunk = (y >= foot - 0.15 * h) & (y < foot + 2) & (np.abs(x - xc) < 0.04 * h)
        np.maximum(mask[rows, cols], (inside | trunk).astype(np.float32), out=mask[rows, cols])
    return mask


def _buildings(c: _Canvas, base: float, tallest: float, count: int, rng: np.random.Generator):
    """(mask, windows) of a row of buildings standing on view fraction `base`."""
    mask = np.zeros((c.h, c.w), np.float32)
    windows = np.zeros((c.h, c.w), np.float32)
    edges = np.concatenate([[0], np.sort(rng.uniform(0, c.w, count)), [c.w]])
    for a, b in zip(edges[:-1], edges[1:]):
        top = c.vy(base) - tallest * c.view_h * rng.uniform(0.35, 1.0)
        rows = slice(max(0, int(top) + 1), min(c.h, int(c.vy(base) + 4)))
        cols = slice(int(a) + 2, max(int(a) + 2, int(b) - 2))
        y, x = c.y[rows, cols], c.x[rows, cols]
        mask[rows, cols] = 1.0
        lit = ((x - a) % 9 < 3) & ((y - top) % 11 < 4) & (y > top + 6)
        lit &= np.sin(x * 0.7 + y * 1.3 + rng.random() * 7) > 0.3
        windows[rows, cols] = lit
    return mask, windows


def _figure_mask(kind: str, size: float) -> np.ndarray:
    """A silhouette (alpha 0..1) of a beast, a bird or a person, `size` source pixels tall."""
    s = max(8, int(size))
    h, w = s, int(s * (1.5 if kind != "person" else 0.7))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.full((h, w), np.inf, np.float32)

    def ellipse(cx, cy, rx, ry):
        return (np.hypot((x - cx) / rx, (y - cy) / ry) - 1.0) * min(rx, ry)

    def box(x0, y0, x1, y1):
        return np.maximum(np.maximum(x0 - x, x - x1), np.maximum(y0 - y, y - y1))

    if kind == "beast":
        d = np.minimum(d, ellipse(w * 0.45, h * 0.52, w * 0.3, h * 0.18))  # body
        d = np.minimum(d, ellipse(w * 0.8, h * 0.32, h * 0.14, h * 0.12))  # head
        d = np.minimum(d, box(w * 0.85, h * 0.3, w * 0.97, h * 0.38))  # snout
        for ex in (0.75, 0.83):  # ears
            d = np.minimum(d, np.maximum(box(w * ex, h * 0.08, w * (ex + 0.05), h * 0.25), (h * 0.25 - y) - 0.0))
        for lx in (0.22, 0.32, 0.58, 0.66):  # legs
            d = np.minimum(d, box(w * lx, h * 0.55, w * lx + h * 0.07, h * 0.98))
        d = np.minimum(d, ellipse(w * 0.1, h * 0.4, w * 0.1, h * 0.05))  # tail
    elif kind == "bird":
        d = np.minimum(d, ellipse(w * 0.42, h * 0.55, w * 0.24, h * 0.16))  # body
        d = np.minimum(d, ellipse(w * 0.36, h * 0.5, w * 0.2, h * 0.1))  # folded wing
        neck = np.abs((x - w * 0.62) + (y - h * 0.45) * 0.35) - h * 0.045
        d = np.minimum(d, np.maximum(neck, np.maximum(h * 0.18 - y, y - h * 0.5)))  # neck
        d = np.minimum(d, ellipse(w * 0.68, h * 0.17, h * 0.08, h * 0.07))  # head
        beak = np.maximum(np.abs(y - h * 0.17) - (w * 0.9 - x) * 0.18, w * 0.72 - x)
        d = np.minimum(d, beak)  # beak
        tail = np.maximum(np.abs(y - h * 0.55) - (x - w * 0.05) * 0.3, x - w * 0.22)
        d = np.minimum(d, np.maximum(tail, w * 0.05 - x))  # tail
        d = np.minimum(d, box(w * 0.4, h * 0.68, w * 0.42, h * 0.98))  # legs
        d = np.minimum(d, box(w * 0.48, h * 0.68, w * 0.5, h * 0.98))
    else:
        d = np.minimum(d, ellipse(w * 0.5, h * 0.13, h * 0.11, h * 0.12))  # head
        d = np.minimum(d, ellipse(w * 0.5, h * 0.45, w * 0.3, h * 0.22))  # torso
        d = np.minimum(d, box(w * 0.3, h * 0.55, w * 0.45, h * 0.98))  # legs
        d = np.minimum(d, box(w * 0.55, h * 0.55, w * 0.7, h * 0.98))
    return _edge(d)


@cache
def _figure_kinds() -> dict[str, list[str]]:
    return load_storyboard()["figures"]


def figure_kind(description: str) -> str:
    """'bird', 'beast' or 'person': the silhouette for a character description."""
    return _first_match(description.lower(), _figure_kinds(), "person")


@dataclass
class _Stage:
    """What never changes within a clip: layers, their depths, figures, particles, the light."""

    sky: np.ndarray  # (H, W, 3)
    layers: list[tuple[np.ndarray, float]]  # (premultiplied RGBA, depth), far to near
    figures: np.ndarray  # premultiplied RGBA, on the mid layer's depth
    focus: tuple[float, float]  # view fractions the camera pushes toward
    sun: tuple[float, float, float]  # view fractions x, y and radius of the light source


def _build_stage(shot: Shot, roles: PaletteRoles, bible: VisualBible, c: _Canvas, seed: int, close: bool) -> _Stage:
    """Paint the layers of one layout in the bible's palette."""
    rng = np.random.default_rng(seed)
    r = roles
    horizon = {"interior": 0.7, "water": 0.58, "sky": 0.85, "city": 0.74}.get(shot.layout, 0.66)
    t = np.clip((c.y[:, :1] - c.vy(0.0)) / (c.vy(horizon) - c.vy(0.0)), 0, 1)[..., None]
    # Sky: flat bands of palette colours, deep at the top, mid, light at the horizon, with short
    # soft steps between them (a colour script, not a gradient: mixes of two palette colours are
    # off the palette).
    step1, step2 = 1 / (1 + np.exp(-(t - 0.42) / 0.025)), 1 / (1 + np.exp(-(t - 0.78) / 0.025))
    sky = r.deep * (1 - step1) + r.mid * (step1 - step2) + r.light * step2
    sky = np.broadcast_to(sky, (c.h, c.w, 3)).astype(np.float32).copy()
    sun = (float(rng.uniform(0.62, 0.8)), horizon - 0.22, 0.075)
    far, mid, near = c.layer(), c.layer(), c.layer()
    ground_at = horizon + 0.18

    if shot.layout == "interior":
        # One-point perspective: back wall, floor, side walls, a lit window, pillars in front.
        bx0, bx1, by0, by1 = c.vx(0.22), c.vx(0.78), c.vy(0.12), c.vy(0.7)
        sky[:] = r.deep
        back = (c.x > bx0) & (c.x < bx1) & (c.y > by0) & (c.y < by1)
        _paint(far, back.astype(np.float32), r.mid)
        wx0, wx1, wy0, wy1 = c.vx(0.4), c.vx(0.6), c.vy(0.2), c.vy(0.5)
        window = (c.x > wx0) & (c.x < wx1) & (c.y > wy0) & (c.y < wy1)
        bars = (np.abs(c.x - (wx0 + wx1) / 2) < 2) | (np.abs(c.y - (wy0 + wy1) / 2) < 2)
        _paint(far, (window & ~bars).astype(np.float32), r.light)
        floor = (c.y >= by1) & (np.abs(c.x - c.vx(0.5)) < (bx1 - bx0) / 2 + (c.y - by1) * 1.2)
        _paint(mid, floor.astype(np.float32), r.shadow, 0.9)
        shaft = (c.y > wy1) & (
            np.abs(c.x - (wx0 + wx1) / 2 - (c.y - wy1) * 0.4) < (wx1 - wx0) / 2 * (1 + (c.y - wy1) / c.view_h)
        )
        _paint(mid, shaft.astype(np.float32), r.light, 0.22)
        for px in (0.04, 0.96):
            pillar = np.abs(c.x - c.vx(px)) < c.view_w * 0.05
            _paint(near, pillar.astype(np.float32), r.shadow)
        sun = ((wx0 + wx1) / 2 / c.w, 0.35, 0.12)
        ground_at = 0.86
    elif shot.layout == "sky":
        for k in range(7):  # cloud banks
            cx, cy = rng.uniform(0, c.w), c.vy(rng.uniform(0.25, 0.95))
            rx, ry = c.view_w * rng.uniform(0.15, 0.35), c.view_h * rng.uniform(0.04, 0.08)
            blob = _edge((np.hypot((c.x - cx) / rx, (c.y - cy) / ry) - 1) * ry)
            _paint(far if k < 4 else near, blob, r.light, 0.55 if k < 4 else 0.35)
        ix, top = c.vx(0.45), c.vy(0.72)
        island = _edge((np.hypot((c.x - ix) / (c.view_w * 0.26), (c.y - top) / (c.view_h * 0.05)) - 1) * 10)
        rock = (c.y > top) & (np.abs(c.x - ix) < c.view_w * 0.25 * (1 - (c.y - top) / (c.view_h * 0.25)))
        _paint(mid, np.maximum(island, rock.astype(np.float32)), r.shadow)
        ground_at = 0.72
    else:
        hills = _ridge(c, horizon, 0.07, (1.3, 3.1, 7.0), rng.uniform(0, 6))
        _paint(far, hills, r.deep)
        ground = (c.y > c.vy(horizon + 0.02)).astype(np.float32)
        if shot.layout == "water":
            _paint(mid, (c.y > c.vy(horizon)).astype(np.float32), r.deep)
            depth = np.maximum(c.y - c.vy(horizon), 0)
            spread = c.view_w * (0.03 + 0.1 * depth / c.view_h)
            wobble = np.sin(c.y * 0.9) * spread * 0.4
            glints = ((depth % 6) < 1.2) & (depth > 0) & (np.abs(c.x - c.vx(sun[0]) + wobble) < spread)
            _paint(mid, glints.astype(np.float32), r.light, 0.7)
            top = c.vy(0.45) + np.maximum(0, c.x - c.vx(0.36)) * 0.6
            _paint(mid, _edge(top - c.y), r.shadow)  # the characters stand on a cliff
            ground_at = 0.45
        else:
            _paint(mid, ground, r.shadow, 0.85)
            if shot.layout == "forest":
                _paint(far, _trees(c, horizon + 0.02, 0.22, 40, rng), r.deep)
                _paint(near, _trees(c, 1.08, 0.9, 7, rng, width=0.45, avoid=((0.2, 0.8),)), r.shadow)
            elif shot.layout == "city":
                back, back_windows = _buildings(c, horizon, 0.45, 22, rng)
                _paint(far, back, r.deep)
                _paint(far, back_windows, r.accent, 0.8)
                front, front_windows = _buildings(c, horizon + 0.06, 0.6, 9, rng)
                _paint(mid, front, r.shadow)
                _paint(mid, front_windows, r.light, 0.6)
                post = (np.abs(c.x - c.vx(0.9)) < 3) | (
                    (np.abs(c.y - c.vy(0.32)) < 3) & (c.x > c.vx(0.83)) & (c.x < c.vx(0.9))
                )
                _paint(near, (post & (c.y > c.vy(0.32))).astype(np.float32), r.shadow)
            elif shot.layout == "ruins":
                for k, cx in enumerate(np.linspace(0.1, 0.9, 6)):
                    top = c.vy(horizon - rng.uniform(0.2, 0.45))
                    column = (np.abs(c.x - c.vx(cx)) < c.view_w * 0.025) & (c.y > top) & (c.y < c.vy(horizon + 0.05))
                    _paint(mid, column.astype(np.float32), r.shadow if k % 2 else r.deep)
                arch = np.abs(np.hypot((c.x - c.vx(0.5)) / 1.6, c.y - c.vy(horizon - 0.2)) - c.view_h * 0.2) < 4
                _paint(mid, (arch & (c.y < c.vy(horizon - 0.2))).astype(np.float32), r.deep)
            else:  # plain
                grass = _ridge(c, 1.02, 0.05, (9.0, 23.0, 41.0), rng.uniform(0, 6))
                _paint(near, grass, r.shadow)

    # The characters: silhouettes in their colours with a rim of the light colour.
    figures = c.layer()
    height = c.view_h * (0.55 if close else 0.32) * (0.8 if shot.action == "rest" else 1.0)
    shift = float(rng.uniform(-0.06, 0.06))  # where the characters stand varies from scene to scene
    lift = 0.22 if shot.action == "rise" and shot.layout not in ("interior",) else 0.0
    for k, character in enumerate(bible.characters[:3]):
        kind = figure_kind(character.description)
        mask = np.pad(_figure_mask(kind, height * (0.8 if kind == "bird" else 1.0) * (0.85 if k else 1.0)), 3)
        rim = np.clip(np.maximum.reduce([np.roll(mask, s, axis=a) for a in (0, 1) for s in (-2, 2)]) - mask, 0, 1)
        fx = c.vx(({0: 0.42, 1: 0.6, 2: 0.27}[k] if shot.layout != "water" else 0.2 + 0.1 * k) + shift)
        fy = c.vy(ground_at - lift * (1.0 + 0.3 * k)) - mask.shape[0]
        y0, x0 = int(fy), int(fx - mask.shape[1] / 2)
        ys, xs = slice(max(0, y0), min(c.h, y0 + mask.shape[0])), slice(max(0, x0), min(c.w, x0 + mask.shape[1]))
        crop = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        colour = r.accent if k == 0 else r.second
        _paint(figures[ys, xs], rim[crop], r.light)
        _paint(figures[ys, xs], mask[crop], colour)
    focus = ((0.42 if shot.layout != "water" else 0.2) + shift, ground_at - 0.12 - lift)
    return _Stage(
        sky=sky,
        layers=[(far, LAYER_DEPTH["far"]), (mid, LAYER_DEPTH["mid"]), (near, LAYER_DEPTH["near"])],
        figures=figures,
        focus=focus,
        sun=sun,
    )


# -- motion --------------------------------------------------------------------------------------


def _hops(times: np.ndarray, beats: np.ndarray, length: float = 0.22) -> np.ndarray:
    """0..1 per frame: a hop that rises and lands within `length` seconds after each beat."""
    if len(beats) == 0:
        return np.zeros_like(times)
    dt = times[:, None] - beats[None, :]
    shape = np.where((dt >= 0) & (dt < length), np.sin(np.pi * np.clip(dt / length, 0, 1)), 0.0)
    return shape.max(axis=1)


def _onset_beats(onset: np.ndarray, fps: int) -> np.ndarray:
    """Beat stand-ins, seconds: onset peaks above 0.3 at least 0.25 s apart."""
    peaks, last = [], -1e9
    for i in range(1, len(onset) - 1):
        if onset[i] > 0.3 and onset[i] >= onset[i - 1] and onset[i] >= onset[i + 1] and i / fps - last > 0.25:
            peaks.append(i / fps)
            last = i / fps
    return np.array(peaks)


def _camera(move: str, progress: np.ndarray, direction: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


class _Particles:
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


# -- the renderer --------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


FONT_FILES = {False: "DejaVuSansCondensed.ttf", True: "DejaVuSansCondensed-Bold.ttf"}


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Condensed where the system has it (Debian's ffmpeg pulls it in), else Pillow's own."""
    try:
        return ImageFont.truetype(FONT_FILES[bold], max(8, size))
    except OSError:
        return ImageFont.load_default(size=max(8, size))


def _rgb255(colour: np.ndarray, alpha: int = 255) -> tuple[int, int, int, int]:
    r, g, b = (int(round(float(v) * 255)) for v in colour)
    return r, g, b, alpha


class AnimaticRenderer:
    """Renders a `SceneJob` as one storyboard clip of the run's visual bible.

    Parameters
    ----------
    fps : int
        Output frames per second (the animatic draws on the output grid: any frame count).
    title_seconds : float
        How long the title card stays over the start of the clip with the title card (scene 0),
        seconds; 0 for none.
    """

    name = "animatic"
    backend_id = RENDERER_ID

    def __init__(self, fps: int, *, title_seconds: float = 1.5):
        self.spec = RenderSpec(native_fps=float(fps))
        self.title_seconds = title_seconds

    # -- public ----------------------------------------------------------------------------------

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        """Render `job` into the MP4 `out_path` (written atomically), ``job.frames`` frames at ``job.fps``."""
        W, H = job.width, job.height
        w, h = self.working_size(job)
        bible = job.bible or fallback_bible(job.palette_hint)
        shot = read_shot(job.caption or job.prompt, bible, job.index)
        title = self._has_title(job)
        with tempfile.TemporaryDirectory() as scratch:
            inputs = [Path(scratch) / "caption.png"]
            self._caption(job, bible, shot, W, H).save(inputs[0], format="PNG")
            graph = f"[0:v]format=yuv420p,scale={W}:{H}:flags=bilinear[bg];[bg][1:v]overlay=0:0:format=yuv420"
            if title:
                inputs.append(Path(scratch) / "title.png")
                self._title_card(bible, W, H).save(inputs[1], format="PNG")
                graph += f"[captioned];[captioned][2:v]overlay=0:0:format=yuv420:enable='lt(t,{self.title_seconds:g})'"
            with FrameEncoder(
                out_path, width=w, height=h, fps=job.fps, frames=job.frames, inputs=tuple(inputs), filter_complex=graph
            ) as encoder:
                for frame in self.frames(job):
                    encoder.write(frame)
        return ClipInfo(out_path, job.frames, float(job.fps), W, H)

    @staticmethod
    def working_size(job: SceneJob) -> tuple[int, int]:
        """(width, height) in pixels the frames are drawn at: half the output size, even."""
        return max(16, job.width // 2 // 2 * 2), max(16, job.height // 2 // 2 * 2)

    def frames(self, job: SceneJob) -> Iterator[np.ndarray]:
        """The clip's frames without text, at `working_size`, (h, w, 3) uint8, ``job.frames`` of them.

        Parameters
        ----------
        job : SceneJob
            The scene; its bible (or a palette from ``palette_hint``), caption, audio and beats.

        Yields
        ------
        numpy.ndarray
            One frame.
        """
        bible = job.bible or fallback_bible(job.palette_hint)
        roles = palette_roles(bible)
        shot = read_shot(job.caption or job.prompt, bible, job.index)
        w, h = self.working_size(job)
        top, bottom = int(round(h * TOP_BAR)), int(round(h * BOTTOM_BAR))
        pw, ph = w, h - top - bottom
        S = SOURCE_SCALE
        canvas = _Canvas(int(pw * S * (1 + 2 * MARGIN_X)), int(ph * S * (1 + 2 * MARGIN_Y)), pw * S, ph * S)
        stage = _build_stage(shot, roles, bible, canvas, job.seed, close=shot.move == "close")
        self._paint_light(stage, canvas, roles, shot)
        rng = np.random.default_rng(job.seed)
        particles_kind = "dust" if shot.layout == "interior" and shot.particles in ("rain", "stars") else shot.particles
        particles = _Particles(particles_kind, pw, ph, rng, roles)

        # What the music drives, one value per frame.
        n, fps = job.frames, job.fps
        audio = job.audio if job.audio is not None else np.zeros(int(job.seconds * job.sample_rate), np.float32)
        level, onset, _ = audio_envelopes(audio, job.sample_rate, n, fps)
        times = np.arange(n) / fps
        beats = np.asarray(job.beat_times, np.float64) if job.beat_times else _onset_beats(onset, fps)
        hop = _hops(times, beats)
        progress = times / max(times[-1], 1e-6) if n > 1 else np.zeros(1)
        zoom, off_x, off_y = _camera(shot.move, progress, direction=1 if job.seed % 2 else -1)
        zoom = zoom + 0.025 * onset  # a bump on every onset

        # Light over time: brightness with the level, a fade or a change of light halfway.
        brightness = 0.8 + 0.2 * level
        if shot.effect == "fade":
            brightness = brightness * (1.0 - 0.6 * progress)
        wash = np.zeros(n)
        if shot.effect == "flash":
            since = times - times[n // 2]
            wash = np.where(since >= 0, 0.75 * np.exp(-np.maximum(since, 0) / 0.25), 0.0)
        if job.index > 0 and not self._has_title(job):  # the cut: a flash of the palette's light
            wash[: len(CUT_FLASH)] = np.maximum(wash[: len(CUT_FLASH)], CUT_FLASH[: min(n, len(CUT_FLASH))])
        tint = (shot.effect == "flash") & (times >= times[n // 2])

        # Static parts of the frame: bars, timeline ticks, vignette.
        base = np.zeros((h, w, 3), np.uint8)
        base[:top] = (roles.shadow * 0.6 * 255).astype(np.uint8)
        base[h - bottom :] = (roles.shadow * 0.6 * 255).astype(np.uint8)
        line_y = top - 3
        base[line_y : line_y + 1] = (roles.deep * 255).astype(np.uint8)
        tick_x = np.clip((beats / max(job.seconds, 1e-6) * w).astype(int), 0, w - 1)
        base[line_y - 3 : line_y + 1, tick_x] = (roles.mid * 255 * 0.8 + 40).clip(0, 255).astype(np.uint8)
        yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
        vignette = (1.0 - 0.35 * (((xx / pw - 0.5) * 1.6) ** 2 + ((yy / ph - 0.5) * 1.8) ** 2)).clip(0.5, 1)[..., None]
        sx, sy, sr = stage.sun
        glow = np.exp(-(((xx - sx * pw) ** 2 + (yy - sy * ph) ** 2) / (2 * (sr * 2.5 * pw) ** 2)))[..., None]
        glow = glow * roles.light * 0.35

        u = np.arange(pw, dtype=np.float32) + 0.5
        v = np.arange(ph, dtype=np.float32) + 0.5
        fx, fy = stage.focus[0] * pw, stage.focus[1] * ph
        bump = rng.normal(0, 1, (n, 2)) * onset[:, None] * 1.2  # camera shake on onsets, view pixels

        # Layers as flat (pixels, 4) arrays of premultiplied colour and 1 - alpha; empty ones dropped.
        def flatten(layer: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
            """(pixels, 4) of premultiplied colour and 1 - alpha, and the canvas box holding anything."""
            rows, cols = np.flatnonzero(layer[..., 3].max(axis=1) > 0), np.flatnonzero(layer[..., 3].max(axis=0) > 0)
            out = layer.reshape(-1, 4).copy()
            out[:, 3] = 1.0 - out[:, 3]
            box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) if len(rows) else (0, 0, 0, 0)
            return out, box

        layers = [(*flatten(lay), depth) for lay, depth in stage.layers]
        layers = [entry for entry in layers if entry[1][1] > entry[1][0]]  # empty layers drawn no more
        far_layers = [entry for entry in layers if entry[2] <= LAYER_DEPTH["mid"]]
        near_layers = [entry for entry in layers if entry[2] > LAYER_DEPTH["mid"]]
        figures, figure_box = flatten(stage.figures)
        sky = stage.sky.reshape(-1, 3)

        def indices(depth: float, i: int, lift: float = 0.0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
            """Canvas rows and columns seen by the view's rows and columns (both increasing)."""
            z = 1.0 + (zoom[i] - 1.0) * (0.3 + depth)
            xs = canvas.x0 + S * (fx + (u - fx) / z) + depth * (off_x[i] * canvas.view_w + bump[i, 0] * S) + shift
            ys = canvas.y0 + S * (fy + (v - fy) / z) + depth * (off_y[i] * canvas.view_h + bump[i, 1] * S) - lift
            return np.clip(ys.astype(np.intp), 0, canvas.h - 1), np.clip(xs.astype(np.intp), 0, canvas.w - 1)

        def over(picture: np.ndarray, flat: np.ndarray, box, depth: float, i: int, **move) -> None:
            """Composite a layer onto `picture`, gathering only the view rows and columns its box covers.

            One gather through a flat index (np.take is several times faster than 2-D fancy indexing).
            """
            yi, xi = indices(depth, i, **move)
            r0, r1 = np.searchsorted(yi, box[0]), np.searchsorted(yi, box[1])
            c0, c1 = np.searchsorted(xi, box[2]), np.searchsorted(xi, box[3])
            if r1 <= r0 or c1 <= c0:
                return
            block = np.take(flat, yi[r0:r1, None] * canvas.w + xi[None, c0:c1], axis=0)
            view = picture[r0:r1, c0:c1]
            view *= block[..., 3:]
            view += block[..., :3]

        figure_depth = LAYER_DEPTH["mid"]
        hop_height = canvas.view_h * (0.03 if shot.action == "rest" else 0.06)
        # Running characters cross the frame (the camera keeps part of the way with them); rising
        # ones float.
        travel = (progress - 0.5) * canvas.view_w * 0.35 if shot.action == "run" else np.zeros(n)
        float_y = np.sin(times * 2.2) * canvas.view_h * 0.02 if shot.action == "rise" else np.zeros(n)
        for i in range(n):
            yi, xi = indices(LAYER_DEPTH["sky"], i)
            picture = np.take(sky, yi[:, None] * canvas.w + xi[None, :], axis=0)
            picture += glow * level[i]
            for flat, box, depth in far_layers:
                over(picture, flat, box, depth, i)
            over(
                picture, figures, figure_box, figure_depth, i, lift=-hop[i] * hop_height + float_y[i], shift=-travel[i]
            )
            for flat, box, depth in near_layers:
                over(picture, flat, box, depth, i)
            particles.draw(picture, times[i], 0.6 + 1.2 * onset[i])
            picture *= vignette * (255.0 * brightness[i])
            if tint[i]:
                picture = picture * 0.8 + roles.accent * (0.2 * 255)
            if wash[i] > 0:
                picture = picture * (1 - wash[i]) + roles.light * (255 * wash[i])
            frame = base.copy()
            frame[top : h - bottom] = np.clip(picture, 0, 255, out=picture)
            play = int(progress[i] * (w - 1))
            frame[line_y : line_y + 1, : play + 1] = (roles.accent * 255).astype(np.uint8)
            recent = tick_x[(beats <= times[i]) & (beats > times[i] - 0.15)]
            frame[line_y - 5 : line_y + 1, recent] = 255
            yield frame

    # -- helpers ---------------------------------------------------------------------------------

    def _has_title(self, job: SceneJob) -> bool:
        wanted = job.index == 0 if job.title_card is None else job.title_card
        return bool(wanted) and self.title_seconds > 0

    @staticmethod
    def _paint_light(stage: _Stage, canvas: _Canvas, roles: PaletteRoles, shot: Shot) -> None:
        """The light source on the sky: a sun or moon disc (exteriors)."""
        if shot.layout == "interior":
            return
        sx, sy, sr = stage.sun
        cx, cy, radius = canvas.vx(sx), canvas.vy(sy), sr * canvas.view_h
        disc = _edge(np.hypot(canvas.x - cx, canvas.y - cy) - radius)[..., None]
        stage.sky[:] = stage.sky * (1 - disc) + roles.light * disc

    def _caption(self, job: SceneJob, bible: VisualBible, shot: Shot, W: int, H: int) -> Image.Image:
        """Text over the bars, full size, transparent elsewhere: scene info, palette swatches, the sentence."""
        overlay = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        bottom = int(round(H * BOTTOM_BAR))
        size = max(9, H // 26)
        font, small = _font(size), _font(int(size * 0.85))
        pad = size // 2
        heading = f"SCENE {job.index + 1}"
        draw.text((pad, pad // 2), heading, font=_font(size, bold=True), fill=(255, 255, 255, 255))
        span = (
            f"{_clock(job.start_seconds)}-{_clock(job.start_seconds + job.seconds)}  "
            if job.start_seconds or job.index == 0
            else ""
        )
        info = f"{span}{job.seconds:.1f} s  ·  {shot.move.replace('_', '-')}  ·  {shot.layout}"
        draw.text(
            (pad + draw.textlength(heading, font=font) + size, pad // 2 + 1),
            info,
            font=small,
            fill=(220, 220, 220, 230),
        )
        swatch = max(6, size - 2)
        for k, colour in enumerate(reversed(bible.palette)):
            x1 = W - pad - k * (swatch + 3)
            draw.rectangle(
                [x1 - swatch, pad // 2 + 1, x1, pad // 2 + 1 + swatch],
                fill=colour.rgb() + (255,),
                outline=(255, 255, 255, 120),
            )
        chars = max(20, int(W / (size * 0.52)))
        lines = textwrap.wrap(job.caption, width=chars)
        if len(lines) > 3:
            lines = lines[:3]
            lines[-1] = lines[-1][: max(0, chars - 1)].rstrip() + "…"
        line_h = int(size * 1.22)
        y0 = H - bottom + max(2, (bottom - len(lines) * line_h) // 2)
        for k, line in enumerate(lines):
            draw.text((pad, y0 + k * line_h), line, font=font, fill=(255, 255, 255, 255))
        return overlay

    @staticmethod
    def _title_card(bible: VisualBible, W: int, H: int) -> Image.Image:
        """The bible as a card over the picture: title, characters, setting, light, camera, palette."""
        roles = palette_roles(bible)
        overlay = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        top, bottom = int(round(H * TOP_BAR)), int(round(H * BOTTOM_BAR))
        draw.rectangle([0, top, W, H - bottom], fill=_rgb255(roles.shadow * 0.5, 225))
        size = max(9, H // 28)
        big, font, small = _font(int(size * 1.9), bold=True), _font(size), _font(int(size * 0.85))
        pad = size
        y = top + pad // 2
        draw.text((pad, y), bible.title or "Untitled", font=big, fill=(255, 255, 255, 255))
        label = "VISUAL BIBLE"
        draw.text(
            (W - pad - draw.textlength(label, font=small), y + size // 2),
            label,
            font=small,
            fill=_rgb255(roles.accent * 0.5 + 0.5),
        )
        y += int(size * 2.4)
        chars = max(30, int((W - 2 * pad) / (size * 0.5)))
        for character in bible.characters[:3]:
            name = (character.name or "cast").upper()
            draw.text(
                (pad, y), name, font=_font(size, bold=True), fill=_rgb255(np.clip(roles.accent * 0.6 + 0.45, 0, 1))
            )
            x = pad + draw.textlength(name + "  ", font=_font(size, bold=True))
            draw.text(
                (x, y),
                textwrap.shorten(character.description, max(12, chars - len(name))),
                font=font,
                fill=(255, 255, 255, 255),
            )
            y += int(size * 1.35)
        y += size // 3
        for key, text in (("WORLD", bible.setting), ("LIGHT", bible.lighting), ("CAMERA", bible.camera)):
            if text:
                draw.text((pad, y), key, font=small, fill=(200, 200, 200, 220))
                draw.text(
                    (pad + size * 4.5, y),
                    textwrap.shorten(text, max(12, chars - 8)),
                    font=small,
                    fill=(235, 235, 235, 255),
                )
                y += int(size * 1.2)
        box = max(12, int((W - 2 * pad) / len(bible.palette)) - 8)
        y_sw = H - bottom - pad // 2 - int(size * 2.6)
        for k, colour in enumerate(bible.palette):
            x = pad + k * (box + 8)
            draw.rectangle([x, y_sw, x + box, y_sw + size], fill=colour.rgb() + (255,), outline=(255, 255, 255, 140))
            draw.text((x, y_sw + size + 2), f"{colour.name} {colour.hex}", font=small, fill=(230, 230, 230, 255))
        return overlay
