"""Palette matching: move a clip's colours toward the run's palette in CIELAB.

Diffusion models ignore most colour words, so clips of one run drift apart in colour - the
"stock footage" look the paper's viewers disliked. `PaletteTransfer` pulls each clip toward the
bible's palette after rendering, the same way for every backend: on frames before encoding
(`match_palette`) or on an encoded clip (`match_clip_file`).

Per clip, once:

1. Sample up to ``sample_frames`` frames spread over the clip, ``sample_pixels`` random pixels of
   each (a fixed generator: the same clip always gives the same result).
2. Dominant colours: k-means (k = 5) in CIELAB on the sample; each centre's share of the sample.
3. Targets: a palette colour for each dominant colour, near in CIEDE2000 and in lightness
   order, so distinct colours of the clip stay distinct where the palette allows
   (`assign_targets`).
4. A smooth displacement field in CIELAB moves every dominant colour by ``strength`` times the way
   to its target and everything else by the inverse-distance-weighted mix of those moves (exact
   at the centres, smooth in between, bounded far away).
5. The field is evaluated once on a 32 x 32 x 32 sRGB grid as a shift table, and every frame is
   moved by the shift of its pixel's cell: ``out = x + shift[x >> 3]``, vectorised, uint8 in and
   out. The shift is smooth, so texture inside a colour region is kept to the level.

Reported for the scene's manifest: the share-weighted mean CIEDE2000 of the clip's dominant
colours to their nearest palette colour, before and after (after: k-means of the same sample
pixels through the same table, i.e. exactly what the frames received).
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundsight.media import FrameEncoder, ffmpeg_exe
from soundsight.schemas import PaletteColour

__all__ = [
    "DEFAULT_STRENGTH",
    "PaletteMatch",
    "PaletteTransfer",
    "assign_targets",
    "dominant_colours",
    "match_clip_file",
    "match_palette",
    "palette_distance",
    "palette_lab",
    "read_clip",
    "rgb_to_lab",
    "set_distance",
]

DEFAULT_STRENGTH = 0.8
GRID_BITS = 3  # 256 >> 3 = 32 cells per channel
GRID = 256 >> GRID_BITS
COLLISION_DELTA_E = 3.0


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours.

    Parameters
    ----------
    rgb : numpy.ndarray
        Shape (..., 3), uint8 (0..255) or float (0..1).

    Returns
    -------
    numpy.ndarray
        Shape (..., 3), float64: L* in 0..100, a* and b* roughly -128..127.
    """
    from skimage.color import rgb2lab

    rgb = np.asarray(rgb)
    values = rgb.astype(np.float64) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float64)
    flat = values.reshape(-1, 1, 3)
    return rgb2lab(flat).reshape(values.shape)


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """The sRGB colours (0..1) of CIELAB colours, out-of-gamut colours clipped."""
    from skimage.color import lab2rgb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "negative Z values" for out-of-gamut colours: clipped
        return np.clip(lab2rgb(lab.reshape(-1, 1, 3)).reshape(lab.shape), 0.0, 1.0)


def palette_lab(palette: Sequence[PaletteColour] | np.ndarray) -> np.ndarray:
    """CIELAB of a palette: `PaletteColour` objects or an (m, 3) uint8 sRGB array -> (m, 3) float."""
    if isinstance(palette, np.ndarray):
        return rgb_to_lab(palette.astype(np.uint8))
    return rgb_to_lab(np.array([c.rgb() for c in palette], np.uint8))


def _delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIEDE2000 between every colour of `a` (n, 3) and every colour of `b` (m, 3): (n, m)."""
    from skimage.color import deltaE_ciede2000

    n, m = len(a), len(b)
    return deltaE_ciede2000(np.repeat(a, m, axis=0), np.tile(b, (n, 1))).reshape(n, m)


def _sample(frames: np.ndarray, sample_frames: int, sample_pixels: int, seed: int) -> np.ndarray:
    """(N, 3) uint8 pixels: up to `sample_frames` frames spread over the clip, random pixels of each."""
    f, h, w, _ = frames.shape
    picks = np.unique(np.linspace(0, f - 1, min(f, sample_frames)).round().astype(int))
    rng = np.random.default_rng(seed)
    per = min(sample_pixels, h * w)
    flat = [frames[i].reshape(-1, 3)[rng.choice(h * w, per, replace=False)] for i in picks]
    return np.concatenate(flat)


def _kmeans(lab: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means centres (k', 3) of `lab` (N, 3) and each centre's share of the points (sums to 1).

    scipy's k-means++ (a fixed seed); empty clusters are dropped, so k' <= k.
    """
    from scipy.cluster.vq import kmeans2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty" on near-flat clips
        centres, labels = kmeans2(lab, k, minit="++", seed=np.random.default_rng(seed))
    counts = np.bincount(labels, minlength=len(centres)).astype(np.float64)
    keep = counts > 0
    return centres[keep], counts[keep] / counts.sum()


