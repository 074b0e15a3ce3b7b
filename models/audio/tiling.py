"""Cuts on the output frame grid: the length bounds every planner keeps, and the segments they make.

Times are seconds; a *tick* is one output frame (``1 / fps`` s), or 1 ms without an fps.
`CutGrid` places cuts as integers of ticks from absolute time (``round(t * fps)``), so rounding
never accumulates drift, and checks the length bounds in whole ticks; `segments_from_cuts`
turns cut times into segments that tile ``[0, duration]`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from soundsight.schemas import Segment

__all__ = ["CutGrid", "Cuts", "effective_bounds", "local_peaks", "match_points", "segments_from_cuts"]


@dataclass(frozen=True)
class Cuts:
    """Interior cut times (seconds, strictly increasing) and why each segment ends.

    `reasons` has ``len(times) + 1`` entries, the last one ``"end"``. `snaps` and `shifts` (one
    per interior cut, optional) say what a cut was snapped to (``"downbeat"``, ``"beat"`` or
    ``""``) and how far it moved (seconds, signed, before frame rounding).
    """

    times: list[float]
    reasons: list[str]
    snaps: list[str] = field(default_factory=list)
    shifts: list[float] = field(default_factory=list)


class CutGrid:
    """Length bounds on a time grid of `q` seconds (one output frame, or 1 ms without fps).

    `n`, `mn`, `mx`: the song, the shortest and the longest segment, in ticks.
    """

    def __init__(self, duration: float, min_seconds: float, max_seconds: float, fps: float | None):
        self.rate = float(fps) if fps else 1e3  # ticks per second
        self.q = 1.0 / self.rate
        self.duration = float(duration)
        # t * rate, as `segments_from_cuts` rounds (t / q differs in the last bit: 19.94 s at 25 fps
        # is 498.5 one way and 498.50000000000006 the other, 498 or 499 frames)
        self.n = max(1, int(round(self.duration * self.rate)))
        self.mx = max(1, int(math.floor(max_seconds * self.rate + 1e-6)))
        self.mn = min(max(1, int(math.ceil(min_seconds * self.rate - 1e-6))), self.mx)

    def tick(self, t: float) -> int:
        """The tick nearest `t` seconds."""
        return int(round(t * self.rate))

    def time(self, tick: int) -> float:
        """Seconds at `tick`."""
        return tick * self.q

    def must_cut(self, start: int) -> bool:
        """Whether the rest of the song after tick `start` is longer than one segment may be."""
        return self.n - start > self.mx

    def allowed(self, start: int) -> list[tuple[int, int]]:
        """Tick intervals where the next cut may fall so the rest of the song can still be tiled."""
        rest = self.n - start
        k_lo = max(1, math.ceil((rest - self.mx) / self.mx))
        k_hi = (rest - self.mn) // self.mn
        out: list[tuple[int, int]] = []
        for k in range(k_lo, k_hi + 1):
            a = max(start + self.mn, self.n - k * self.mx)
            b = min(start + self.mx, self.n - k * self.mn)
            if a <= b:
                out.append((a, b))
        out.sort()
        merged: list[tuple[int, int]] = []
        for a, b in out:
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        if not merged and self.must_cut(start):
            # Not tileable within the bounds: split the rest evenly, each piece <= max (min yields).
            pieces = math.ceil(rest / self.mx)
            c = start + int(math.ceil(rest / pieces))
            merged = [(c, c)]
        return merged

    @staticmethod
    def inside(tick: int, allowed: list[tuple[int, int]]) -> bool:
        """Whether `tick` lies in one of the `allowed` intervals."""
        return any(a <= tick <= b for a, b in allowed)

    @staticmethod
    def project(tick: int, allowed: list[tuple[int, int]]) -> int:
        """The tick of the `allowed` intervals nearest `tick`."""
        best = min(allowed, key=lambda ab: 0 if ab[0] <= tick <= ab[1] else min(abs(tick - ab[0]), abs(tick - ab[1])))
        return int(min(max(tick, best[0]), best[1]))


def local_peaks(x: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the local maxima of `x` above `threshold` (the first of a plateau)."""
    if len(x) < 3:
        return np.zeros(0, dtype=int)
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > threshold)
    return np.flatnonzero(inner) + 1


def match_points(t: np.ndarray, points: np.ndarray, tolerance: float) -> np.ndarray:
    """Index into `points` of the point within `tolerance` of each time in `t`, or -1."""
    points = np.asarray(points, dtype=float)
    t = np.asarray(t, dtype=float)
    if len(points) == 0 or len(t) == 0:
        return np.full(len(t), -1, dtype=int)
    i = np.clip(np.searchsorted(points, t), 1, max(1, len(points) - 1))
    lo = np.maximum(i - 1, 0)
    hi = np.minimum(i, len(points) - 1)
    pick = np.where(np.abs(t - points[lo]) <= np.abs(t - points[hi]), lo, hi)
    return np.where(np.abs(t - points[pick]) <= tolerance, pick, -1)


def segments_from_cuts(cuts: Cuts, duration: float, fps: int, beats: np.ndarray | None = None) -> list[Segment]:
    """Turn cut times into segments that tile [0, duration] on the output frame grid.

    Interior cuts are rounded to the nearest output frame (``round(t * fps) / fps``; cuts made
    with the same `fps` are on it already); the last segment ends at `duration` and at frame
    ``round(duration * fps)``.
    """
    beats = np.asarray(beats if beats is not None else [], dtype=float)
    frames = [0] + [int(round(t * fps)) for t in cuts.times] + [int(round(duration * fps))]
    if any(b <= a for a, b in zip(frames, frames[1:])):
        raise ValueError(f"cuts {cuts.times} collapse on the {fps} fps frame grid")
    bounds = [0.0] + [f / fps for f in frames[1:-1]] + [float(duration)]
    segments = []
    last = len(frames) - 2
    for i in range(len(frames) - 1):
        start, end = bounds[i], bounds[i + 1]
        inside = beats[(beats >= start) & (beats < end)]
        segments.append(
            Segment(
                index=i,
                start=round(start, 6),
                end=round(end, 6) if i < last else float(duration),
                start_frame=frames[i],
                end_frame=frames[i + 1],
                reason=cuts.reasons[i],
                beats=[round(float(b), 4) for b in inside],
                snapped_to=cuts.snaps[i] if i < last and i < len(cuts.snaps) else "",
                snap_shift=cuts.shifts[i] if i < last and i < len(cuts.shifts) else 0.0,
            )
        )
    return segments


def effective_bounds(
    min_seconds: float, max_seconds: float, max_clip_seconds: float = float("inf")
) -> tuple[float, float]:
    """(min, max) segment length actually used: max capped by the clip limit; min yields only above it."""
    cap = min(max_seconds, max_clip_seconds)
    return (min_seconds if min_seconds < cap else cap / 2.0), cap
