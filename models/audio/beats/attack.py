"""Step 6 of `track_beats`: beats onto note attacks (`refine`).

Each beat moves to the attack of the strongest short-window onset within -70/+50 ms (at most a
quarter / sixth of a beat); beats without one keep the median shift. A steady grid instead stays
on its straight line and moves by a slowly varying offset read from the *mean* attack profile of
the ``RIGID_SPAN`` (17) beats around each beat (`attack_path`): averaging 17 beats keeps the
attack they share and cancels a dense mix's random peaks, so one misread attack (a slow organ or
choir note, a note buried in tremolo picking) cannot move a beat, while a band drifting around
its click is followed - for sharp attacks; a steady grid of slow attacks (`attack_width` of at
least ``SLOW_ATTACK_WIDTH``) moves by the running median of its beats' own half-rises, as before
issue 28 (the mean profile's climb read a swelling flute 20 ms late). Where two attacks compete in the profile (a pickup note a 32nd before the
beat, a flam), the offset path prefers the one that continues the neighbouring beats' offset
(``ATTACK_SMOOTHNESS``). Then every beat moves by the same small amount (`attack_onset_shift`),
but only for a slow median attack (`attack_width` of at least ``SLOW_ATTACK_WIDTH``): a slow
organ, string or flute attack rises through its half height tens of ms after the note starts,
and the median attack over all beats is smooth enough to read lower on its rise
(``ATTACK_FRACTION``, 30 %); a sharp attack's half-rise is its onset, and in a dense mix the
profile before it is the previous notes, not a rise.

Times are seconds; the attack envelope is `cues.fine_onset_envelope`'s.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from soundsight.models.audio.beats.cues import Cues

__all__ = ["attack_onset_shift", "attack_path", "attack_width", "refine", "trim_to_music"]

ATTACK_FRACTION = 0.3  # height of the median attack's rise that marks a beat (`attack_onset_shift`)
RIGID_SPAN = 17  # beats (about four 4/4 bars) whose mean attack profile places a steady grid's beat
ATTACK_SMOOTHNESS = 100.0  # cost of changing a steady grid's attack offset between two beats, peak heights per second
RIGID_ATTACK = "profile"  # a steady grid's attacks: "profile" (`attack_path`) or "median" (running median of each beat's, before issue 28)
SLOW_ATTACK_WIDTH = 0.014  # s: a median attack peak at least this wide (at half height) is slow (`attack_onset_shift`)


def trim_to_music(beats: np.ndarray, cues: Cues) -> np.ndarray:
    """Beats between the first and the last onset reaching 10 % of the song's 99th-percentile attack."""
    if len(beats) < 3:
        return beats
    loud = cues.fine_times[cues.fine >= 0.1 * np.percentile(cues.fine, 99)]
    if len(loud) == 0:
        return beats[:0]
    half = 0.5 * float(np.median(np.diff(beats)))
    return beats[(beats >= loud[0] - half) & (beats <= loud[-1] + half)]


def _attack_near(
    times: np.ndarray, env: np.ndarray, t: float, before: float, after: float
) -> tuple[float, float] | None:
    """(attack time, peak value) of the strongest peak of `env` in [t - before, t + after], seconds."""
    lo, hi = np.searchsorted(times, [t - before, t + after])
    if hi - lo < 3:
        return None
    k = lo + int(np.argmax(env[lo:hi]))
    peak = float(env[k])
    if peak <= 0:
        return None
    j = k
    while j > lo and env[j - 1] > 0.5 * peak:
        j -= 1
    return float(times[j]), peak


