"""Cutting a song into scenes: the paper's random and rule-based modes, and their beat-snapped variants.

All functions are pure: arrays and numbers in, cut times out. Times are in seconds; frame
indices refer to the *output video* frame grid. With `fps` given, every cut is placed on that
grid as it is made (``round(t * fps)`` from absolute time, so rounding never accumulates drift)
and the length bounds are checked in whole frames, so no later rounding can break them.

The modes (paper section 3.3.1):

- **random**: segment lengths drawn uniformly from [min, max] seconds (paper: 4-8 s), seeded.
- **rule_based**: every cut has one of three causes - a significant spectral change
  (``novelty``), `beats_per_cut` beats since the last cut (``beat_count``), or the maximum
  length (``max_length``, paper: 7 s).
- **beat-snapped variants** of both: the same rule proposes each cut, measured from the previous
  *snapped* cut; the cut then moves to the best beat within reach (`BeatSnap`): downbeats and
  beats with strong onsets are preferred, farther beats penalised. Only positions that keep the
  length bounds satisfiable for the rest of the song are considered.

- **joint** (`plan_joint`, the default with beat snapping): instead of moving each cut as it is
  made, all cuts are placed at once by dynamic programming over the output frames: a cut earns
  points for sitting on a beat, more on a downbeat, on a 4/8-bar phrase start and on a section
  boundary (rule_based: also on a significant spectral change), each segment pays for straying
  from the mode's length (rule_based: `beats_per_cut` beats; random: the middle of its range, and a
  seeded bonus per beat picks among equally musical plans). The length bounds are hard constraints.

Length bounds, applied together: `min_seconds`, `max_seconds` and the video backend's longest
clip (`max_clip_seconds`, e.g. Wan 2.1: 81 frames at 16 fps = 5.06 s), passed in by the caller.
The maximum is hard; the minimum yields only where the song cannot be tiled otherwise (a song
shorter than two minimum segments is one segment; a remainder that fits no combination is split
evenly). Segments always tile [0, duration] exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from soundsight.models.audio.beats import track_beats
from soundsight.models.audio.beats.confidence import is_credible
from soundsight.models.audio.beats.structure import spectral_novelty
from soundsight.models.base import BeatGrid
from soundsight.schemas import Segment, Segmentation
from soundsight.settings import SegmentSettings

__all__ = [
    "BeatSnap",
    "Cuts",
    "JointWeights",
    "effective_bounds",
    "plan_joint",
    "plan_segments",
    "segment_random",
    "segment_rule_based",
    "segments_from_cuts",
]


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


class _Grid:
    """Length bounds on a time grid of `q` seconds (one output frame, or 1 ms without fps)."""

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
        return int(round(t * self.rate))

    def time(self, tick: int) -> float:
        return tick * self.q

    def _feasible(self, rest: int) -> bool:
        return rest >= self.mn and math.ceil(rest / self.mx) * self.mn <= rest

    def must_cut(self, start: int) -> bool:
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
        return any(a <= tick <= b for a, b in allowed)

    @staticmethod
    def project(tick: int, allowed: list[tuple[int, int]]) -> int:
        best = min(allowed, key=lambda ab: 0 if ab[0] <= tick <= ab[1] else min(abs(tick - ab[0]), abs(tick - ab[1])))
        return int(min(max(tick, best[0]), best[1]))


@dataclass(frozen=True)
class BeatSnap:
    """Where a proposed cut moves: the best-scoring beat within reach.

    Reach is ``max(tolerance, one beat period)`` seconds on either side (a cut can always reach
    a beat, even at slow tempi or when the length bounds allow only one side). Among the beats
    in reach whose position keeps the bounds satisfiable, the cut takes the one with the lowest
    ``distance / reach - downbeat_bonus * is_downbeat - strength_bonus * strength`` (strength:
    the beat's onset strength, 0..1). With the defaults a downbeat wins over a plain beat that
    is up to half the reach closer; a strong onset over a weak one up to a quarter of the reach
    closer. No beat in reach: the cut stays where the mode put it.
    """

    beats: np.ndarray
    downbeats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    strength: np.ndarray | None = None
    tolerance: float = 0.35
    downbeat_bonus: float = 0.5
    strength_bonus: float = 0.25

    def __call__(self, grid: _Grid, raw: int, allowed: list[tuple[int, int]]) -> tuple[int, str, float]:
        """(tick, 'downbeat' | 'beat' | '', shift in seconds) for a cut proposed at tick `raw`."""
        beats = np.asarray(self.beats, dtype=float)
        if len(beats) == 0:
            return raw, "", 0.0
        period = float(np.median(np.diff(beats))) if len(beats) > 2 else self.tolerance
        reach = max(self.tolerance, period)
        t = grid.time(raw)
        lo, hi = np.searchsorted(beats, [t - reach - 1e-9, t + reach + 1e-9])
        down = np.asarray(self.downbeats, dtype=float)
        strength = np.asarray(self.strength, dtype=float) if self.strength is not None else np.zeros(len(beats))
        best: tuple[float, int, str, float] | None = None
        for i in range(lo, hi):
            b = float(beats[i])
            tick = grid.tick(b)
            if not grid.inside(tick, allowed):
                continue
            is_down = bool(len(down)) and float(np.min(np.abs(down - b))) < 1e-6
            s = float(strength[i]) if i < len(strength) else 0.0
            score = abs(b - t) / reach - self.downbeat_bonus * is_down - self.strength_bonus * s
            if best is None or score < best[0]:
                best = (score, tick, "downbeat" if is_down else "beat", b - t)
        if best is None:
            return raw, "", 0.0
        return best[1], best[2], best[3]


def _walk(grid: _Grid, propose, snap: BeatSnap | None) -> Cuts:
    """Make cuts left to right: `propose(start_tick, allowed)` -> (raw tick, reason) or None to stop."""
    times: list[float] = []
    reasons: list[str] = []
    snaps: list[str] = []
    shifts: list[float] = []
    start = 0
    while True:
        allowed = grid.allowed(start)
        if not allowed:
            break
        proposal = propose(start, allowed)
        if proposal is None:
            if grid.must_cut(start):  # defensive: modes always propose while a cut is needed
                proposal = (allowed[-1][1], "max_length")
            else:
                break
        raw, reason = proposal
        raw = grid.project(raw, allowed)
        kind, shift = "", 0.0
        if snap is not None:
            raw, kind, shift = snap(grid, raw, allowed)
        times.append(round(grid.time(raw), 9))
        reasons.append(reason)
        snaps.append(kind)
        shifts.append(round(shift, 6))
        start = raw
    return Cuts(times, reasons + ["end"], snaps, shifts)


def segment_random(
    duration: float,
    *,
    seed: int,
    min_seconds: float = 4.0,
    max_seconds: float = 8.0,
    fps: float | None = None,
    snap: BeatSnap | None = None,
) -> Cuts:
    """The paper's random mode: segment lengths drawn uniformly from [min_seconds, max_seconds].

    Deterministic for a given `seed` (one uniform draw per segment, snapped or not). When the
    rest of the song fits in one segment (<= max_seconds) it becomes the last segment; otherwise
    a draw that would leave an untileable remainder is moved to the nearest position that does not.
    """
    grid = _Grid(duration, min_seconds, max_seconds, fps)
    rng = np.random.default_rng(seed)

    def propose(start: int, allowed):
        length = rng.uniform(min_seconds, max_seconds)
        if not grid.must_cut(start):
            return None
        return start + grid.tick(length), "random"

    return _walk(grid, propose, snap)


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
    fps: float | None = None,
    snap: BeatSnap | None = None,
) -> Cuts:
    """The paper's rule-based mode: every cut has one of three causes.

    Walking from the start, the window of allowed next cuts [lo, hi] runs from `min_seconds` to
    `max_seconds` after the last cut (only positions that leave a tileable rest). The next cut is:

    - ``novelty``: the strongest peak of spectral novelty above `novelty_threshold` (0..1: share
      of the song's largest timbre/harmony change) between lo and the beat-count cut below (or
      hi) - a significant change comes first;
    - else ``beat_count``: the `beats_per_cut`-th beat after the last cut, if it is in the window
      (12 beats = three 4/4 bars: lands in 4-7 s between 103 and 180 BPM);
    - else ``max_length``: hi, i.e. `max_seconds` after the last cut (the paper's 7 s).

    When the rest of the song fits in one segment, only novelty and beat count may still cut.

    Parameters
    ----------
    beats : beat times, seconds.
    novelty_times, novelty : a novelty curve sampled at `novelty_times` (seconds), values 0..1.
    """
    grid = _Grid(duration, min_seconds, max_seconds, fps)
    beats = np.asarray(beats, dtype=float)
    novelty_times = np.asarray(novelty_times, dtype=float)
    novelty = np.asarray(novelty, dtype=float)
    peaks = _local_peaks(novelty, novelty_threshold)
    peak_ticks = np.array([grid.tick(t) for t in novelty_times[peaks]], dtype=int)
    peak_values = novelty[peaks]

    def propose(start: int, allowed):
        lo, hi = allowed[0][0], allowed[-1][1]
        cap, reason = hi, ("max_length" if grid.must_cut(start) else None)
        later = beats[beats > grid.time(start) + 1e-6]
        if len(later) >= beats_per_cut:
            tick = grid.tick(later[beats_per_cut - 1])
            if grid.inside(tick, allowed):
                cap, reason = tick, "beat_count"
        ok = np.array([lo <= t <= cap and grid.inside(int(t), allowed) for t in peak_ticks], dtype=bool)
        if ok.any():
            best = int(np.argmax(np.where(ok, peak_values, -1.0)))
            return int(peak_ticks[best]), "novelty"
        return None if reason is None else (cap, reason)

    return _walk(grid, propose, snap)


@dataclass(frozen=True)
class JointWeights:
    """Points of the joint planner (`plan_joint`), in units of "one downbeat".

    A cut scores ``downbeat x is_downbeat + phrase x phrase strength + section x section strength
    + onset x onset strength + novelty x (novelty - threshold)`` on a beat and ``off_beat`` off
    any beat; each segment pays ``length x (deviation from the mode's length, in bars)^2``.
    Strengths are 0..1 (`BeatGrid`): a 4-bar phrase start is worth 0.25-0.5, an 8-bar one
    0.5-1.0, the song's clearest section boundary 2. With these values a plain beat never wins
    over a downbeat at the same segment length, a cut leaves a beat only when no beat keeps the
    length bounds, and a strong section boundary is worth a segment one bar and a half off its
    preferred length.
    """

    downbeat: float = 1.0
    phrase: float = 1.0
    section: float = 2.0
    onset: float = 0.25
    novelty: float = 1.0
    off_beat: float = -4.0
    length: float = 0.5
    random: float = 0.5


def _on_points(t: np.ndarray, points: np.ndarray, tolerance: float) -> np.ndarray:
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


def _values_at(index: np.ndarray, values) -> np.ndarray:
    """values[index] where index >= 0, else 0."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros(len(index))
    return np.where(index >= 0, values[np.clip(index, 0, len(values) - 1)], 0.0)


def plan_joint(
    duration: float,
    grid: BeatGrid,
    *,
    mode: str,
    min_seconds: float,
    max_seconds: float,
    fps: float,
    seed: int = 0,
    beats_per_cut: int = 12,
    novelty_times: np.ndarray | None = None,
    novelty: np.ndarray | None = None,
    novelty_threshold: float = 0.3,
    weights: JointWeights = JointWeights(),
) -> Cuts | None:
    """All cuts at once: the best-scoring tiling of the song's output frames (dynamic programming).

    Parameters
    ----------
    duration : float
        Seconds.
    grid : BeatGrid
        Beats, downbeats, onset strengths, phrase starts and section boundaries (seconds).
    mode : {"random", "rule_based"}
        random: segments prefer the middle of [min_seconds, max_seconds] and a seeded bonus
        (0..``weights.random``) per beat picks among comparable plans; rule_based: segments
        prefer `beats_per_cut` beats, and significant spectral changes earn points.
    min_seconds, max_seconds : float
        Length bounds, seconds; hard (checked in whole output frames).
    fps : float
        Output frame rate; every cut is on an output frame.
    seed : int
        random mode's seed.
    beats_per_cut : int
        rule_based: preferred segment length, beats.
    novelty_times, novelty : np.ndarray, optional
        rule_based: a 0..1 novelty curve (seconds, values); its peaks above `novelty_threshold`
        earn ``weights.novelty x (peak - threshold)`` for a beat within half a beat of them.
    novelty_threshold : float
        0..1.
    weights : JointWeights

    Returns
    -------
    Cuts or None
        Reasons: ``random`` (random mode); rule_based: ``novelty`` (on a section boundary or a
        significant change), ``max_length`` (within half a beat of the maximum) or
        ``beat_count`` (a cut placed by counting beats and bars). None when the bounds cannot
        tile the song (the caller falls back to the greedy walk, where the minimum yields).
    """
    g = _Grid(duration, min_seconds, max_seconds, fps)
    n, mn, mx, q = g.n, g.mn, g.mx, g.q
    beats = np.asarray(grid.beats, dtype=float)
    period = grid.period
    per_bar = max(1, int(grid.beats_per_bar or 4))
    reward = np.full(n + 1, weights.off_beat)
    beat_tick = np.round(beats * g.rate).astype(int)
    inside = (beat_tick > 0) & (beat_tick < n)
    # beats per tick (for segment lengths in beats) and the reward of each beat tick
    count = np.zeros(n + 2)
    np.add.at(count, np.clip(beat_tick, 0, n) + 1, 1.0)
    cum = np.cumsum(count)  # cum[k] = beats at ticks < k
    strength = np.asarray(grid.strength, dtype=float)
    if len(strength) != len(beats):
        strength = np.zeros(len(beats))
    half_frame = 0.5 * q + 1e-6
    beat_value = weights.onset * strength
    beat_value = beat_value + weights.downbeat * (_on_points(beats, grid.downbeats, 1e-6) >= 0)
    k = _on_points(beats, grid.phrase_boundaries, 1e-6)
    beat_value = beat_value + weights.phrase * _values_at(k, grid.phrase_strength)
    k = _on_points(beats, grid.section_boundaries, 1e-6)
    beat_value = beat_value + weights.section * _values_at(k, grid.section_strength)
    novel = np.zeros(len(beats))
    if mode != "random" and novelty_times is not None and novelty is not None and len(novelty):
        peaks = _local_peaks(np.asarray(novelty, dtype=float), novelty_threshold)
        if len(peaks):
            k = _on_points(beats, np.asarray(novelty_times, dtype=float)[peaks], 0.5 * period)
            novel = np.clip(_values_at(k, np.asarray(novelty, dtype=float)[peaks]) - novelty_threshold, 0.0, None)
    beat_value = beat_value + weights.novelty * novel
    if mode == "random":
        beat_value = beat_value + weights.random * np.random.default_rng(seed).random(len(beats))
    on_beat = np.full(n + 1, -np.inf)
    np.maximum.at(on_beat, beat_tick[inside], beat_value[inside])  # several beats on one frame: the best counts
    reward = np.where(np.isfinite(on_beat), on_beat, reward)
    reward[n] = 0.0
    # preferred length, in beats
    lo_beats, hi_beats = min_seconds / period, max_seconds / period
    target = float(beats_per_cut) if mode != "random" else 0.5 * (lo_beats + hi_beats)
    target = float(np.clip(target, lo_beats, hi_beats))
    best = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=int)
    best[0] = 0.0
    for end in range(mn, n + 1):
        a, b = max(0, end - mx), end - mn
        if b < a:
            continue
        prev = best[a : b + 1]
        if not np.isfinite(prev).any():
            continue
        in_beats = cum[end] - cum[a : b + 1]
        cost = weights.length * ((in_beats - target) / per_bar) ** 2
        total = prev - cost
        j = int(np.argmax(total))
        if np.isfinite(total[j]):
            best[end] = total[j] + reward[end]
            back[end] = a + j
    if not np.isfinite(best[n]):
        return None
    cuts = []
    k = n
    while k > 0:
        k = int(back[k])
        if k > 0:
            cuts.append(k)
    cuts = cuts[::-1]
    times = [round(float(c * q), 9) for c in cuts]
    beat_of = _on_points(np.array([c * q for c in cuts]), beats, half_frame)
    is_down = _on_points(np.array([c * q for c in cuts]), np.asarray(grid.downbeats, dtype=float), half_frame) >= 0
    on_section = _on_points(np.array([c * q for c in cuts]), np.asarray(grid.section_boundaries), half_frame) >= 0
    reasons, snaps = [], []
    starts = [0, *cuts]
    for i, c in enumerate(cuts):
        if mode == "random":
            reasons.append("random")
        elif on_section[i] or (beat_of[i] >= 0 and novel[beat_of[i]] > 0):
            reasons.append("novelty")
        elif (c - starts[i]) * q >= max_seconds - 0.5 * period:
            reasons.append("max_length")
        else:
            reasons.append("beat_count")
        snaps.append("downbeat" if is_down[i] else ("beat" if beat_of[i] >= 0 else ""))
    return Cuts(times, reasons + ["end"], snaps, [0.0] * len(cuts))


def _local_peaks(x: np.ndarray, threshold: float) -> np.ndarray:
    if len(x) < 3:
        return np.zeros(0, dtype=int)
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > threshold)
    return np.flatnonzero(inner) + 1


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


def _mark(segments: list[Segment], grid: BeatGrid, fps: int) -> list[Segment]:
    """Set each segment's on_downbeat / on_phrase_boundary / on_section_boundary (cut at its end, half a frame)."""
    tol = 0.5 / fps + 1e-6
    ends = np.array([s.end for s in segments[:-1]], dtype=float)
    down = _on_points(ends, np.asarray(grid.downbeats, dtype=float), tol) >= 0
    phrase = _on_points(ends, np.asarray(grid.phrase_boundaries, dtype=float), tol) >= 0
    section = _on_points(ends, np.asarray(grid.section_boundaries, dtype=float), tol) >= 0
    return [
        s.model_copy(
            update={
                "on_downbeat": bool(down[i]),
                "on_phrase_boundary": bool(phrase[i]),
                "on_section_boundary": bool(section[i]),
            }
        )
        if i < len(ends)
        else s
        for i, s in enumerate(segments)
    ]


def confidence_note(grid: BeatGrid, min_confidence: float, warn_confidence: float) -> str:
    """What the tracker's confidence means for the cuts, for the user ('' when it is fine).

    Parameters
    ----------
    grid : BeatGrid
    min_confidence, warn_confidence : float
        0..1: below the first no grid is credible (cuts stay unsnapped); below the second the
        grid is used but may be off the beat in places.

    Returns
    -------
    str
    """
    if len(grid.beats) < 8:
        return "no beat found (fewer than two bars of beats): cuts are the paper's unsnapped ones"
    terms = grid.confidence_terms
    why = ""
    if terms:
        weakest = min(("on_attack", "regularity", "phase"), key=lambda k: terms.get(k, 1.0))
        why = {
            "on_attack": "few beats fall on clear note attacks",
            "regularity": "the tempo is unsteady",
            "phase": "the beats are hardly stronger than the off-beats (the grid may be half a beat off)",
        }[weakest]
    if not is_credible(grid, min_confidence):
        return (
            f"beat tracking confidence {grid.confidence:.2f} is below {min_confidence:.2f}"
            + (f" ({why})" if why else "")
            + ": cuts are the paper's unsnapped ones"
        )
    if grid.confidence < warn_confidence:
        return (
            f"beat tracking confidence {grid.confidence:.2f} is low"
            + (f" ({why})" if why else "")
            + ": some cuts may sit off the beat"
        )
    return ""


def move_to_line_starts(
    cuts: Cuts,
    line_starts: np.ndarray,
    grid: BeatGrid,
    duration: float,
    min_seconds: float,
    max_seconds: float,
    fps: int,
) -> Cuts:
    """Move each cut to a sung line's start within reach, where the length bounds still hold.

    Parameters
    ----------
    cuts : Cuts
        From a planner.
    line_starts : numpy.ndarray
        Times the sung lines start, seconds.
    grid : BeatGrid
        A line start moves the cut onto the beat nearest it when the grid has beats (singers come
        in on or just before a beat); else onto the line start itself.
    duration, min_seconds, max_seconds : float
        Song length and segment length bounds, seconds.
    fps : int
        Output frame rate: cuts land on output frames.

    Returns
    -------
    Cuts
        The same cuts, those moved marked with reason ``"lyric_line"``. Reach: one bar (or 2 s
        without a grid) either side; a cut stays where it is when no line start is in reach or
        moving it would break a bound.
    """
    starts = np.sort(np.asarray(line_starts, dtype=float))
    if not len(starts) or not cuts.times:
        return cuts
    beats = np.asarray(grid.beats, dtype=float)
    reach = grid.period * grid.beats_per_bar if len(beats) > 2 else 2.0
    times, reasons = list(cuts.times), list(cuts.reasons)
    frame = 1.0 / fps
    for k, t in enumerate(times):
        near = starts[np.abs(starts - t) <= reach]
        for start in sorted(near, key=lambda s: abs(s - t)):
            target = float(beats[np.argmin(np.abs(beats - start))]) if len(beats) else float(start)
            target = round(target * fps) / fps
            previous = times[k - 1] if k else 0.0
            following = times[k + 1] if k + 1 < len(times) else duration
            if min_seconds - frame / 2 <= target - previous <= max_seconds + frame / 2 and (
                min_seconds - frame / 2 <= following - target <= max_seconds + frame / 2
            ):
                times[k], reasons[k] = target, "lyric_line"
                break
    return Cuts(times, reasons, cuts.snaps, cuts.shifts)


def plan_segments(
    y: np.ndarray,
    sr: int,
    settings: SegmentSettings,
    *,
    song_hash: str,
    fps: int,
    max_clip_seconds: float = float("inf"),
    grid: BeatGrid | None = None,
    novelty_curve: tuple[np.ndarray, np.ndarray] | None = None,
    line_starts: list[float] | None = None,
) -> Segmentation:
    """The segment stage's algorithm, top to bottom: beats -> cuts -> frame grid.

    Parameters
    ----------
    y : numpy.ndarray
        The song, mono float32.
    sr : int
        Its sampling rate, Hz. The song lasts ``len(y) / sr`` seconds.
    settings : SegmentSettings
        Mode and thresholds, in musical units (see below).
    song_hash : str
        Recorded in the result.
    fps : int
        Output frame rate: every cut lands on an output frame.
    max_clip_seconds : float
        The active video backend's longest clip, seconds; caps the maximum segment length so no
        segment needs a longer clip than the model renders (Wan 2.1: 81 frames / 16 fps = 5.06 s).
    grid : BeatGrid, optional
        A grid the caller already has (the segment task's tracker, the benchmark); else the
        built-in tracker (`beats.track_beats`) runs on `y`.
    novelty_curve : (numpy.ndarray, numpy.ndarray), optional
        A novelty curve (times in seconds, values 0..1); computed from `y` otherwise.

    Returns
    -------
    Segmentation
        Segments that tile ``[0, duration]`` exactly, each cut on an output frame, each marked
        on_downbeat / on_phrase_boundary / on_section_boundary; the grid's confidence and, when it
        is low, `confidence_note`.

    Raises
    ------
    ValueError
        `fps` below 1, or `y` empty.

    Notes
    -----
    With ``beat_snap`` and a credible grid (`is_credible`: at least 8 beats and confidence >=
    ``min_confidence``) the cuts are placed by ``planner``: ``joint`` (`plan_joint`) or
    ``greedy`` (each cut moved to the best beat within reach as it is made, `BeatSnap`). With no
    credible grid, or ``beat_snap`` off, the cuts are the paper's (``cut_planner = "unsnapped"``).
    Thresholds in musical units:

    - ``min_seconds`` / ``max_seconds`` (random mode: ``random_max_seconds``): segment length
      bounds, checked in whole output frames.
    - ``beats_per_cut``: beats between cuts for the beat-count rule (12 = three bars of 4/4).
    - ``novelty_threshold``: share of the song's largest timbre/harmony change (0..1) a change
      must exceed to cut; novelty compares the bar before with the bar after each point.
    - ``snap_tolerance_seconds`` (greedy planner): how far a cut may move to reach a beat - or one
      beat, whichever is more.
    """
    if fps < 1:
        raise ValueError(f"fps must be at least 1, not {fps}")
    if len(y) == 0:
        raise ValueError("y is empty: no audio to segment")
    duration = len(y) / sr
    if grid is None:
        grid = track_beats(y, sr)
    top = settings.random_max_seconds if settings.mode == "random" else settings.max_seconds
    lo, cap = effective_bounds(settings.min_seconds, top, max_clip_seconds)
    credible = is_credible(grid, settings.min_confidence)
    snapping = settings.beat_snap and credible
    planner = settings.planner if snapping else "unsnapped"
    if planner == "auto":  # bar lines only where the grid is trusted: an off-phase grid's downbeats are off too
        planner = "joint" if grid.confidence >= settings.joint_confidence else "greedy"
    nov_t = nov = None
    if settings.mode != "random":
        if novelty_curve is None:
            bar = grid.period * grid.beats_per_bar if len(grid.beats) > 2 else 2.0
            novelty_curve = spectral_novelty(y, sr, context_seconds=float(np.clip(bar, 1.5, 4.0)))
        nov_t, nov = novelty_curve
    cuts = None
    bounds = dict(min_seconds=lo, max_seconds=cap, fps=fps)  # every planner's length rules and frame grid
    change = dict(novelty_times=nov_t, novelty=nov, novelty_threshold=settings.novelty_threshold)
    if planner == "joint":
        cuts = plan_joint(
            duration,
            grid,
            mode=settings.mode,
            seed=settings.seed,
            beats_per_cut=settings.beats_per_cut,
            **bounds,
            **change,
        )
        if cuts is None:  # the bounds cannot tile the song: the greedy walk lets the minimum yield
            planner = "greedy"
    if cuts is None:
        snap = None
        if snapping:
            snap = BeatSnap(grid.beats, grid.downbeats, grid.strength, tolerance=settings.snap_tolerance_seconds)
        if settings.mode == "random":
            cuts = segment_random(duration, seed=settings.seed, snap=snap, **bounds)
        else:
            cuts = segment_rule_based(
                duration, beats=grid.beats, beats_per_cut=settings.beats_per_cut, snap=snap, **bounds, **change
            )
    if line_starts:  # segment.prefer_line_starts: sung lines, from the lyrics stage
        cuts = move_to_line_starts(cuts, np.asarray(line_starts), grid, duration, lo, cap, fps)
    segments = _mark(segments_from_cuts(cuts, duration, fps, grid.beats), grid, fps)
    note = confidence_note(grid, settings.min_confidence, settings.warn_confidence)
    return Segmentation(
        song_hash=song_hash,
        duration=duration,
        fps=fps,
        mode=settings.mode,
        beat_snap=settings.beat_snap,
        tempo_bpm=round(grid.tempo_bpm, 3),
        beat_confidence=round(grid.confidence, 4),
        beats=[round(float(b), 4) for b in grid.beats],
        downbeats=[round(float(b), 4) for b in grid.downbeats],
        segments=segments,
        beats_per_bar=grid.beats_per_bar if len(grid.beats) else None,
        tempo_level=grid.tempo_level if len(grid.beats) else None,
        min_seconds=round(lo, 6),
        max_seconds=round(cap, 6),
        beat_tracker=grid.tracker,
        cut_planner=planner if settings.beat_snap else "unsnapped",
        grid_credible=credible,
        steady_tempo=grid.steady_tempo if len(grid.beats) else None,
        low_confidence=grid.confidence < settings.warn_confidence,
        confidence_note=note,
        confidence_terms={k: round(float(v), 4) for k, v in grid.confidence_terms.items()},
        phrase_boundaries=[round(float(b), 4) for b in grid.phrase_boundaries],
        section_boundaries=[round(float(b), 4) for b in grid.section_boundaries],
    )
