"""Step 7 of `track_beats`: meter and bar lines (`song_bars`).

A Viterbi over (meter 3 or 4, position in bar) on per-beat downbeat evidence (`bars`); changing
phase or meter costs ``BAR_SWITCH``. The evidence (`downbeat_terms`) is eight cues: low-band
onset, its share of the full-band onset, a bass-drum energy rise, chord change, bass-note change,
loudness, held harmony (a beat's chroma closer to the next beat's than to the previous one's) and
a long note (few new attacks on the next beat). Which of them marks the bar depends on the music,
so each is weighted by its own t statistic at the song's best (meter, phase) hypothesis
(`_downbeat_weights`): the kick carries a band, held chords a chorale, and cues with no bar
pattern drop out. Beats in a 4-beat bar earn a small prior (``FOUR_BEAT_PRIOR``). In 4/4 the
evidence often cannot tell the first beat from the third, so where no cue marks the bars with
certainty, between the bar lines and their half-bar twin the one that agrees with how music
starts (on a bar line or a one-beat pickup) is taken, unless the evidence clearly prefers the
other (`_start_anchored`).

Beats are seconds; evidence is in z units.
"""

from __future__ import annotations

import numpy as np

from soundsight.media import ANALYSIS_SAMPLE_RATE
from soundsight.models.audio.beats.confidence import PHASE_CERTAIN_T
from soundsight.models.audio.beats.cues import HOP, N_FFT, Cues, feature_change, peak_at

__all__ = ["bar_phase_t", "bars", "downbeat_terms", "song_bars", "weighted_evidence"]

BAR_SWITCH = 6.0  # cost (z units) of changing bar phase or meter between two beats
FOUR_BEAT_PRIOR = 0.1  # z units per beat in favour of 4-beat bars (`bars`): breaks near-ties with 3
DOWNBEAT_CUES = ("low", "share", "chord", "bass", "loud", "kick", "hold", "long")  # terms of `downbeat_terms`


def song_bars(cues: Cues, beats: np.ndarray, meters: tuple[int, ...] = (3, 4)) -> tuple[int, np.ndarray, float]:
    """Meter, downbeats and bar-phase t of a song: `bars` on the `weighted_evidence` of its `downbeat_terms`.

    The song's start may settle 4/4's half-bar question (`_start_anchored`) only where no cue marks
    the bar lines with certainty (every cue's weight, its t at the best bar hypothesis, under
    ``PHASE_CERTAIN_T``): a kick, a bass line or chord changes that plainly mark the bars outweigh
    how the song starts (a rock song cut two beats before a bar line keeps its bar lines).
    The third value is `bar_phase_t` of the chosen bar lines (how surely they beat the nearest
    rival phase; `confidence.bar_phase_credible` reads it).
    """
    terms = downbeat_terms(cues, beats)
    weights = _downbeat_weights(terms, meters)
    certain = max(weights.values(), default=0.0) >= PHASE_CERTAIN_T
    evidence = weighted_evidence(terms, meters, weights)
    meter, down = bars(evidence, meters, anchor=not certain)
    return meter, down, bar_phase_t(evidence, down, meter, skip_twin=not certain)


def bar_phase_t(evidence: np.ndarray, down: np.ndarray, meter: int, skip_twin: bool = False) -> float:
    """How surely the chosen bar lines beat every other bar phase: min over shifts of a two-sample t.

    The per-beat downbeat evidence on the chosen downbeats against the same beats shifted by
    1..meter-1 beats (the rival phases); the smallest t is the closest rival. A kick about as
    strong on beat 2 or 4 as on beat 1, or bar cues that change phase mid-song, give a small or
    negative t (below 0: a rival phase has more evidence than the chosen one). With `skip_twin`
    (4/4 whose half-bar question `bars` settled from how the music starts, no cue being certain)
    the half-bar twin is not a rival: the start, not the evidence, decided between the two. On
    short pieces t is small even for right bar lines (9-20 bars: a rendered chorale's is 1-4).

    Parameters
    ----------
    evidence : np.ndarray
        Per-beat downbeat evidence (`weighted_evidence`, z units).
    down : np.ndarray
        Bool per beat: the chosen downbeats.
    meter : int
        Beats per bar.

    Returns
    -------
    float
        t (0 with fewer than three downbeats or a meter under 2).
    """
    down = np.asarray(down, dtype=bool)
    if down.sum() < 3 or meter < 2:
        return 0.0
    shifts = [k for k in range(1, meter) if not (skip_twin and meter == 4 and k == 2)]
    return float(min(_two_sample_t(evidence[down], evidence[np.roll(down, k)]) for k in shifts))


