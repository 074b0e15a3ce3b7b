"""Steps 4-5 of `track_beats`: which beats, and which half of the eighth-note lattice (`place_beats`).

4. **Steady tempo** (`_steady_lattice`): most studio music is played to a click, so its beats lie
   on one straight line. When at least ``STEADY_SHARE`` (85 %) of the tracked beats lie within
   ``STEADY_TOLERANCE`` (a tenth of a beat) of one straight eighth-note lattice (period fitted to
   the tracked beats to a few microseconds), the beats are taken from that lattice and the
   off-beat correction below decides the beat half once for the whole song: a DP tracker that
   drifts onto the off-beats for a few bars (a syncopated riff, a hi-hat on the "and") cannot
   drag the grid with it. Songs that speed up, slow down or are played freely fail the test and
   keep the tracked beats. The tracked beats are not the only witness: when they fail the test,
   plain librosa's beats (`librosa.beat.beat_track` on its own onset envelope and tempo, the
   benchmark's baseline) are put to the same test at the same tempo, and pass it on their own
   (a tracker that locks onto a riff displaced by a sixteenth note for a section leaves the
   lattice there; a second, differently built tracker rarely does so in the same place). Both
   are judged on one piece of evidence, the share of their beats on one straight lattice.
5. **Off-beat correction** (`_correct_phase`): the beats and their midpoints form an eighth-note
   lattice; a two-state Viterbi decides, section by section, which half of it is the beat, from
   per-point evidence z(low-band onset) + z(chord change over one beat) + z(bass-chroma change
   over one beat) (``PHASE_WEIGHTS``). Snare and hi-hat flux are left out on purpose: in
   double-time rock they sit on the off-beats (the classic off-beat lock). Switching costs
   ``PHASE_SWITCH`` (z units). A song with no bass line (under ``BASS_LINE_SHARE``, 10 %, of its
   power below 250 Hz: a melody alone) has no bass term: its low band holds only the melody's
   lowest notes.

For a steady grid, `phase_certainty` measures the song-wide decision as a t statistic (the
confidence's phase term). Frames are ``HOP`` samples at ``ANALYSIS_SAMPLE_RATE`` Hz.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from soundsight.media import ANALYSIS_SAMPLE_RATE
from soundsight.models.audio.beats.cues import N_FFT, Cues, feature_change, peak_at

__all__ = ["bass_share", "phase_certainty", "place_beats"]

STEADY_SHARE = 0.85  # share of tracked beats on a straight eighth-note lattice that makes a song steady
STEADY_TOLERANCE = 0.1  # how near (fraction of a beat) a tracked beat must be to that lattice
STEADY_SEARCH = 0.015  # relative range of beat periods searched around the tracked median
PHASE_SWITCH = 10.0  # cost (z units) of switching the beat between the two halves of the lattice
PHASE_BLOCK = 16  # beats per block of `phase_certainty`
PHASE_WEIGHTS = {"low": 1.0, "chord": 1.0, "bass": 1.0}  # z-scored off-beat evidence terms of `_correct_phase`
BASS_LINE_SHARE = 0.1  # share of power below 250 Hz under which a song has no bass line (`_phase_evidence`)


def place_beats(
    cues: Cues, frames: np.ndarray, variable: bool, witness: Callable[[], np.ndarray] | None = None
) -> tuple[np.ndarray, bool, int, float]:
    """Steps 4-5 of `track_beats`: the steady-tempo grid where it holds, then the off-beat correction.

    Parameters
    ----------
    cues : Cues
    frames : np.ndarray of int
        Tracked beat frames (`track_pulse`).
    variable : bool
        Whether they follow a local tempo curve (then no steady grid is tried).
    witness : callable, optional
        Returns a second tracker's beat frames (``HOP`` frames); asked only when `frames` fail the
        steady test, and put to the same test at the period of `frames` (module docstring).

    Returns
    -------
    frames : np.ndarray of int
        Beat frames.
    steady : bool
        Whether they are `_steady_lattice`'s grid, with one beat half for the whole song.
    flips, margin
        From `_correct_phase`.
    """
    lattice = None if variable else _steady_lattice(frames, len(cues.envelope))
    if lattice is None and not variable and witness is not None and len(frames) >= 8:
        period = float(np.median(np.diff(frames)))
        lattice = _steady_lattice(np.asarray(witness(), dtype=int), len(cues.envelope), period)
    steady = lattice is not None
    frames, flips, margin = _correct_phase(cues, lattice if steady else frames, switch=np.inf if steady else None)
    return frames, steady, flips, margin


def _steady_lattice(frames: np.ndarray, n_frames: int, period: float | None = None) -> np.ndarray | None:
    """Beat frames of the straight grid through tracked beats, when the song keeps a steady tempo.

    The tracked beats are folded onto an eighth-note lattice (half the beat period): the period
    is the one within ``STEADY_SEARCH`` (1.5 %) of the beats' median period whose folded phases
    agree best (largest circular mean resultant), searched in steps of 0.005 % and then 0.00025 %,
    so the grid stays within a frame over ten minutes. Folding onto eighths, not beats, keeps beats the
    tracker put on off-beats in some bars as evidence for the same line; which half of the lattice
    is the beat is `_correct_phase`'s decision.

    Parameters
    ----------
    frames : np.ndarray of int
        Tracked beat frames (``HOP`` frames), increasing.
    n_frames : int
        Frames of the song; the grid covers ``[0, n_frames)``.
    period : float, optional
        Beat period (frames) around which the lattice's period is searched; default: the median
        interval of `frames`.

    Returns
    -------
    np.ndarray of int or None
        Every other point of the fitted eighth-note lattice (one of its two halves), in frames;
        None when fewer than ``STEADY_SHARE`` of the tracked beats lie within
        ``STEADY_TOLERANCE`` beats of the lattice, or with fewer than 8 beats.
    """
    if len(frames) < 8:
        return None
    f = np.asarray(frames, dtype=float)
    median = float(np.median(np.diff(f))) if period is None else float(period)

    def best_half_period(halves: np.ndarray) -> tuple[float, float]:
        resultant = np.exp(2j * np.pi * f[None, :] / halves[:, None]).mean(axis=1)
        i = int(np.argmax(np.abs(resultant)))
        return float(halves[i]), float(np.angle(resultant[i]) / (2 * np.pi) * halves[i])

    half, _ = best_half_period(median / 2 * (1 + np.linspace(-STEADY_SEARCH, STEADY_SEARCH, 601)))
    half, offset = best_half_period(half * (1 + np.linspace(-1e-4, 1e-4, 81)))
    lattice = offset + half * np.arange(np.floor(-offset / half), np.ceil((n_frames - offset) / half) + 1)
    lattice = lattice[(lattice >= 0) & (lattice < n_frames)]
    if len(lattice) < 4:
        return None
    distance = np.abs(((f - offset) / half + 0.5) % 1.0 - 0.5) * half
    if np.mean(distance <= STEADY_TOLERANCE * 2 * half) < STEADY_SHARE:
        return None
    return np.round(lattice[::2]).astype(int)


def _phase_evidence(cues: Cues, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eighth-note lattice of beat `frames` and each point's evidence of being a beat.

    Parameters
    ----------
    cues : Cues
    frames : np.ndarray of int
        Beat frames (at least two).

    Returns
    -------
    lattice : np.ndarray of int
        The beats and their midpoints, frames, increasing.
    evidence : np.ndarray
        Per lattice point, the ``PHASE_WEIGHTS``-weighted sum of z-scored cues (z units).
    """
    lattice = np.sort(np.concatenate([frames, np.round((frames[:-1] + frames[1:]) / 2.0)])).astype(int)
    period = int(round(float(np.median(np.diff(frames)))))
    radius = max(1, period // 8)

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + 1e-9)

    terms = {
        "low": lambda: np.log(peak_at(cues.low, lattice, radius) + 0.1),
        "chord": lambda: feature_change(cues.chroma, lattice, period),
        "bass": lambda: feature_change(cues.bass_chroma, lattice, period),
        "mel": lambda: np.log(peak_at(cues.mel, lattice, radius) + 0.1),
        "rise": lambda: _energy_rise(cues, lattice, max(1, period // 4)),
    }
    weights = dict(PHASE_WEIGHTS)
    if bass_share(cues) < BASS_LINE_SHARE:
        weights["bass"] = 0.0  # no bass line: the low band holds only the melody's lowest notes
    return lattice, sum(w * z(terms[k]()) for k, w in weights.items() if w)


def bass_share(cues: Cues) -> float:
    """Share of the song's power below 250 Hz (the band of `Cues.bass_chroma`), 0..1."""
    import librosa

    low = librosa.fft_frequencies(sr=ANALYSIS_SAMPLE_RATE, n_fft=N_FFT) < 250.0
    total = float(cues.power.sum())
    return float(cues.power[low].sum()) / total if total > 0 else 0.0


def _correct_phase(cues: Cues, frames: np.ndarray, switch: float | None = None) -> tuple[np.ndarray, int, float]:
    """Off-beat correction (module docstring, step 5): the beat half, section by section.

    Parameters
    ----------
    cues : Cues
    frames : np.ndarray of int, tracked beat frames.
    switch : float, cost of switching lattice half (z units); None: `PHASE_SWITCH`; ``np.inf``:
        one half for the whole song.

    Returns
    -------
    frames : np.ndarray of int, corrected beat frames.
    flips : int, number of switches.
    margin : float, mean per-beat evidence of the chosen half over the other (z units).
    """
    switch = PHASE_SWITCH if switch is None else switch
    if len(frames) < 8:
        return frames, 0, 0.0
    lattice, evidence = _phase_evidence(cues, frames)
    n = len(lattice)
    parity = np.arange(n) % 2
    emit = (
        np.stack([np.where(parity == 0, evidence, -evidence), np.where(parity == 1, evidence, -evidence)], axis=1) * 0.5
    )
    v = emit[0].copy()
    back = np.zeros((n, 2), dtype=int)
    for t in range(1, n):
        stay, swap = v, v[::-1] - switch
        back[t] = np.where(stay >= swap, [0, 1], [1, 0])
        v = np.maximum(stay, swap) + emit[t]
    state = [int(np.argmax(v))]
    for t in range(n - 1, 0, -1):
        state.append(int(back[t][state[-1]]))
    state = np.array(state[::-1])
    chosen = parity == state
    flips = int(np.sum(state[1:] != state[:-1]))
    margin = float(np.mean(np.where(chosen, evidence, -evidence))) if n else 0.0
    return lattice[chosen], flips, margin


def phase_certainty(cues: Cues, beats: np.ndarray, block: int = PHASE_BLOCK) -> float | None:
    """How surely `beats`, not their midpoints, are the beat over the whole song: a t statistic.

    Each beat's phase evidence minus that of the midpoint after it (`_phase_evidence`), averaged
    over blocks of `block` beats (four bars of 4/4, so neighbouring beats' shared cues do not
    count as independent); returns the blocks' mean over its standard error. Used for the single
    song-wide decision of a steady grid, where the per-beat margin understates a decision that
    hundreds of beats agree on, and blocks that disagree (a syncopated section) lower it.

    Parameters
    ----------
    cues : Cues
    beats : np.ndarray of int
        Beat frames.
    block : int
        Beats per block.

    Returns
    -------
    float or None
        t (unitless); None with fewer than three blocks (too short to judge this way).
    """
    if len(beats) < 3 * block + 1:
        return None
    _, evidence = _phase_evidence(cues, beats)
    difference = evidence[0::2][: len(beats) - 1] - evidence[1::2]
    blocks = difference[: len(difference) // block * block].reshape(-1, block).mean(axis=1)
    spread = float(blocks.std(ddof=1)) / np.sqrt(len(blocks))
    return float(blocks.mean() / spread) if spread > 0 else float(np.sign(blocks.mean()) * 1e3)


def _energy_rise(cues: Cues, frames: np.ndarray, width: int) -> np.ndarray:
    """Log power over the `width` frames after each frame minus over the `width` frames before it."""
    power = np.log(cues.power.sum(axis=0) + 1e-10)
    cs = np.concatenate([[0.0], np.cumsum(power)])
    n = len(power)
    t = np.clip(np.asarray(frames, dtype=int), 0, n)
    a, b = np.clip(t - width, 0, n), np.clip(t + width, 0, n)
    return (cs[b] - cs[t]) / np.maximum(b - t, 1) - (cs[t] - cs[a]) / np.maximum(t - a, 1)
