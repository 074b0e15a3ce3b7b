"""Step 6 of `track_beats`: beats onto note attacks (`refine`).

Each beat moves to the attack of the strongest short-window onset within -70/+50 ms (at most a
quarter / sixth of a beat); beats without one keep the median shift. A steady grid moves by the
running median of those shifts over ``RIGID_SPAN`` (17) beats: it bends no faster than that
median, so one misread attack (a slow organ or choir note, a note buried in a dense mix) cannot
move a beat, while a band drifting around its click is followed. Then every beat moves by the
same small amount (`attack_onset_shift`): a beat's attack is read where its onset rises through
half its height, which on a slow attack (organ, strings, flute) is tens of ms after the note
starts; the median attack over all beats is smooth enough to read lower on its rise
(``ATTACK_FRACTION``, 30 %) without reaching back into the previous note. On sharp attacks
(drums, a band) the two points are 1-3 ms apart.

Times are seconds; the attack envelope is `cues.fine_onset_envelope`'s.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from soundsight.models.audio.beats.cues import Cues

__all__ = ["attack_onset_shift", "refine", "trim_to_music"]

ATTACK_FRACTION = 0.3  # height of the median attack's rise that marks a beat (`attack_onset_shift`)
RIGID_SPAN = 17  # beats (about four 4/4 bars) of the running median that moves a steady grid onto attacks


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

    Each beat goes to its attack's half-rise; then all move by `attack_onset_shift` together
    (to ``ATTACK_FRACTION`` of the song's median attack rise).

    Parameters
    ----------
    beats : np.ndarray
        Beat times, seconds, increasing.
    times, env : np.ndarray
        The fine onset envelope (`fine_onset_envelope`): seconds, strength.
    rigid : bool
        For evenly spaced beats (a steady grid): put them on the straight line through them,
        moved by the running median (``RIGID_SPAN`` beats) of their attack offsets instead of
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
        # the least-squares line through the beats undoes their rounding to analysis frames; a
        # running median, not one for the song, lets the grid follow a band that drifts by less
        # than the steady test's tolerance
        index = np.arange(len(beats))
        line = np.polyval(np.polyfit(index, beats, 1), index)
        out = line + scipy.ndimage.median_filter(out - line, size=RIGID_SPAN, mode="nearest")
    out = np.maximum.accumulate(np.clip(out, 0.0, None))
    keep = np.concatenate([[True], np.diff(out) > 1e-3])
    out, strength = out[keep], strength[keep]
    return np.clip(out + attack_onset_shift(out, times, env, ATTACK_FRACTION), 0.0, None), strength


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
    if len(beats) < 8 or len(times) < 2:
        return 0.0
    step = float(times[1] - times[0])
    lags = np.arange(int(round(-0.08 / step)), int(round(0.06 / step)) + 1)
    index = np.searchsorted(times, beats)[:, None] + lags[None, :]
    inside = (index >= 0).all(axis=1) & (index < len(env)).all(axis=1)
    if inside.sum() < 8:
        return 0.0
    profile = np.median(env[index[inside]], axis=0)
    zero = int(np.flatnonzero(lags == 0)[0])
    lo, hi = zero - int(round(0.03 / step)), zero + int(round(0.05 / step))
    peak = lo + int(np.argmax(profile[lo : hi + 1]))
    base, top = float(profile[: peak + 1].min()), float(profile[peak])
    if top <= base:
        return 0.0
    low = _rise_crossing(profile, peak, base + fraction * (top - base))
    half = _rise_crossing(profile, peak, base + 0.5 * (top - base))
    return min(0.0, (low - half) * step)