def dominant_colours(
    frames: np.ndarray, k: int = 5, *, sample_frames: int = 8, sample_pixels: int = 4000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A clip's dominant colours: k-means in CIELAB on a fixed sample of its pixels.

    Parameters
    ----------
    frames : numpy.ndarray
        (F, H, W, 3) uint8 sRGB frames.
    k : int
        Number of dominant colours (fewer when the clip has fewer distinct colours).
    sample_frames : int
        Frames sampled, spread evenly over the clip.
    sample_pixels : int
        Random pixels sampled per frame.
    seed : int
        Sampling and k-means seed.

    Returns
    -------
    centres : numpy.ndarray
        (k, 3) CIELAB.
    shares : numpy.ndarray
        (k,) fraction of the sampled pixels nearest each centre; sums to 1.
    """
    return _kmeans(rgb_to_lab(_sample(frames, sample_frames, sample_pixels, seed)), k, seed)


def palette_distance(centres: np.ndarray, shares: np.ndarray, palette: np.ndarray) -> float:
    """Share-weighted mean CIEDE2000 from each dominant colour to its nearest palette colour.

    Parameters
    ----------
    centres, shares : numpy.ndarray
        A clip's dominant colours (k, 3) CIELAB and their shares (k,), from `dominant_colours`.
    palette : numpy.ndarray
        (m, 3) CIELAB palette, from `palette_lab`.

    Returns
    -------
    float
        Delta E 2000 (0: every dominant colour is a palette colour; ~2.3 is a just noticeable
        difference).
    """
    return float(np.sum(shares * _delta_e(centres, palette).min(axis=1)) / np.sum(shares))


def set_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Symmetric distance between two clips' dominant colours, CIEDE2000.

    The mean of `palette_distance` both ways: each clip's dominant colours to the nearest of
    the other's, share-weighted. 0 when the two clips have the same dominant colours.

    Parameters
    ----------
    a, b : tuple of numpy.ndarray
        ``(centres, shares)`` of each clip, from `dominant_colours`.

    Returns
    -------
    float
        Delta E 2000.
    """
    return 0.5 * (palette_distance(a[0], a[1], b[0]) + palette_distance(b[0], b[1], a[0]))


def assign_targets(
    centres: np.ndarray, shares: np.ndarray, palette: np.ndarray, collision_cost: float = COLLISION_DELTA_E
) -> np.ndarray:
    """Which palette colour each dominant colour moves to: near in CIEDE2000, in lightness order.

    The nearest palette colour alone would send every colour of a clip far from the palette to
    the same one and flatten the picture. Instead the assignment keeps the lightness order
    (a darker dominant colour never goes to a lighter palette colour than a lighter one does)
    and minimises the share-weighted CIEDE2000 plus `collision_cost` for every two dominant
    colours sent to the same palette colour. Dynamic programming over (dominant colour, palette
    colour): O(k m^2).

    Parameters
    ----------
    centres, shares : numpy.ndarray
        Dominant colours (k, 3) CIELAB and their shares (k,).
    palette : numpy.ndarray
        (m, 3) CIELAB.
    collision_cost : float
        Delta E 2000 (share-weighted units) a shared target costs.

    Returns
    -------
    numpy.ndarray
        (k,) index into `palette` for each centre.
    """
    order, by_light = np.argsort(centres[:, 0], kind="stable"), np.argsort(palette[:, 0], kind="stable")
    cost = shares[order, None] * _delta_e(centres[order], palette[by_light])  # (k, m)
    k, m = cost.shape
    best = cost[0].copy()
    back = np.zeros((k, m), int)
    for j in range(1, k):
        # reach palette colour q from p <= q; staying on the same colour is a collision
        step = best[:, None] + np.where(np.eye(m, dtype=bool), collision_cost, 0.0)
        step[np.tril_indices(m, -1)] = np.inf  # p > q would invert lightness
        back[j] = step.argmin(axis=0)
        best = step.min(axis=0) + cost[j]
    path = [int(best.argmin())]
    for j in range(k - 1, 0, -1):
        path.append(int(back[j, path[-1]]))
    result = np.empty(k, int)
    result[order] = by_light[path[::-1]]
    return result


@dataclass(frozen=True)
class PaletteMatch:
    """What palette matching did to one clip: numbers for the scene's manifest.

    strength : how far each dominant colour was moved toward its palette colour, 0..1.
    delta_e_before, delta_e_after : share-weighted mean CIEDE2000 of the clip's dominant colours
        to their nearest palette colour, before and after matching.
    dominant_before, dominant_after : the dominant colours (k, 3) CIELAB, and `shares_*`.
    """

    strength: float
    delta_e_before: float
    delta_e_after: float
    dominant_before: np.ndarray = field(repr=False)
    shares_before: np.ndarray = field(repr=False)
    dominant_after: np.ndarray = field(repr=False)
    shares_after: np.ndarray = field(repr=False)

    def info(self) -> dict[str, float]:
        """The numbers as ``Manifest.info`` entries."""
        return {
            "palette_strength": round(self.strength, 3),
            "palette_delta_e_before": round(self.delta_e_before, 2),
            "palette_delta_e_after": round(self.delta_e_after, 2),
        }


class PaletteTransfer:
    """Moves a clip's colours toward a palette in CIELAB: fit once per clip, apply to every frame.

    Parameters
    ----------
    palette : sequence of PaletteColour or numpy.ndarray
        The bible's palette (or an (m, 3) uint8 sRGB array).
    strength : float
        0 leaves the clip as it is; 1 moves every dominant colour onto its nearest palette colour.
    k : int
        Number of dominant colours.
    sample_frames, sample_pixels : int
        The fitting sample: frames spread over the clip, random pixels per frame.
    seed : int
        Sampling and k-means seed.

    Examples
    --------
    >>> transfer = PaletteTransfer(bible.palette, strength=0.8)  # doctest: +SKIP
    >>> report = transfer.fit(frames)  # doctest: +SKIP
    >>> matched = transfer.apply(frames)  # doctest: +SKIP
    """

    def __init__(
        self,
        palette: Sequence[PaletteColour] | np.ndarray,
        strength: float = DEFAULT_STRENGTH,
        *,
        k: int = 5,
        sample_frames: int = 8,
        sample_pixels: int = 4000,
        seed: int = 0,
    ):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be within 0..1, not {strength}")
        self.palette = palette_lab(palette)
        self.strength = float(strength)
        self.k, self.sample_frames, self.sample_pixels, self.seed = k, sample_frames, sample_pixels, seed
        self.shift: np.ndarray | None = None  # (GRID**3, 3) int16 sRGB shift per grid cell

    def _field(self, lab: np.ndarray, centres: np.ndarray, moves: np.ndarray) -> np.ndarray:
        """The CIELAB displacement at `lab` (N, 3): inverse-distance-weighted mix of the centres' moves."""
        d2 = ((lab[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        weights = 1.0 / (d2 + 1.0)
        weights /= weights.sum(axis=1, keepdims=True)
        return weights @ moves

    def fit(self, frames: np.ndarray) -> PaletteMatch:
        """Compute the colour transform of a clip and report what it does.

        Parameters
        ----------
        frames : numpy.ndarray
            (F, H, W, 3) uint8 sRGB frames (all of the clip, or a representative part).

        Returns
        -------
        PaletteMatch
            Mean CIEDE2000 of the dominant colours to the palette before and after.
        """
        sample = _sample(frames, self.sample_frames, self.sample_pixels, self.seed)
        sample_lab = rgb_to_lab(sample)
        centres, shares = _kmeans(sample_lab, self.k, self.seed)
        targets = self.palette[assign_targets(centres, shares, self.palette)]
        moves = self.strength * (targets - centres)

        levels = (np.arange(GRID) << GRID_BITS) + ((1 << GRID_BITS) - 1) / 2.0  # cell centres, 0..255
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
        grid_lab = rgb_to_lab(grid / 255.0)
        moved = _lab_to_rgb(grid_lab + self._field(grid_lab, centres, moves)) * 255.0
        self.shift = np.round(moved - grid).astype(np.int16)

        after = rgb_to_lab(self.apply(sample[None, :, None, :])[0, :, 0, :])
        centres_after, shares_after = _kmeans(after, self.k, self.seed)
        return PaletteMatch(
            strength=self.strength,
            delta_e_before=palette_distance(centres, shares, self.palette),
            delta_e_after=palette_distance(centres_after, shares_after, self.palette),
            dominant_before=centres,
            shares_before=shares,
            dominant_after=centres_after,
            shares_after=shares_after,
        )

    def apply(self, frames: np.ndarray, chunk_pixels: int = 1 << 21) -> np.ndarray:
        """The frames moved by the fitted transform.

        Parameters
        ----------
        frames : numpy.ndarray
            (..., 3) uint8 sRGB, e.g. (F, H, W, 3) frames or one (H, W, 3) frame.
        chunk_pixels : int
            Pixels transformed at a time (bounds the temporary memory, ~10 bytes per pixel).

        Returns
        -------
        numpy.ndarray
            Same shape, uint8.
        """
        if self.shift is None:
            raise RuntimeError("PaletteTransfer.apply before fit")
        flat = np.ascontiguousarray(frames, dtype=np.uint8).reshape(-1, 3)
        out = np.empty_like(flat)
        for start in range(0, len(flat), chunk_pixels):
            block = flat[start : start + chunk_pixels]
            cells = block >> GRID_BITS
            index = (cells[:, 0].astype(np.uint16) << 10) | (cells[:, 1].astype(np.uint16) << 5) | cells[:, 2]
            moved = block.astype(np.int16) + self.shift[index]
            out[start : start + chunk_pixels] = np.clip(moved, 0, 255)
        return out.reshape(np.shape(frames))


def match_palette(
    frames: np.ndarray, palette: Sequence[PaletteColour] | np.ndarray, strength: float = DEFAULT_STRENGTH, *, k: int = 5
) -> tuple[np.ndarray, PaletteMatch]:
    """Move a clip's colours toward `palette` (`PaletteTransfer` fitted on the clip and applied to it).

    Parameters
    ----------
    frames : numpy.ndarray
        (F, H, W, 3) uint8 sRGB frames.
    palette : sequence of PaletteColour or numpy.ndarray
        The bible's palette.
    strength : float
        0..1; 0 returns the frames unchanged (the numbers are still measured).
    k : int
        Number of dominant colours.

    Returns
    -------
    frames : numpy.ndarray
        (F, H, W, 3) uint8.
    match : PaletteMatch
        Mean CIEDE2000 to the palette before and after, for the scene's manifest.
    """
    transfer = PaletteTransfer(palette, strength, k=k)
    match = transfer.fit(frames)
    return (frames if strength == 0 else transfer.apply(frames)), match


def read_clip(path: Path, *, size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """Decode a video file into frames.

    Parameters
    ----------
    path : pathlib.Path
        Any video ffmpeg reads.
    size : tuple of int, optional
        (width, height) to scale to, pixels; default: the clip's own size.

    Returns
    -------
    frames : numpy.ndarray
        (F, H, W, 3) uint8 sRGB.
    fps : float
        Frames per second.
    """
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    width, height = size or meta["size"]
    args = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path)]
    if size:
        args += ["-vf", f"scale={width}:{height}:flags=area"]
    proc = subprocess.run([*args, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    frames = np.frombuffer(proc.stdout, np.uint8).reshape(-1, height, width, 3)
    return frames, float(meta["fps"])


def match_clip_file(
    in_path: Path,
    out_path: Path,
    palette: Sequence[PaletteColour] | np.ndarray,
    strength: float = DEFAULT_STRENGTH,
) -> PaletteMatch:
    """Palette-match an encoded clip: decode, `match_palette`, encode with the project's one encoder.

    For renderers whose frames are not at hand; matching frames before encoding
    (`match_palette`) saves one encode. `out_path` may be `in_path` (written atomically).

    Parameters
    ----------
    in_path, out_path : pathlib.Path
        The clip, and where the matched clip goes (same size, frame count and frame rate).
    palette : sequence of PaletteColour or numpy.ndarray
        The bible's palette.
    strength : float
        0..1.

    Returns
    -------
    PaletteMatch
    """
    frames, fps = read_clip(in_path)
    matched, match = match_palette(frames, palette, strength)
    f, h, w, _ = matched.shape
    with FrameEncoder(Path(out_path), width=w, height=h, fps=fps, frames=f) as encoder:
        for frame in matched:
            encoder.write(frame)
    return match
