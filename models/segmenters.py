"""Cutting a song into scenes: the paper's random and rule-based modes, and beat snapping.

All functions are pure: arrays and numbers in, cut times out. Times are in seconds, frame
indices refer to the *output video* frame grid (``round(t * fps)``, computed from absolute time
so rounding never accumulates drift).

A segmentation is described by its interior cut times ``0 < c_1 < ... < c_{n-1} < duration``
and one reason per segment end; `segments_from_cuts` turns that into tiling `Segment`s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundsight.schemas import Segment, Segmentation


@dataclass(frozen=True)
class Cuts:
    """Interior cut times (seconds, strictly increasing) and why each segment ends."""

    times: list[float]
    reasons: list[str]  # len(times) + 1: the last one is "end"


def _next_cut_window(start: float, duration: float, min_s: float, max_s: float) -> tuple[float, float] | None:
    """Where the next cut may fall so that every remaining segment can still respect the bounds.

    Returns None when the rest of the song fits in one segment (no more cuts). When the rest is
    longer than `max_s` but shorter than two minimum segments, the window collapses onto the
    midpoint: the maximum is a hard limit (the video model's longest clip), the minimum yields.
    """
    rest = duration - start
    if rest <= max_s:
        return None
    lo, hi = start + min_s, min(start + max_s, duration - min_s)
    if lo > hi:
        mid = start + rest / 2.0
        return mid, mid
    return lo, hi


def segment_random(duration: float, *, seed: int, min_seconds: float = 4.0, max_seconds: float = 8.0) -> Cuts:
    """The paper's random mode: segment lengths drawn uniformly from [min_seconds, max_seconds].

    Deterministic for a given `seed`. The last segments are constrained so the song tiles
    exactly with every segment inside the bounds whenever that is possible.
    """
    rng = np.random.default_rng(seed)
    times: list[float] = []
    start = 0.0
    while (window := _next_cut_window(start, duration, min_seconds, max_seconds)) is not None:
        lo, hi = window
        cut = float(min(max(start + rng.uniform(min_seconds, max_seconds), lo), hi))
        times.append(cut)
        start = cut
    return Cuts(times, ["random"] * len(times) + ["end"])


def segment_rule_based(
    duration: float,
    *,
    beats: np.ndarray,
    novelty_times: np.ndarray,
    novelty: np.ndarray,
    min_seconds: float = 4.0,
    max_seconds: float = 7.0,
    beats_per_cut: int = 12,
    novelty_threshold: float = 0.3,
) -> Cuts:
    """The paper's rule-based mode: every cut has one of three causes.

    Walking from the start, the next cut is the first of
      1. ``novelty``: a peak of spectral novelty (0..1, normalised over the song) above
         `novelty_threshold` - a significant change in timbre/harmony - at least `min_seconds`
         after the last cut (the strongest such peak before 2. wins);
      2. ``beat_count``: the `beats_per_cut`-th beat since the last cut;
      3. ``max_length``: `max_seconds` after the last cut.

    Parameters
    ----------
    beats : beat times, seconds.
    novelty_times, novelty : a novelty curve sampled at `novelty_times` (seconds), values 0..1.
    """
    beats = np.asarray(beats, dtype=float)
    novelty_times = np.asarray(novelty_times, dtype=float)
    novelty = np.asarray(novelty, dtype=float)
    peaks = _local_peaks(novelty, novelty_threshold)
    peak_times, peak_values = novelty_times[peaks], novelty[peaks]

    times: list[float] = []
    reasons: list[str] = []
    start = 0.0
    while (window := _next_cut_window(start, duration, min_seconds, max_seconds)) is not None:
        lo, hi = window
        cut, reason = hi, "max_length"
        later = beats[beats > start + 1e-6]
        if len(later) >= beats_per_cut and lo <= later[beats_per_cut - 1] <= hi:
            cut, reason = float(later[beats_per_cut - 1]), "beat_count"
        in_window = (peak_times >= lo) & (peak_times <= cut)
        if in_window.any():
            best = np.argmax(np.where(in_window, peak_values, -1.0))
            cut, reason = float(peak_times[best]), "novelty"
        times.append(cut)
        reasons.append(reason)
        start = cut
    return Cuts(times, reasons + ["end"])


def _local_peaks(x: np.ndarray, threshold: float) -> np.ndarray:
    if len(x) < 3:
        return np.zeros(0, dtype=int)
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > threshold)
    return np.flatnonzero(inner) + 1


def snap_to_beats(
    cuts: Cuts,
    duration: float,
    *,
    beats: np.ndarray,
    downbeats: np.ndarray,
    tolerance: float,
    min_seconds: float,
    max_seconds: float,
) -> Cuts:
    """Move each cut onto a beat within `tolerance` seconds, preferring downbeats.

    A move is kept only if both neighbouring segments stay within [min_seconds, max_seconds]
    (bounds a cut already violated are not made worse). Cuts are processed left to right
    against the already-moved previous cut.
    """
    beats = np.asarray(beats, dtype=float)
    downbeats = np.asarray(downbeats, dtype=float)
    out: list[float] = []
    for i, t in enumerate(cuts.times):
        prev = out[-1] if out else 0.0
        nxt = cuts.times[i + 1] if i + 1 < len(cuts.times) else duration
        chosen = t
        for pool in (downbeats, beats):
            near = pool[np.abs(pool - t) <= tolerance] if len(pool) else pool
            ok = [b for b in near if _lengths_ok(prev, b, nxt, min_seconds, max_seconds, t)]
            if ok:
                chosen = float(min(ok, key=lambda b: abs(b - t)))
                break
        out.append(chosen)
    return Cuts(out, cuts.reasons)


def _lengths_ok(prev: float, b: float, nxt: float, lo: float, hi: float, original: float) -> bool:
    def fine(a: float, orig: float) -> bool:
        if lo - 1e-9 <= a <= hi + 1e-9:
            return True
        # Outside the bounds already before snapping: allow only moves that do not worsen it.
        return abs(a - np.clip(a, lo, hi)) <= abs(orig - np.clip(orig, lo, hi)) + 1e-9

    return b > prev and b < nxt and fine(b - prev, original - prev) and fine(nxt - b, nxt - original)


def segments_from_cuts(cuts: Cuts, duration: float, fps: int, beats: np.ndarray | None = None) -> list[Segment]:
    """Turn cut times into segments that tile [0, duration] on the output frame grid.

    Interior cuts are rounded to the nearest output frame (``round(t * fps) / fps``) so each cut
    happens exactly on a frame; the last segment ends at `duration` and at frame
    ``round(duration * fps)``.
    """
    beats = np.asarray(beats if beats is not None else [], dtype=float)
    frames = [0] + [int(round(t * fps)) for t in cuts.times] + [int(round(duration * fps))]
    if any(b <= a for a, b in zip(frames, frames[1:])):
        raise ValueError(f"cuts {cuts.times} collapse on the {fps} fps frame grid")
    bounds = [0.0] + [f / fps for f in frames[1:-1]] + [float(duration)]
    segments = []
    for i in range(len(frames) - 1):
        start, end = bounds[i], bounds[i + 1]
        inside = beats[(beats >= start) & (beats < end)]
        segments.append(
            Segment(
                index=i,
                start=round(start, 6),
                end=round(end, 6) if i < len(frames) - 2 else float(duration),
                start_frame=frames[i],
                end_frame=frames[i + 1],
                reason=cuts.reasons[i],
                beats=[round(float(b), 4) for b in inside],
            )
        )
    return segments


def plan_segments(
    y: np.ndarray,
    sr: int,
    duration: float,
    *,
    song_hash: str,
    fps: int,
    mode: str,
    beat_snap: bool,
    seed: int,
    min_seconds: float,
    max_seconds: float,
    random_max_seconds: float,
    beats_per_cut: int,
    novelty_threshold: float,
    snap_tolerance_seconds: float,
    max_clip_seconds: float = float("inf"),
) -> Segmentation:
    """The segment stage's algorithm, top to bottom: beats -> cuts -> (snap) -> frame grid.

    `max_clip_seconds` is the active video backend's longest clip; it caps `max_seconds`
    (and the random mode's maximum) so no segment needs a longer clip than the model renders.
    """
    from models.beats import track_beats, spectral_novelty

    cap = min(max_seconds, max_clip_seconds)
    random_cap = min(random_max_seconds, max_clip_seconds)
    lo = min(min_seconds, cap / 2.0)
    grid = track_beats(y, sr)
    if mode == "random":
        cuts = segment_random(duration, seed=seed, min_seconds=lo, max_seconds=random_cap)
        cap_used = random_cap
    else:
        nov_t, nov = spectral_novelty(y, sr)
        cuts = segment_rule_based(
            duration, beats=grid.beats, novelty_times=nov_t, novelty=nov, min_seconds=lo, max_seconds=cap,
            beats_per_cut=beats_per_cut, novelty_threshold=novelty_threshold,
        )
        cap_used = cap
    if beat_snap:
        cuts = snap_to_beats(
            cuts, duration, beats=grid.beats, downbeats=grid.downbeats, tolerance=snap_tolerance_seconds,
            min_seconds=lo, max_seconds=cap_used,
        )
    return Segmentation(
        song_hash=song_hash,
        duration=duration,
        fps=fps,
        mode=mode,
        beat_snap=beat_snap,
        tempo_bpm=round(grid.tempo_bpm, 3),
        beat_confidence=round(grid.confidence, 4),
        beats=[round(float(b), 4) for b in grid.beats],
        downbeats=[round(float(b), 4) for b in grid.downbeats],
        segments=segments_from_cuts(cuts, duration, fps, grid.beats),
    )