def refine(beats: np.ndarray, times: np.ndarray, env: np.ndarray, rigid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Move beats (seconds) onto note attacks of the fine envelope (module docstring).

    Each beat goes to its attack's half-rise (a steady grid: its straight line plus `attack_path`'s
    offset); then all move by `attack_onset_shift` together where the median attack is slow.

    Parameters
    ----------
    beats : np.ndarray
        Beat times, seconds, increasing.
    times, env : np.ndarray
        The fine onset envelope (`fine_onset_envelope`): seconds, strength.
    rigid : bool
        For evenly spaced beats (a steady grid): put them on the straight line through them,
        moved by `attack_path` (the mean attack of ``RIGID_SPAN`` beats around each) instead of
        each onto its own attack: an attack misread on a slow (organ, choir) or buried note
        cannot move its beat, a slow drift around the click still can.

    Returns
    -------
    beats : np.ndarray, seconds, strictly increasing.
    strength : np.ndarray, the attack peak of each beat (envelope units, 0 when none).
    """
    if len(beats) == 0:
        return beats, np.zeros(0)
    period = float(np.median(np.diff(beats))) if len(beats) > 2 else 0.5
    before, after = min(0.070, period / 4), min(0.050, period / 6)
    floor = float(np.percentile(env, 75))
    out, strength, moved = beats.astype(float).copy(), np.zeros(len(beats)), []
    found = np.zeros(len(beats), dtype=bool)
    for i, b in enumerate(beats):
        hit = _attack_near(times, env, float(b), before, after)
        if hit and hit[1] >= floor:
            out[i], strength[i], found[i] = hit[0], hit[1], True
            moved.append(hit[0] - b)
        elif hit:
            strength[i] = hit[1]
    if moved:
        out[~found] += float(np.median(moved))
    if rigid and len(beats) > 1:
        # the least-squares line through the beats undoes their rounding to analysis frames
        index = np.arange(len(beats))
        line = np.polyval(np.polyfit(index, beats, 1), index)
        path = attack_path(line, times, env, before, after)
        if RIGID_ATTACK == "median" or attack_width(line + path, times, env) >= SLOW_ATTACK_WIDTH:
            # slow attacks (flute, organ, strings): the running median of each beat's half-rise, then
            # the shift below; the mean profile's climb reads a swelling note ~20 ms late (a flute reel)
            out = line + scipy.ndimage.median_filter(out - line, size=RIGID_SPAN, mode="nearest")
        else:
            out = line + path
    out = np.maximum.accumulate(np.clip(out, 0.0, None))
    keep = np.concatenate([[True], np.diff(out) > 1e-3])
    out, strength = out[keep], strength[keep]
    shift = (
        attack_onset_shift(out, times, env, ATTACK_FRACTION)
        if attack_width(out, times, env) >= SLOW_ATTACK_WIDTH
        else 0.0
    )
    return np.clip(out + shift, 0.0, None), strength


def attack_path(line: np.ndarray, times: np.ndarray, env: np.ndarray, before: float, after: float) -> np.ndarray:
    """Per beat of a straight grid, seconds from the beat to its attack, from the mean attack of its neighbours.

    Each beat's profile is the fine envelope from `before` (and 30 ms more, to see the rise) before
    it to `after` after it, averaged over the ``RIGID_SPAN`` beats around it and scaled to its
    maximum. A Viterbi path over the offsets (-`before`..+`after`) collects the profiles' height
    less ``ATTACK_SMOOTHNESS`` x the change of offset between neighbouring beats, so of two
    attacks a pickup note or flam apart the one that continues the neighbours' offset is kept,
    while a drift of a few ms per beat is followed. The beat's attack is then read on its profile:
    from the path's offset up to the local peak, and back down that peak's monotonic climb to its
    half height (the climb, not the profile's minimum: in a dense mix the profile before the
    climb is the previous notes).

    Parameters
    ----------
    line : np.ndarray
        Beat times on a straight line, seconds, increasing.
    times, env : np.ndarray
        The fine onset envelope (`fine_onset_envelope`): seconds, strength.
    before, after : float
        How far (seconds) the attack may lie before / after the line.

    Returns
    -------
    np.ndarray
        Seconds to add to each beat.
    """
    step = float(times[1] - times[0])
    lags = np.arange(int(np.floor(-(before + 0.03) / step)), int(np.ceil(after / step)) + 1)
    index = np.clip(np.searchsorted(times, line)[:, None] + lags[None, :], 0, len(env) - 1)
    total = np.concatenate([np.zeros((1, len(lags))), np.cumsum(env[index], axis=0)])
    n, k = len(line), RIGID_SPAN // 2
    a, b = np.clip(np.arange(n) - k, 0, n), np.clip(np.arange(n) + k + 1, 0, n)
    mean = (total[b] - total[a]) / (b - a)[:, None]
    first = int(np.searchsorted(lags * step, -before - 1e-9))
    height = mean[:, first:] / (mean[:, first:].max(axis=1, keepdims=True) + 1e-12)
    offsets = lags[first:] * step
    change = -ATTACK_SMOOTHNESS * np.abs(offsets[:, None] - offsets[None, :])
    score, back = height[0].copy(), np.zeros(height.shape, dtype=int)
    for i in range(1, n):
        candidates = score[:, None] + change
        back[i] = np.argmax(candidates, axis=0)
        score = candidates[back[i], np.arange(len(offsets))] + height[i]
    path = [int(np.argmax(score))]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i][path[-1]]))
    out = np.zeros(n)
    for i, j in enumerate(np.array(path[::-1]) + first):
        p = mean[i]
        while j + 1 < len(p) and p[j + 1] > p[j]:  # up to the local peak
            j += 1
        while j > first and p[j - 1] > p[j]:
            j -= 1
        climb = j
        while climb > 0 and p[climb - 1] < p[climb]:
            climb -= 1
        out[i] = (
            float(np.interp(_rise_crossing(p, j, p[climb] + 0.5 * (p[j] - p[climb])), np.arange(len(lags)), lags))
            * step
        )
    return out


def attack_width(beats: np.ndarray, times: np.ndarray, env: np.ndarray) -> float:
    """Width (seconds) of the song's median attack peak at half its rise from the lowest point before it.

    The median of the onset envelope over all beats (-80..+60 ms around each), its peak within
    -30..+50 ms of the beats; the rise is measured from the profile's minimum before the peak. A
    sharp attack (a drum, a picked string) gives a peak about as wide as the envelope's 23 ms
    window allows (10-13 ms here); a slow organ, string or flute attack a wider one (16-33 ms).

    Parameters
    ----------
    beats : np.ndarray
        Beat times, seconds.
    times, env : np.ndarray
        The fine onset envelope (`fine_onset_envelope`): seconds, strength.

    Returns
    -------
    float
        Seconds (0 with fewer than eight beats inside the envelope or a flat profile).
    """
    found = _median_profile(beats, times, env)
    if found is None:
        return 0.0
    profile, peak, step, base, top = found
    level = base + 0.5 * (top - base)
    end = peak
    while end < len(profile) - 1 and profile[end + 1] > level:
        end += 1
    fall = end + (profile[end] - level) / (profile[end] - profile[end + 1] + 1e-12) if end < len(profile) - 1 else end
    return float((fall - _rise_crossing(profile, peak, level)) * step)


def _median_profile(
    beats: np.ndarray, times: np.ndarray, env: np.ndarray
) -> tuple[np.ndarray, int, float, float, float] | None:
    """The beats' median attack profile, or None with fewer than eight beats inside the envelope or a flat one.

    (median envelope over -80..+60 ms around the beats, index of its peak within -30..+50 ms, step in
    seconds, the profile's minimum before the peak, its peak value).
    """
    if len(beats) < 8 or len(times) < 2:
        return None
    step = float(times[1] - times[0])
    lags = np.arange(int(round(-0.08 / step)), int(round(0.06 / step)) + 1)
    index = np.searchsorted(times, beats)[:, None] + lags[None, :]
    inside = (index >= 0).all(axis=1) & (index < len(env)).all(axis=1)
    if inside.sum() < 8:
        return None
    profile = np.median(env[index[inside]], axis=0)
    zero = int(np.flatnonzero(lags == 0)[0])
    lo, hi = zero - int(round(0.03 / step)), zero + int(round(0.05 / step))
    peak = lo + int(np.argmax(profile[lo : hi + 1]))
    base, top = float(profile[: peak + 1].min()), float(profile[peak])
    return None if top <= base else (profile, peak, step, base, top)


def _rise_crossing(profile: np.ndarray, peak: int, level: float) -> float:
    """Fractional index where `profile` last rises through `level` before index `peak`."""
    j = peak
    while j > 0 and profile[j - 1] > level:
        j -= 1
    if j == 0:
        return 0.0
    below, above = profile[j - 1], profile[j]
    return (j - 1) + (level - below) / (above - below + 1e-12)


def attack_onset_shift(
    beats: np.ndarray, times: np.ndarray, env: np.ndarray, fraction: float = ATTACK_FRACTION
) -> float:
    """Seconds to add to beats placed at half-rise attacks so they sit at `fraction` of the rise.

    The median of the onset envelope over all beats (-80..+60 ms around each) is one attack
    profile for the song; its rise from the lowest point before the peak (within -30..+50 ms of
    the beats) to the peak is read at 50 % (where `refine` put the beats) and at `fraction`.
    Slow attacks rise over tens of ms, sharp ones within a frame or two.

    Parameters
    ----------
    beats : np.ndarray
        Beat times on half-rise attacks (`refine` before its last step), seconds.
    times, env : np.ndarray
        The fine onset envelope (`fine_onset_envelope`): seconds, strength.
    fraction : float
        Height of the rise (0..0.5) that marks the beat.

    Returns
    -------
    float
        Seconds, <= 0 (0 with fewer than eight beats inside the envelope or a flat profile).
    """
    found = _median_profile(beats, times, env)
    if found is None:
        return 0.0
    profile, peak, step, base, top = found
    low = _rise_crossing(profile, peak, base + fraction * (top - base))
    half = _rise_crossing(profile, peak, base + 0.5 * (top - base))
    return min(0.0, (low - half) * step)
