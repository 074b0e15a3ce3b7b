"""The layers of a clip: a layout painted procedurally in the bible's palette, the characters' silhouettes.

Everything here is drawn once per clip on a canvas larger than the view (`Canvas`), so the camera
can move over it; the renderer composites the layers per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundsight.models.render.animatic.shots import PaletteRoles, Shot, figure_kind
from soundsight.schemas import VisualBible

__all__ = ["LAYER_DEPTH", "Canvas", "Stage", "build_stage", "paint_light"]

LAYER_DEPTH = {"sky": 0.05, "far": 0.3, "mid": 0.65, "near": 1.3}


class Canvas:
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
        """An empty layer (premultiplied RGBA, transparent) the size of the canvas."""
        return np.zeros((self.h, self.w, 4), np.float32)


def _paint(layer: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> None:
    """Paint `colour` where `mask` (0..1) is set, over what `layer` (premultiplied RGBA) holds."""
    a = (np.clip(mask, 0.0, 1.0) * alpha)[..., None]
    layer[..., :3] = layer[..., :3] * (1 - a) + colour * a
    layer[..., 3:] = layer[..., 3:] * (1 - a) + a


def _edge(d: np.ndarray) -> np.ndarray:
    """A one-pixel antialiased mask from a signed distance (negative inside)."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _ridge(c: Canvas, base: float, amp: float, freqs: tuple[float, ...], phase: float) -> np.ndarray:
    """Mask below a wavy ridge line at view fraction `base` +/- `amp` (sum of sines)."""
    line = np.zeros(c.w, np.float32)
    for k, f in enumerate(freqs):
        line += np.sin(c.x[0] / c.view_w * f * 2 * np.pi + phase * (k + 1)) / (k + 1)
    line = c.vy(base) - amp * c.view_h * line / sum(1 / (k + 1) for k in range(len(freqs)))
    return _edge(line[None, :] - c.y)


def _trees(c: Canvas, base: float, height: float, count: int, rng: np.random.Generator, width: float = 0.5, avoid=()):
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


def _buildings(c: Canvas, base: float, tallest: float, count: int, rng: np.random.Generator):
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


@dataclass
class Stage:
    """What never changes within a clip: layers, their depths, figures, particles, the light."""

    sky: np.ndarray  # (H, W, 3)
    layers: list[tuple[np.ndarray, float]]  # (premultiplied RGBA, depth), far to near
    figures: np.ndarray  # premultiplied RGBA, on the mid layer's depth
    focus: tuple[float, float]  # view fractions the camera pushes toward
    sun: tuple[float, float, float]  # view fractions x, y and radius of the light source


def build_stage(shot: Shot, roles: PaletteRoles, bible: VisualBible, c: Canvas, seed: int, close: bool) -> Stage:
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
    return Stage(
        sky=sky,
        layers=[(far, LAYER_DEPTH["far"]), (mid, LAYER_DEPTH["mid"]), (near, LAYER_DEPTH["near"])],
        figures=figures,
        focus=focus,
        sun=sun,
    )


def paint_light(stage: Stage, canvas: Canvas, roles: PaletteRoles, shot: Shot) -> None:
    """The light source on the sky: a sun or moon disc (exteriors)."""
    if shot.layout == "interior":
        return
    sx, sy, sr = stage.sun
    cx, cy, radius = canvas.vx(sx), canvas.vy(sy), sr * canvas.view_h
    disc = _edge(np.hypot(canvas.x - cx, canvas.y - cy) - radius)[..., None]
    stage.sky[:] = stage.sky * (1 - disc) + roles.light * disc