def downbeat_terms(cues: Cues, beats: np.ndarray) -> dict[str, np.ndarray]:
    """Per-beat downbeat cues, each z-scored over the song (keys: `DOWNBEAT_CUES`).

    - ``low``: the strongest low-band (< 200 Hz) flux within 35 ms of the beat (kick, bass notes);
    - ``share``: that over the full-band flux (a kick rather than a snare);
    - ``chord`` / ``bass``: chroma / bass-chroma cosine distance between the beat before and the
      beat after (harmony and bass notes change at bar lines);
    - ``loud``: log power over the beat's span;
    - ``kick``: log power below 120 Hz over the 70 ms after the beat minus the 70 ms before (a
      bass drum's energy rise; the flux in dB above hardly tells a kick from a snare's low end);
    - ``hold``: how much more the beat's chroma resembles the next beat's than the previous
      beat's (long notes and held chords start on strong beats);
    - ``long``: minus the full-band flux at the next beat (a note held over the next beat
      leaves it with few new attacks: in a 3/4 chorale the half note on beat 1 empties beat 2).

    Full-band onset strength at the beat itself is left out (snare backbeats).
    """
    import librosa

    n_frames = len(cues.times)
    frames = np.clip(np.round(beats * ANALYSIS_SAMPLE_RATE / HOP).astype(int), 0, n_frames - 1)
    radius = max(1, int(round(0.035 * ANALYSIS_SAMPLE_RATE / HOP)))
    low = peak_at(cues.raw_low, frames, radius)
    attack = peak_at(cues.raw_mel, frames, radius)
    share = low / (attack + 1e-9)
    long = -np.concatenate([attack[1:], [attack.mean()]])
    period = max(2, int(round(float(np.median(np.diff(frames)))))) if len(frames) > 2 else 20
    chord = feature_change(cues.chroma, frames, period)
    bass = feature_change(cues.bass_chroma, frames, period)
    bounds = np.concatenate([frames, [n_frames]])
    spans = list(zip(bounds[:-1], np.maximum(bounds[:-1] + 1, bounds[1:])))
    frame_power = cues.power.sum(axis=0)
    loud = np.log(np.array([frame_power[a:b].mean() for a, b in spans]) + 1e-12)
    freqs = librosa.fft_frequencies(sr=ANALYSIS_SAMPLE_RATE, n_fft=N_FFT)
    low_power = np.concatenate([[0.0], np.cumsum(cues.power[freqs < 120.0].sum(axis=0))])
    w = max(1, int(round(0.07 * ANALYSIS_SAMPLE_RATE / HOP)))

    def mean_low(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.clip(a, 0, n_frames), np.clip(b, 0, n_frames)
        return (low_power[b] - low_power[a]) / np.maximum(b - a, 1)

    kick = np.log(mean_low(frames, frames + w) + 1e-12) - np.log(mean_low(frames - w, frames) + 1e-12)
    beat_chroma = np.stack([cues.chroma[:, a:b].mean(axis=1) for a, b in spans], axis=1)
    beat_chroma /= np.linalg.norm(beat_chroma, axis=0, keepdims=True) + 1e-9
    similar = (beat_chroma[:, :-1] * beat_chroma[:, 1:]).sum(axis=0)
    mid = float(similar.mean()) if len(similar) else 0.0
    hold = np.concatenate([similar, [mid]]) - np.concatenate([[mid], similar])

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / (x.std() + 1e-9)

    terms = {
        "low": low,
        "share": share,
        "chord": chord,
        "bass": bass,
        "loud": loud,
        "kick": kick,
        "hold": hold,
        "long": long,
    }
    return {k: z(terms[k]) for k in DOWNBEAT_CUES}


def _bar_contrast(terms: dict[str, np.ndarray], meter: int, phase: int) -> dict[str, float]:
    """Each cue's two-sample t statistic: beats at `phase` (mod `meter`) against all other beats.

    Positive when the cue is higher on those beats; about N(0, 1) when the cue has no bar
    structure, whatever the meter.
    """
    n = len(next(iter(terms.values())))
    on = (np.arange(n) - phase) % meter == 0
    return {name: _two_sample_t(x[on], x[~on]) for name, x in terms.items()}


def _two_sample_t(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample t statistic of mean(a) over mean(b) (pooled variance); 0 when either has < 2 values."""
    k_a, k_b = len(a), len(b)
    if k_a < 2 or k_b < 2:
        return 0.0
    n = k_a + k_b
    pooled = np.sqrt((a.var() * k_a + b.var() * k_b) / n) + 1e-9
    return float((a.mean() - b.mean()) / pooled * np.sqrt(k_a * k_b / n))


def _downbeat_weights(terms: dict[str, np.ndarray], meters: tuple[int, ...] = (3, 4)) -> dict[str, float]:
    """How far to trust each cue in this song: its t statistic at the song's best bar hypothesis.

    Which cue marks the bar depends on the music (a kick drum in a band, held chords in a
    chorale, bass notes in a riff), and an equal sum lets three weak cues outvote one clear one.
    Every (meter, phase) is scored by sum(max(t, 0)^2) over the cues (the log-likelihood gain of
    cues that rise on its downbeats) and each cue is weighted by its t at the winner (0 if
    negative), so a cue with a clear bar pattern carries the song and cues without one drop out.
    """
    best, weights = -1.0, {k: 1.0 for k in terms}
    for meter in meters:
        for phase in range(meter):
            t = _bar_contrast(terms, meter, phase)
            gain = sum(max(v, 0.0) ** 2 for v in t.values())
            if gain > best:
                best, weights = gain, {k: max(v, 0.0) for k, v in t.items()}
    return weights


def weighted_evidence(
    terms: dict[str, np.ndarray], meters: tuple[int, ...] = (3, 4), weights: dict[str, float] | None = None
) -> np.ndarray:
    """Per-beat downbeat evidence (z units): z-scored cues summed with `_downbeat_weights` (or `weights`)."""
    weights = _downbeat_weights(terms, meters) if weights is None else weights
    if sum(weights.values()) <= 0.0:  # no cue rises on any bar hypothesis: all count alike
        weights = {k: 1.0 for k in terms}
    evidence = sum(weights[k] * terms[k] for k in terms)
    return (evidence - evidence.mean()) / (evidence.std() + 1e-9)


def bars(
    evidence: np.ndarray, meters: tuple[int, ...] = (3, 4), switch: float | None = None, anchor: bool = True
) -> tuple[int, np.ndarray]:
    """Viterbi over (meter, position-in-bar) states, then the half-bar choice from the song's start.

    Every beat in a 4-beat bar state earns ``FOUR_BEAT_PRIOR`` (duple and quadruple meters are
    the most common, so evidence that hardly tells 3 from 4 gives 4). With `anchor`, when the
    path is mostly in 4, the half-bar twin of its bar lines (two beats later) is taken instead
    where the evidence cannot tell the two apart and only the twin agrees with how music starts
    (`_start_anchored`).

    Parameters
    ----------
    evidence : np.ndarray, per-beat downbeat evidence (z units).
    meters : beats per bar considered.
    switch : cost of any transition other than the next position in the same meter; None: `BAR_SWITCH`.
    anchor : whether the song's start may choose between the bar lines and their half-bar twin.

    Returns
    -------
    beats_per_bar : int, the meter used by most beats.
    downbeat : np.ndarray of bool, per beat.
    """
    switch = BAR_SWITCH if switch is None else switch
    states = [(m, p) for m in meters for p in range(m)]
    n, s = len(evidence), len(states)
    if n == 0:
        return 4, np.zeros(0, dtype=bool)
    prior = np.array([FOUR_BEAT_PRIOR if m == 4 else 0.0 for (m, _) in states])
    emit = np.array([[e if p == 0 else 0.0 for (_, p) in states] for e in evidence]) + prior
    trans = np.full((s, s), -switch)
    for i, (m, p) in enumerate(states):
        trans[i, states.index((m, (p + 1) % m))] = 0.0
    score = emit[0].copy()
    back = np.zeros((n, s), dtype=int)
    for t in range(1, n):
        cand = score[:, None] + trans
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(s)] + emit[t]
    path = [int(np.argmax(score))]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t][path[-1]]))
    seq = [states[k] for k in path[::-1]]
    counts = {m: sum(1 for (mm, _) in seq if mm == m) for m in meters}
    meter = max(counts, key=counts.get)
    down = np.array([p == 0 for (_, p) in seq])
    if anchor and meter == 4:
        twin = np.array([(m == 4 and p == 2) or (m != 4 and p == 0) for (m, p) in seq])
        if _start_anchored(evidence, down, twin):
            down = twin
    return meter, down


def _start_anchored(evidence: np.ndarray, down: np.ndarray, twin: np.ndarray) -> bool:
    """Whether a 4-beat bar grid's half-bar `twin` should replace its bar lines `down`.

    In 4/4 the third beat is the bar's second strong beat, and harmony, bass and held chords
    often mark it as plainly as the first (a chorale's cadences fall there), so the evidence may
    pick the wrong half. Music starts on a bar line or on a pickup just before one: the first
    bar line is the first or second beat (the beats begin at the first clear attack). The twin
    is taken when the bar lines break that and the twin keeps it, and the evidence does not
    favour the bar lines over the twin with a two-sample t of ``PHASE_CERTAIN_T`` or more (a
    song that starts two or three beats before a clear bar line keeps it).
    """
    first, first_twin = np.flatnonzero(down)[:1], np.flatnonzero(twin)[:1]
    if len(first) == 0 or len(first_twin) == 0 or first[0] < 2 or first_twin[0] >= 2:
        return False
    return _two_sample_t(evidence[down], evidence[twin]) < PHASE_CERTAIN_T
