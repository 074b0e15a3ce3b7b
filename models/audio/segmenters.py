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

- **joint** (`joint.plan_joint`, the default with beat snapping): instead of moving each cut as
  it is made, all cuts are placed at once by dynamic programming over the output frames.

Length bounds, applied together: `min_seconds`, `max_seconds` and the video backend's longest
clip (`max_clip_seconds`, e.g. Wan 2.1: 81 frames at 16 fps = 5.06 s), passed in by the caller.
The maximum is hard; the minimum yields only where the song cannot be tiled otherwise (a song
shorter than two minimum segments is one segment; a remainder that fits no combination is split
evenly). Segments always tile [0, duration] exactly (`tiling`).

`plan_segments` is the segment stage's algorithm, top to bottom, on a grid from any beat tracker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from soundsight.models.audio.beats import track_beats
from soundsight.models.audio.beats.confidence import BAR_CERTAIN_T, bar_phase_credible, is_credible
from soundsight.models.audio.beats.structure import spectral_novelty
from soundsight.models.audio.joint import plan_joint
from soundsight.models.audio.tiling import (
    CutGrid,
    Cuts,
    effective_bounds,
    local_peaks,
    match_points,
    segments_from_cuts,
)
from soundsight.models.base import BeatGrid
from soundsight.schemas import Segment, Segmentation
from soundsight.settings import SegmentSettings

__all__ = [
    "BeatSnap",
    "bar_phase_note",
    "confidence_note",
    "move_to_line_starts",
    "plan_segments",
    "segment_random",
    "segment_rule_based",
]


@dataclass(frozen=True)
class BeatSnap:
    """Where a proposed cut moves: the best-scoring beat within reach.

    Reach is ``max(tolerance, one beat period)`` seconds on either side (a cut can always reach
    a beat, even at slow tempi or when the length bounds allow only one side). Among the beats
    in reach whose position keeps the bounds satisfiable, the cut takes the one with the lowest
    ``distance / reach - downbeat_bonus * is_downbeat - strength_bonus * strength`` (strength:
    the beat's onset strength, 0..1). With the defaults a downbeat wins over a plain beat that
    is up to half the reach closer; a strong onset over a weak one up to a quarter of the reach
    closer. When the length bounds allow no beat in reach on its own output frame, the cut goes to
    the frame before the best such beat (picture before sound; the cut is then on no beat, kind
    ''), never to the frame after it:
    viewers notice a picture change after the sound from about 45 ms, before it only from about
    125 ms (ITU-R BT.1359). No beat in reach: the cut stays where the mode put it.
    """

    beats: np.ndarray
    downbeats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    strength: np.ndarray | None = None
    tolerance: float = 0.35
    downbeat_bonus: float = 0.5
    strength_bonus: float = 0.25

    def __call__(self, grid: CutGrid, raw: int, allowed: list[tuple[int, int]]) -> tuple[int, str, float]:
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
        for before in (0, 1):  # a beat on its own frame; only when none is in reach, the frame before a beat
            for i in range(lo, hi):
                b = float(beats[i])
                tick = grid.tick(b) - before
                if not grid.inside(tick, allowed):
                    continue
                is_down = bool(len(down)) and float(np.min(np.abs(down - b))) < 1e-6
                s = float(strength[i]) if i < len(strength) else 0.0
                score = abs(b - t) / reach - self.downbeat_bonus * is_down - self.strength_bonus * s
                if best is None or score < best[0]:  # a cut before its beat's frame is on no beat: kind ''
                    kind = "" if before else "downbeat" if is_down else "beat"
                    best = (score, tick, kind, grid.time(tick) - t if before else b - t)
            if best is not None:
                break
        if best is None:
            return raw, "", 0.0
        return best[1], best[2], best[3]


def _walk(grid: CutGrid, propose, snap: BeatSnap | None) -> Cuts:
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
    grid = CutGrid(duration, min_seconds, max_seconds, fps)
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
    grid = CutGrid(duration, min_seconds, max_seconds, fps)
    beats = np.asarray(beats, dtype=float)
    novelty_times = np.asarray(novelty_times, dtype=float)
    novelty = np.asarray(novelty, dtype=float)
    peaks = local_peaks(novelty, novelty_threshold)
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


def _mark(segments: list[Segment], grid: BeatGrid, fps: int) -> list[Segment]:
    """Set each segment's on_downbeat / on_phrase_boundary / on_section_boundary (cut at its end, half a frame)."""
    tol = 0.5 / fps + 1e-6
    ends = np.array([s.end for s in segments[:-1]], dtype=float)
    down = match_points(ends, np.asarray(grid.downbeats, dtype=float), tol) >= 0
    phrase = match_points(ends, np.asarray(grid.phrase_boundaries, dtype=float), tol) >= 0
    section = match_points(ends, np.asarray(grid.section_boundaries, dtype=float), tol) >= 0
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


def bar_phase_note(grid: BeatGrid) -> str:
    """What an uncertain bar phase means for the cuts, for the user (`confidence.bar_phase_credible`)."""
    return (
        f"bar phase uncertain (t {grid.bar_phase_t:.1f} below {BAR_CERTAIN_T:.1f}: another beat of the bar is "
        "about as likely to be the bar line): cuts are on beats, not aimed at bar lines"
    )


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
    bar_credible = bar_phase_credible(grid)
    plan_grid = grid
    if not bar_credible:  # cut on beats: no downbeat or phrase rewards for bar lines that may be a beat off
        plan_grid = dataclasses.replace(grid, downbeats=np.zeros(0), phrase_boundaries=np.zeros(0))
    cuts = None
    bounds = dict(min_seconds=lo, max_seconds=cap, fps=fps)  # every planner's length rules and frame grid
    change = dict(novelty_times=nov_t, novelty=nov, novelty_threshold=settings.novelty_threshold)
    if planner == "joint":
        cuts = plan_joint(
            duration,
            plan_grid,
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
            snap = BeatSnap(grid.beats, plan_grid.downbeats, grid.strength, tolerance=settings.snap_tolerance_seconds)
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
    bar_note = "" if bar_credible or not snapping else bar_phase_note(grid)
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
        bar_credible=bar_credible if len(grid.downbeats) else None,
        bar_phase_t=None if grid.bar_phase_t is None else round(float(grid.bar_phase_t), 3),
        bar_note=bar_note,
        confidence_terms={k: round(float(v), 4) for k, v in grid.confidence_terms.items()},
        phrase_boundaries=[round(float(b), 4) for b in grid.phrase_boundaries],
        section_boundaries=[round(float(b), 4) for b in grid.section_boundaries],
    )
