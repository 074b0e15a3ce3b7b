"""The joint cut planner (`plan_joint`): all cuts at once, by dynamic programming over output frames.

A cut earns points for sitting on a beat, more on a downbeat, on a 4/8-bar phrase start and on
a section boundary (rule_based: also on a significant spectral change); each segment pays for
straying from the mode's length (rule_based: `beats_per_cut` beats; random: the middle of its
range, and a seeded bonus per beat picks among equally musical plans). The length bounds
(`tiling.CutGrid`) are hard constraints. Times are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundsight.models.audio.tiling import CutGrid, Cuts, local_peaks, match_points
from soundsight.models.base import BeatGrid

__all__ = ["JointWeights", "plan_joint"]


@dataclass(frozen=True)
class JointWeights:
    """Points of the joint planner (`plan_joint`), in units of "one downbeat".

    A cut scores ``downbeat x is_downbeat + phrase x phrase strength + section x section strength
    + onset x onset strength + novelty x (novelty - threshold)`` on a beat, ``before_beat`` on the
    output frame just before a beat's own frame (picture a little before the sound: viewers notice
    it only from about 125 ms, a picture after the sound from about 45 ms, ITU-R BT.1359) and
    ``off_beat`` off any beat; each segment pays ``length x (deviation from the mode's length, in bars)^2``.
    Strengths are 0..1 (`BeatGrid`): a 4-bar phrase start is worth 0.25-0.5, an 8-bar one
    0.5-1.0, the song's clearest section boundary 2. With these values a plain beat never wins
    over a downbeat at the same segment length, a cut leaves a beat only when no beat keeps the
    length bounds (then preferably the frame before a beat over the one after), and a strong section boundary is worth a segment one bar and a half off its
    preferred length.
    """

    downbeat: float = 1.0
    phrase: float = 1.0
    section: float = 2.0
    onset: float = 0.25
    novelty: float = 1.0
    off_beat: float = -4.0
    before_beat: float = -2.0
    length: float = 0.5
    random: float = 0.5


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
    g = CutGrid(duration, min_seconds, max_seconds, fps)
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
    beat_value = beat_value + weights.downbeat * (match_points(beats, grid.downbeats, 1e-6) >= 0)
    k = match_points(beats, grid.phrase_boundaries, 1e-6)
    beat_value = beat_value + weights.phrase * _values_at(k, grid.phrase_strength)
    k = match_points(beats, grid.section_boundaries, 1e-6)
    beat_value = beat_value + weights.section * _values_at(k, grid.section_strength)
    novel = np.zeros(len(beats))
    if mode != "random" and novelty_times is not None and novelty is not None and len(novelty):
        peaks = local_peaks(np.asarray(novelty, dtype=float), novelty_threshold)
        if len(peaks):
            k = match_points(beats, np.asarray(novelty_times, dtype=float)[peaks], 0.5 * period)
            novel = np.clip(_values_at(k, np.asarray(novelty, dtype=float)[peaks]) - novelty_threshold, 0.0, None)
    beat_value = beat_value + weights.novelty * novel
    if mode == "random":
        beat_value = beat_value + weights.random * np.random.default_rng(seed).random(len(beats))
    before = beat_tick[inside] - 1
    reward[before[before > 0]] = weights.before_beat  # the frame before a beat beats the one after (docstring)
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
    beat_of = match_points(np.array([c * q for c in cuts]), beats, half_frame)
    is_down = match_points(np.array([c * q for c in cuts]), np.asarray(grid.downbeats, dtype=float), half_frame) >= 0
    on_section = match_points(np.array([c * q for c in cuts]), np.asarray(grid.section_boundaries), half_frame) >= 0
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
