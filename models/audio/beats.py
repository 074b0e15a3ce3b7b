"""Beats, downbeats and tempo of a song, and how credible they are (librosa + numpy, no weights).

Every function is pure (arrays in, arrays out; module constants only). Times are seconds; BPM is
beats per minute; "frames" are analysis frames of ``HOP`` samples at ``SR`` Hz (11.6 ms) unless a
docstring says otherwise.

Pipeline of `track_beats`
-------------------------
1. **Cues** (`compute_cues`, one 2048/256 STFT + one 512/64 STFT): three onset-like curves,
   each with its local mean (0.5 s) removed, clipped at zero and scaled to unit standard deviation:

   - ``mel``: log-mel spectral flux (librosa's default onset function);
   - ``low``: the same flux over mel bands below 200 Hz (kick drum, bass notes);
   - ``harm``: harmonic change, the chroma cosine distance between the 0.12 s before and after
     each frame (chords change on beats; hi-hats and snares do not change the harmony).

   Their sum is the *beat envelope* that drives tempo estimation and the dynamic-programming
   tracker. A 2.9 ms-hop onset envelope places beats on note attacks at the end.
2. **Tempo hypotheses** (`tempo_candidates`): the peaks of the mean autocorrelation tempogram of
   the beat envelope between 40 and 330 BPM, and the double and half of each, kept within
   ``BPM_RANGE``. Each is tracked by librosa's DP tracker (fixed tempo, tight) and scored: log
   tempogram autocorrelation at the tempo + ``LATTICE_WEIGHT`` x log(how much stronger the beats
   *and their midpoints* are than the quarter-beat points) + log tempo preference (log-normal,
   ``PREFERRED_BPM``, ``PREFERENCE_OCTAVES`` wide). The lattice term rejects 2:3 and 3:2 grids,
   half of whose beats fall on subdivisions. A compound-meter beat (a jig's dotted quarter) is
   divided in three, so its lattice is also read as beats + third points over sixth points, but
   only when the beats are accented over their third points (``TRIPLE_ACCENT``,
   `lattice_contrast`). `BeatGrid.candidates` lists every hypothesis.
   When the winner's midpoints are nearly as strong as its beats (``EVEN_PULSE``, 85 %), its
   double tempo is the same pulse and the lattice term cannot tell the two levels apart, so the
   tempo preference decides between them (`even_pulse_double`).
3. **Tempo changes**: a Viterbi path through the tempogram within half an octave of the chosen
   tempo, and one around each rival tempo within half an octave of it (a song at 100, 76 and
   120 BPM whose winner is 120 needs a path centred near 100 to reach 76); when the most salient
   path departs from the chosen tempo by more than ``TEMPO_CHANGE`` (8 %) over a fifth of the
   song *and* its grid lands on ``VARIABLE_GAIN`` (5 %) more salient onsets, the tracker follows it.
4. **Steady tempo** (`steady_lattice`): most studio music is played to a click, so its beats lie
   on one straight line. When at least ``STEADY_SHARE`` (85 %) of the tracked beats lie within
   ``STEADY_TOLERANCE`` (a tenth of a beat) of one straight eighth-note lattice (period fitted to
   the tracked beats to a few microseconds), the beats are taken from that lattice and the
   off-beat correction below decides the beat half once for the whole song: a DP tracker that
   drifts onto the off-beats for a few bars (a syncopated riff, a hi-hat on the "and") cannot
   drag the grid with it. Songs that speed up, slow down or are played freely fail the test and
   keep the tracked beats.
5. **Off-beat correction** (`correct_phase`): the beats and their midpoints form an eighth-note
   lattice; a two-state Viterbi decides, section by section, which half of it is the beat, from
   per-point evidence z(low-band onset) + z(chord change over one beat) + z(bass-chroma change
   over one beat). Snare and hi-hat flux are left out on purpose: in double-time rock they sit
   on the off-beats (the classic off-beat lock). Switching costs ``PHASE_SWITCH`` (z units).
   A song with no bass line (under ``BASS_LINE_SHARE``, 10 %, of its power below 250 Hz: a
   melody alone) has no bass term: its low band holds only the melody's lowest notes.
6. **Refinement** (`refine`): each beat moves to the attack of the strongest short-window onset
   within -70/+50 ms (at most a quarter / sixth of a beat); beats without one keep the median shift.
   A steady grid moves by the running median of those shifts over ``RIGID_SPAN`` (17) beats: it
   bends no faster than that median, so one misread attack (a slow organ or choir note, a note
   buried in a dense mix) cannot move a beat, while a band drifting around its click is followed.
   Then every beat moves by the same small amount (`attack_onset_shift`): a beat's attack is read
   where its onset rises through half its height, which on a slow attack (organ, strings, flute)
   is tens of ms after the note starts; the median attack over all beats is smooth enough to read
   lower on its rise (``ATTACK_FRACTION``, 30 %) without reaching back into the previous note.
   On sharp attacks (drums, a band) the two points are 1-3 ms apart.
7. **Bars** (`bars`): a Viterbi over (meter 3 or 4, position in bar) on per-beat downbeat evidence;
   changing phase or meter costs ``BAR_SWITCH``. The evidence (`downbeat_terms`) is eight cues:
   low-band onset, its share of the full-band onset, a bass-drum energy rise, chord change,
   bass-note change, loudness, held harmony (a beat's chroma closer to the next beat's than to
   the previous one's) and a long note (few new attacks on the next beat). Which of them marks
   the bar depends on the music, so each is weighted by its own t statistic at the song's best
   (meter, phase) hypothesis (`downbeat_weights`): the kick carries a band, held chords a
   chorale, and cues with no bar pattern drop out. Beats in a 4-beat bar earn a small prior
   (``FOUR_BEAT_PRIOR``). In 4/4 the evidence often cannot tell the first beat from the third,
   so where no cue marks the bars with certainty, between the bar lines and their half-bar twin
   the one that agrees with how music starts (on a bar line or a one-beat pickup) is taken,
   unless the evidence clearly prefers the other (`song_bars`, `start_anchored`).
8. **Confidence** (`beat_confidence`, 0..1): sqrt(share of beats on a clear attack) x tempo
   regularity x sqrt(phase margin / 1.5 z) x (0.5 + 0.5 x tempo clarity); for a steady grid the
   phase term is the song-wide decision's t statistic over ``PHASE_CERTAIN_T``
   (`phase_certainty`); each term is kept in `BeatGrid.confidence_terms`. `is_credible` turns it
   into the segment stage's snap / fall-back decision (threshold ``CREDIBLE_CONFIDENCE``, in
   musical terms in docs/segmentation.md).
9. **Structure** (`soundsight.models.audio.structure`): 4- and 8-bar phrase starts and section
   boundaries on downbeats, for the cut planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage
import scipy.signal


class _LazyLibrosa:
    """librosa, imported on first use (~1 s): reading a beats file or scoring cuts never pays it."""

    def __getattr__(self, name: str):
        import librosa as _librosa

        return getattr(_librosa, name)


librosa = _LazyLibrosa()

SR = 22050  # analysis sample rate, Hz
HOP = 256  # analysis hop, samples (11.6 ms)
N_FFT = 2048
FINE_NFFT, FINE_HOP = 512, 64  # attack envelope: 23 ms window, 2.9 ms hop
PREFERRED_BPM = 120.0  # centre of the tempo preference, BPM
PREFERENCE_OCTAVES = 1.0  # its standard deviation, octaves
LATTICE_WEIGHT = 0.5  # weight of the beat/off-beat lattice contrast in the tempo score
TRIPLE_ACCENT = 1.3  # beats this much above their third points make a triple subdivision count (`lattice_contrast`)
LATTICE_FLOOR = 0.3  # added to lattice salience terms (units: mean cue level) so silent subdivisions stay finite
TEMPO_CHANGE = 0.08  # local tempo this far (relative) from the global one counts as a change
VARIABLE_GAIN = 1.05  # a tempo-following grid must reach this much more beat salience than the constant one
PHASE_SWITCH = 10.0  # cost (z units) of switching the beat between the two halves of the lattice
BAR_SWITCH = 6.0  # cost (z units) of changing bar phase or meter between two beats
FOUR_BEAT_PRIOR = 0.1  # z units per beat in favour of 4-beat bars (`bars`): breaks near-ties with 3
BPM_RANGE = (55.0, 215.0)  # beat tempi considered, BPM
SAME_TEMPO = 0.04  # |log ratio| within which two tempi (or a tempo and a multiple) count as one (4 %)
EVEN_PULSE = 0.85  # midpoint/beat level at which a grid's double tempo is the same pulse (`even_pulse_double`)
STEADY_SHARE = 0.85  # share of tracked beats on a straight eighth-note lattice that makes a song steady
STEADY_TOLERANCE = 0.1  # how near (fraction of a beat) a tracked beat must be to that lattice
ATTACK_FRACTION = 0.3  # height of the median attack's rise that marks a beat (`attack_onset_shift`)
RIGID_SPAN = 17  # beats (about four 4/4 bars) of the running median that moves a steady grid onto attacks
STEADY_SEARCH = 0.015  # relative range of beat periods searched around the tracked median
PHASE_BLOCK = 16  # beats per block of `phase_certainty`
PHASE_CERTAIN_T = 4.0  # `phase_certainty` t that counts as certain (one-sided p < 0.001)
PHASE_WEIGHTS = {"low": 1.0, "chord": 1.0, "bass": 1.0}  # z-scored off-beat evidence terms of `correct_phase`
BASS_LINE_SHARE = 0.1  # share of power below 250 Hz under which a song has no bass line (`phase_evidence`)
DOWNBEAT_CUES = ("low", "share", "chord", "bass", "loud", "kick", "hold", "long")  # terms of `downbeat_terms`
CREDIBLE_CONFIDENCE = 0.3  # `is_credible`: the confidence below which no cut snaps to the grid
CREDIBLE_BEATS = 8  # `is_credible`: fewest beats (two bars of 4/4) a usable grid has


@dataclass(frozen=True)
class BeatGrid:
    """A song's beats and bars. Times in seconds; strengths and confidence 0..1.

    Attributes
    ----------
    tempo_bpm : float
        Median tempo, BPM.
    beats, downbeats : np.ndarray
        Seconds, increasing; every downbeat is a beat.
    confidence : float
        0..1, see `beat_confidence`; below ``CREDIBLE_CONFIDENCE`` the grid is not used for cuts.
    beats_per_bar : int
        3, or 4 (duple and compound bars count as 4).
    strength : np.ndarray
        Per beat, 0..1: attack strength relative to the song's 95th percentile.
    tempo_level : str
        Kept for compatibility: always ``"as_tracked"`` (octaves are decided among the hypotheses).
    variable_tempo : bool
        Whether the beats follow a local tempo curve.
    steady_tempo : bool
        Whether the beats are one straight lattice with one beat phase for the whole song
        (`steady_lattice`).
    phase_flips : int
        How often the off-beat correction switched the half of the eighth-note lattice.
    candidates : tuple of dict
        Tempo hypotheses: ``{"bpm": float, "score": float}``, best first.
    phrase_boundaries, phrase_strength : np.ndarray
        4- and 8-bar phrase starts (seconds, on downbeats) and their strength (0..1).
    section_boundaries, section_strength : np.ndarray
        Section boundaries (seconds, on downbeats) and their strength (0..1).
    confidence_terms : dict
        The factors of `confidence` (``on_attack``, ``regularity``, ``phase``, ``tempo_clarity``).
    tracker : str
        Which tracker made the grid: ``"librosa"`` (this module) or ``"beat_this"``.
    """

    tempo_bpm: float
    beats: np.ndarray
    downbeats: np.ndarray
    confidence: float
    beats_per_bar: int = 4
    strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tempo_level: str = "as_tracked"
    variable_tempo: bool = False
    steady_tempo: bool = False
    phase_flips: int = 0
    candidates: tuple = ()
    phrase_boundaries: np.ndarray = field(default_factory=lambda: np.zeros(0))
    phrase_strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    section_boundaries: np.ndarray = field(default_factory=lambda: np.zeros(0))
    section_strength: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confidence_terms: dict = field(default_factory=dict)
    tracker: str = "librosa"

    @property
    def period(self) -> float:
        """Median beat period, seconds (0.5 when unknown)."""
        return float(np.median(np.diff(self.beats))) if len(self.beats) > 2 else 0.5


@dataclass(frozen=True)
class Cues:
    """Everything the tracker reads from the audio.

    Attributes
    ----------
    power : np.ndarray [shape=(1025, n)]
        Power spectrogram, 2048-sample window, ``HOP`` hop.
    mel, low, harm : np.ndarray [shape=(n,)]
        Normalised onset cues (see module docstring), one value per frame.
    envelope : np.ndarray [shape=(n,)]
        Beat envelope ``mel + low + harm``.
    raw_mel, raw_low : np.ndarray [shape=(n,)]
        Unnormalised full-band and low-band flux (dB per band), for downbeat features.
    chroma, bass_chroma : np.ndarray [shape=(12, n)]
        Chroma of the whole spectrum and of the part below 250 Hz.
    times : np.ndarray [shape=(n,)]
        Frame times, seconds.
    fine_times, fine : np.ndarray
        Attack envelope (512-sample window, 64-sample hop = 2.9 ms), times in seconds.
    """

    power: np.ndarray
    mel: np.ndarray
    low: np.ndarray
    harm: np.ndarray
    envelope: np.ndarray
    raw_mel: np.ndarray
    raw_low: np.ndarray
    chroma: np.ndarray
    bass_chroma: np.ndarray
    times: np.ndarray
    fine_times: np.ndarray
    fine: np.ndarray


def analysis_audio(y: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 at `SR` Hz (channels-first or channels-last stereo accepted)."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0 if y.shape[0] <= 2 and y.shape[1] > 2 else 1)
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="soxr_hq")
    return y


def _normalise(x: np.ndarray, smooth_frames: int = 43) -> np.ndarray:
    """Remove the local mean (``smooth_frames`` frames, 0.5 s), clip at zero, divide by the std."""
    x = x - scipy.ndimage.uniform_filter1d(x, smooth_frames, mode="nearest")
    x = np.maximum(x, 0.0)
    return x / (x.std() + 1e-9)


def feature_change(features: np.ndarray, frames: np.ndarray, width: int) -> np.ndarray:
    """Cosine distance between the mean feature over [f - width, f) and over [f, f + width), per frame f.

    Parameters
    ----------
    features : np.ndarray [shape=(d, n)]
    frames : np.ndarray of int, frame indices where the change is measured.
    width : int, window length in frames.
    """
    f = features / (np.linalg.norm(features, axis=0, keepdims=True) + 1e-9)
    cs = np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(f, axis=1)], axis=1)
    n = f.shape[1]
    t = np.clip(np.asarray(frames, dtype=int), 0, n)
    a, b = np.clip(t - width, 0, n), np.clip(t + width, 0, n)
    before, after = cs[:, t] - cs[:, a], cs[:, b] - cs[:, t]
    num = (before * after).sum(axis=0)
    den = np.linalg.norm(before, axis=0) * np.linalg.norm(after, axis=0)
    return np.where(den > 1e-9, 1.0 - num / (den + 1e-12), 0.0)


def compute_cues(y: np.ndarray) -> Cues:
    """All cues of mono audio `y` at `SR` Hz (module docstring, step 1)."""
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    n = power.shape[1]
    mel = librosa.feature.melspectrogram(S=power, sr=SR, n_mels=128)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    centres = librosa.mel_frequencies(n_mels=130)[1:-1]
    flux = np.maximum(0.0, np.diff(db, axis=1, prepend=db[:, :1]))
    raw_mel = flux.mean(axis=0)
    raw_low = flux[centres < 200.0].mean(axis=0)
    freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)
    chroma = librosa.feature.chroma_stft(S=power, sr=SR, tuning=0.0)
    bass = librosa.feature.chroma_stft(S=power * (freqs < 250.0)[:, None], sr=SR, tuning=0.0)
    harm_raw = feature_change(chroma, np.arange(n), int(round(0.12 * SR / HOP)))
    m, lo, h = _normalise(raw_mel), _normalise(raw_low), _normalise(harm_raw)
    fine = librosa.onset.onset_strength(y=y, sr=SR, hop_length=FINE_HOP, n_fft=FINE_NFFT, n_mels=64)
    fine_times = librosa.frames_to_time(np.arange(len(fine)), sr=SR, hop_length=FINE_HOP)
    return Cues(
        power,
        m,
        lo,
        h,
        m + lo + h,
        raw_mel,
        raw_low,
        chroma,
        bass,
        librosa.frames_to_time(np.arange(n), sr=SR, hop_length=HOP),
        fine_times,
        fine,
    )


# ---------------------------------------------------------------------------------------------
# Tempo


def tempo_preference(bpm: float | np.ndarray) -> np.ndarray:
    """Log-normal listener tempo preference (1 at `PREFERRED_BPM`), unitless."""
    return np.exp(-0.5 * (np.log2(np.asarray(bpm, dtype=float) / PREFERRED_BPM) / PREFERENCE_OCTAVES) ** 2)


def _peak_at(x: np.ndarray, frames: np.ndarray, radius: int) -> np.ndarray:
    """Max of `x` within +-`radius` frames of each frame (0 outside the signal)."""
    frames = np.asarray(frames, dtype=int)
    if len(x) == 0 or len(frames) == 0:
        return np.zeros(len(frames))
    win = scipy.ndimage.maximum_filter1d(x, 2 * radius + 1, mode="constant")
    ok = (frames >= 0) & (frames < len(x))
    out = np.zeros(len(frames))
    out[ok] = win[frames[ok]]
    return out


def tempogram(envelope: np.ndarray, win_length: int, stride: int) -> np.ndarray:
    """Autocorrelation tempogram every `stride` frames (shape: lags x windows), each window max-normalised.

    Same as ``librosa.feature.tempogram`` (Hann window of `win_length` frames centred on each
    analysed frame, autocorrelation, normalised by its maximum) but evaluated only every
    `stride` frames, which is all the tempo analysis needs and `stride` times cheaper.
    """
    pad = win_length // 2
    x = np.pad(envelope, (pad, pad), mode="linear_ramp")
    starts = np.arange(0, len(envelope), stride)
    idx = starts[:, None] + np.arange(win_length)[None, :]
    frames = x[np.minimum(idx, len(x) - 1)] * scipy.signal.get_window("hann", win_length, fftbins=True)[None, :]
    n_fft = 1 << int(np.ceil(np.log2(2 * win_length)))
    spec = np.fft.rfft(frames, n=n_fft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, n=n_fft, axis=1)[:, :win_length].T
    return ac / (np.max(np.abs(ac), axis=0, keepdims=True) + 1e-12)


def tempo_candidates(envelope: np.ndarray, max_peaks: int = 5) -> list[tuple[float, float]]:
    """Tempo hypotheses (BPM, autocorrelation 0..1) of a beat envelope (module docstring, step 2).

    Parameters
    ----------
    envelope : np.ndarray, beat envelope, one value per ``HOP`` frame.
    max_peaks : int, tempogram peaks kept before adding their doubles and halves.
    """
    tg = tempogram(envelope, 768, 43)
    ac = tg.mean(axis=1)
    bpms = librosa.tempo_frequencies(len(ac), sr=SR, hop_length=HOP)
    ok = np.isfinite(bpms) & (bpms >= 40.0) & (bpms <= 330.0)
    peaks = scipy.signal.find_peaks(np.where(ok, ac, 0.0))[0]
    peaks = peaks[np.argsort(-ac[peaks])][:max_peaks]
    order = np.argsort(bpms[ok])
    xs, ys = bpms[ok][order], ac[ok][order]
    out: list[tuple[float, float]] = []
    for p in peaks:
        # parabolic interpolation of the peak's lag
        lag = float(p)
        if 0 < p < len(ac) - 1:
            a, b, c = ac[p - 1], ac[p], ac[p + 1]
            den = a - 2 * b + c
            if abs(den) > 1e-12:
                lag = p + 0.5 * (a - c) / den
        base = 60.0 * SR / HOP / lag
        for mult in (1.0, 2.0, 0.5):
            t = base * mult
            if BPM_RANGE[0] <= t <= BPM_RANGE[1] and all(abs(np.log(t / c)) > SAME_TEMPO for c, _ in out):
                out.append((t, float(np.interp(t, xs, ys))))
    return out


def local_tempo(
    envelope: np.ndarray, around_bpm: float, octave_cost: float = 8.0, step_seconds: float = 0.5
) -> np.ndarray:
    """Per-frame tempo curve (BPM) within half an octave of `around_bpm`.

    A Viterbi path through the 4.5 s autocorrelation tempogram, sampled every `step_seconds`;
    moving costs `octave_cost` log units per octave of change.
    """
    step = max(1, int(round(step_seconds * SR / HOP)))
    tg = tempogram(envelope, 384, step)
    bpms = librosa.tempo_frequencies(tg.shape[0], sr=SR, hop_length=HOP)
    keep = np.flatnonzero(np.isfinite(bpms) & (bpms >= around_bpm / np.sqrt(2)) & (bpms <= around_bpm * np.sqrt(2)))
    if len(keep) < 2:
        return np.full(len(envelope), around_bpm)
    states = bpms[keep]
    starts = np.arange(tg.shape[1])
    sub = np.clip(tg[keep], 0.0, None)
    sub = sub / (sub.max(axis=0, keepdims=True) + 1e-9)
    emit = np.log(sub + 1e-3)
    logb = np.log2(states)
    trans = -octave_cost * np.abs(logb[:, None] - logb[None, :])
    score = emit[:, 0].copy()
    back = np.zeros((len(starts), len(states)), dtype=int)
    for t in range(1, len(starts)):
        cand = score[:, None] + trans
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(len(states))] + emit[:, t]
    path = [int(np.argmax(score))]
    for t in range(len(starts) - 1, 0, -1):
        path.append(int(back[t][path[-1]]))
    return np.repeat(states[np.array(path[::-1])], step)[: len(envelope)]


def steady_lattice(frames: np.ndarray, n_frames: int) -> np.ndarray | None:
    """Beat frames of the straight grid through tracked beats, when the song keeps a steady tempo.

    The tracked beats are folded onto an eighth-note lattice (half the beat period): the period
    is the one within ``STEADY_SEARCH`` (1.5 %) of the beats' median period whose folded phases
    agree best (largest circular mean resultant), searched in steps of 0.005 % and then 0.00025 %,
    so the grid stays within a frame over ten minutes. Folding onto eighths, not beats, keeps beats the
    tracker put on off-beats in some bars as evidence for the same line; which half of the lattice
    is the beat is `correct_phase`'s decision.

    Parameters
    ----------
    frames : np.ndarray of int
        Tracked beat frames (``HOP`` frames), increasing.
    n_frames : int
        Frames of the song; the grid covers ``[0, n_frames)``.

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
    median = float(np.median(np.diff(f)))

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


def _track(envelope: np.ndarray, bpm, tightness: float) -> np.ndarray:
    """Librosa's DP beat tracker, untrimmed; returns beat frames."""
    _, frames = librosa.beat.beat_track(
        onset_envelope=envelope, sr=SR, hop_length=HOP, bpm=bpm, tightness=tightness, trim=False, units="frames"
    )
    return np.asarray(frames, dtype=int)


def _lattice_stats(cues: Cues, frames: np.ndarray) -> tuple[float, float, float, float, float]:
    """Mean beat-envelope level (units: mean level) at points of each beat period.

    Returns (on, mid, quarter, third, sixth): the beats, their midpoints, the quarter points
    (1/4, 3/4), the third points (1/3, 2/3) and the sixth points (1/6, 1/2, 5/6).
    """
    if len(frames) < 4:
        return 0.0, 0.0, 1.0, 0.0, 1.0
    period = float(np.median(np.diff(frames)))
    radius = max(1, int(period // 8))
    env = cues.envelope / (cues.envelope.mean() + 1e-9)

    def at(*fracs: float) -> float:
        return float(np.mean([_peak_at(env, np.round(frames + f * period).astype(int), radius).mean() for f in fracs]))

    return at(0.0), at(0.5), at(0.25, 0.75), at(1 / 3, 2 / 3), at(1 / 6, 0.5, 5 / 6)


def _salience(cues: Cues, frames: np.ndarray) -> float:
    """Mean beat-envelope peak (within an eighth of a beat) at the beat frames, units of the envelope mean."""
    if len(frames) < 4:
        return 0.0
    radius = max(1, int(float(np.median(np.diff(frames))) // 8))
    return float(_peak_at(cues.envelope, frames, radius).mean() / (cues.envelope.mean() + 1e-9))


def lattice_contrast(stats: tuple[float, float, float, float, float]) -> float:
    """How much stronger a grid's beats and subdivisions are than the points between them.

    Duple: (beats + midpoints) over the quarter points. Triple (compound meter: a jig's dotted
    quarter holds three eighths): (beats + third points) over the sixth points, counted only
    when the beats are accented over their third points by ``TRIPLE_ACCENT``; without that
    accent a 2:3 grid in duple music (every third eighth) would pass for a compound beat.
    """
    on, mid, quarter, third, sixth = stats
    duple = (on + mid + LATTICE_FLOOR) / (2.0 * quarter + LATTICE_FLOOR)
    if on < TRIPLE_ACCENT * third:
        return duple
    return max(duple, (on + 2.0 * third + LATTICE_FLOOR) / (3.0 * sixth + LATTICE_FLOOR))


def _score_candidate(bpm: float, ac: float, stats: tuple[float, float, float, float, float]) -> float:
    """Log autocorrelation + LATTICE_WEIGHT x log `lattice_contrast` + log tempo preference."""
    contrast = lattice_contrast(stats)
    return float(np.log(max(ac, 1e-6)) + LATTICE_WEIGHT * np.log(contrast) + np.log(tempo_preference(bpm)))


# ---------------------------------------------------------------------------------------------
# Phase, refinement, bars


def phase_evidence(cues: Cues, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        "low": lambda: np.log(_peak_at(cues.low, lattice, radius) + 0.1),
        "chord": lambda: feature_change(cues.chroma, lattice, period),
        "bass": lambda: feature_change(cues.bass_chroma, lattice, period),
        "mel": lambda: np.log(_peak_at(cues.mel, lattice, radius) + 0.1),
        "rise": lambda: _energy_rise(cues, lattice, max(1, period // 4)),
    }
    weights = dict(PHASE_WEIGHTS)
    if bass_share(cues) < BASS_LINE_SHARE:
        weights["bass"] = 0.0  # no bass line: the low band holds only the melody's lowest notes
    return lattice, sum(w * z(terms[k]()) for k, w in weights.items() if w)


def bass_share(cues: Cues) -> float:
    """Share of the song's power below 250 Hz (the band of `Cues.bass_chroma`), 0..1."""
    low = librosa.fft_frequencies(sr=SR, n_fft=N_FFT) < 250.0
    total = float(cues.power.sum())
    return float(cues.power[low].sum()) / total if total > 0 else 0.0


def correct_phase(cues: Cues, frames: np.ndarray, switch: float | None = None) -> tuple[np.ndarray, int, float]:
    """Off-beat correction (module docstring, step 5).

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
    lattice, evidence = phase_evidence(cues, frames)
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

    Each beat's phase evidence minus that of the midpoint after it (`phase_evidence`), averaged
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
    _, evidence = phase_evidence(cues, beats)
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
    """Move beats (seconds) onto note attacks of the fine envelope (module docstring, step 6).

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
    n_frames = len(cues.times)
    frames = np.clip(np.round(beats * SR / HOP).astype(int), 0, n_frames - 1)
    radius = max(1, int(round(0.035 * SR / HOP)))
    low = _peak_at(cues.raw_low, frames, radius)
    attack = _peak_at(cues.raw_mel, frames, radius)
    share = low / (attack + 1e-9)
    long = -np.concatenate([attack[1:], [attack.mean()]])
    period = max(2, int(round(float(np.median(np.diff(frames)))))) if len(frames) > 2 else 20
    chord = feature_change(cues.chroma, frames, period)
    bass = feature_change(cues.bass_chroma, frames, period)
    bounds = np.concatenate([frames, [n_frames]])
    spans = list(zip(bounds[:-1], np.maximum(bounds[:-1] + 1, bounds[1:])))
    frame_power = cues.power.sum(axis=0)
    loud = np.log(np.array([frame_power[a:b].mean() for a, b in spans]) + 1e-12)
    freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)
    low_power = np.concatenate([[0.0], np.cumsum(cues.power[freqs < 120.0].sum(axis=0))])
    w = max(1, int(round(0.07 * SR / HOP)))

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


def bar_contrast(terms: dict[str, np.ndarray], meter: int, phase: int) -> dict[str, float]:
    """Each cue's two-sample t statistic: beats at `phase` (mod `meter`) against all other beats.

    Positive when the cue is higher on those beats; about N(0, 1) when the cue has no bar
    structure, whatever the meter.
    """
    n = len(next(iter(terms.values())))
    on = (np.arange(n) - phase) % meter == 0
    return {name: two_sample_t(x[on], x[~on]) for name, x in terms.items()}


def two_sample_t(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample t statistic of mean(a) over mean(b) (pooled variance); 0 when either has < 2 values."""
    k_a, k_b = len(a), len(b)
    if k_a < 2 or k_b < 2:
        return 0.0
    n = k_a + k_b
    pooled = np.sqrt((a.var() * k_a + b.var() * k_b) / n) + 1e-9
    return float((a.mean() - b.mean()) / pooled * np.sqrt(k_a * k_b / n))


def downbeat_weights(terms: dict[str, np.ndarray], meters: tuple[int, ...] = (3, 4)) -> dict[str, float]:
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
            t = bar_contrast(terms, meter, phase)
            gain = sum(max(v, 0.0) ** 2 for v in t.values())
            if gain > best:
                best, weights = gain, {k: max(v, 0.0) for k, v in t.items()}
    return weights


def weighted_evidence(
    terms: dict[str, np.ndarray], meters: tuple[int, ...] = (3, 4), weights: dict[str, float] | None = None
) -> np.ndarray:
    """Per-beat downbeat evidence (z units): z-scored cues summed with `downbeat_weights` (or `weights`)."""
    weights = downbeat_weights(terms, meters) if weights is None else weights
    if sum(weights.values()) <= 0.0:  # no cue rises on any bar hypothesis: all count alike
        weights = {k: 1.0 for k in terms}
    evidence = sum(weights[k] * terms[k] for k in terms)
    return (evidence - evidence.mean()) / (evidence.std() + 1e-9)


def song_bars(cues: Cues, beats: np.ndarray, meters: tuple[int, ...] = (3, 4)) -> tuple[int, np.ndarray]:
    """Meter and downbeats of a song (step 7): `bars` on the `weighted_evidence` of its `downbeat_terms`.

    The song's start may settle 4/4's half-bar question (`start_anchored`) only where no cue marks
    the bar lines with certainty (every cue's weight, its t at the best bar hypothesis, under
    ``PHASE_CERTAIN_T``): a kick, a bass line or chord changes that plainly mark the bars outweigh
    how the song starts (a rock song cut two beats before a bar line keeps its bar lines).
    """
    terms = downbeat_terms(cues, beats)
    weights = downbeat_weights(terms, meters)
    certain = max(weights.values(), default=0.0) >= PHASE_CERTAIN_T
    return bars(weighted_evidence(terms, meters, weights), meters, anchor=not certain)


def bars(
    evidence: np.ndarray, meters: tuple[int, ...] = (3, 4), switch: float | None = None, anchor: bool = True
) -> tuple[int, np.ndarray]:
    """Viterbi over (meter, position-in-bar) states, then the half-bar choice from the song's start.

    Every beat in a 4-beat bar state earns ``FOUR_BEAT_PRIOR`` (duple and quadruple meters are
    the most common, so evidence that hardly tells 3 from 4 gives 4). With `anchor`, when the
    path is mostly in 4, the half-bar twin of its bar lines (two beats later) is taken instead
    where the evidence cannot tell the two apart and only the twin agrees with how music starts
    (`start_anchored`).

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
        if start_anchored(evidence, down, twin):
            down = twin
    return meter, down


def start_anchored(evidence: np.ndarray, down: np.ndarray, twin: np.ndarray) -> bool:
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
    return two_sample_t(evidence[down], evidence[twin]) < PHASE_CERTAIN_T


def confidence_terms(
    beats: np.ndarray,
    strength: np.ndarray,
    fine: np.ndarray,
    margin: float,
    tempo_margin: float,
    phase_t: float | None = None,
) -> dict[str, float]:
    """The four factors of a grid's confidence, each 0..1 (module docstring, step 8).

    Parameters
    ----------
    beats : np.ndarray
        Seconds.
    strength : np.ndarray
        Attack peak per beat (fine-envelope units, see `refine`).
    fine : np.ndarray
        The fine onset envelope.
    margin : float
        Phase evidence margin from `correct_phase` (z units).
    tempo_margin : float
        Score of the winning tempo minus the best rival that is not its double or half (log units).
    phase_t : float or None, optional
        For a steady grid (one beat half for the whole song), `phase_certainty`'s t; when given
        it replaces `margin` in the ``phase`` term.

    Returns
    -------
    dict
        ``on_attack``: share of beats whose attack reaches the song's median onset peak;
        ``regularity``: 1 - 4 x the median relative deviation of beat intervals from their
        9-beat local median (1 = metronomic, 0 = intervals off by 25 % or more);
        ``phase``: the phase margin over 1.5 z (how clearly the beats, not the off-beats, carry
        bass and chord changes), or for a steady grid t over ``PHASE_CERTAIN_T``;
        ``tempo_clarity``: 1 - exp(-tempo margin / 0.15).
        All zero with fewer than eight beats.
    """
    if len(beats) < 8:
        return {"on_attack": 0.0, "regularity": 0.0, "phase": 0.0, "tempo_clarity": 0.0}
    peaks = fine[scipy.signal.find_peaks(fine, distance=8)[0]]
    typical = float(np.median(peaks)) if len(peaks) else float(fine.max())
    on_onset = float(np.mean(strength >= typical))
    regular = tempo_regularity(beats)
    phase = margin / 1.5 if phase_t is None else phase_t / PHASE_CERTAIN_T
    phase = float(np.clip(phase, 0.0, 1.0))
    tempo = float(1.0 - np.exp(-max(tempo_margin, 0.0) / 0.15))
    return {"on_attack": on_onset, "regularity": regular, "phase": phase, "tempo_clarity": tempo}


def tempo_regularity(beats: np.ndarray) -> float:
    """How steady a grid's beat intervals are, 0..1.

    Parameters
    ----------
    beats : np.ndarray
        Seconds.

    Returns
    -------
    float
        1 - 4 x the median relative deviation of the intervals from their 9-beat local median:
        1 = metronomic, 0 = intervals typically off by a quarter or more. 0 with fewer than 3 beats.
    """
    if len(beats) < 3:
        return 0.0
    ibi = np.diff(np.asarray(beats, dtype=float))
    local = scipy.ndimage.median_filter(ibi, size=9, mode="nearest")
    return float(np.clip(1.0 - 4.0 * np.median(np.abs(ibi - local) / np.maximum(local, 1e-9)), 0.0, 1.0))


def beat_confidence(terms: dict[str, float]) -> float:
    """Credibility of a grid, 0..1: sqrt(on_attack) x regularity x sqrt(phase) x (0.5 + 0.5 x tempo_clarity).

    Parameters
    ----------
    terms : dict
        From `confidence_terms`.

    Returns
    -------
    float
        0..1. Over the benchmark it ranks grids like their beat F-measure does only moderately
        (Spearman ~0.6): treat it as a floor for "no usable grid", not as an accuracy estimate.
    """
    value = (
        terms["on_attack"] ** 0.5 * terms["regularity"] * terms["phase"] ** 0.5 * (0.5 + 0.5 * terms["tempo_clarity"])
    )
    return float(np.clip(value, 0.0, 1.0))


def even_pulse_double(scored: list, stats: tuple[float, ...]) -> int | None:
    """Index in `scored` of the winner's double tempo, when the onsets cannot tell the two apart.

    A grid whose beat midpoints are as strong as its beats (a drum on every beat tracked at half
    tempo) scores the same lattice contrast as its double, or better, because its "quarter
    points" are the double's empty off-beats. Then the two are one even pulse and the listener
    preference picks the level: the double wins when it lies nearer ``PREFERRED_BPM``.

    Parameters
    ----------
    scored : list of (score, bpm, frames)
        Tempo hypotheses, best first (`track_pulse`).
    stats : (on, mid, ...)
        The winner's `_lattice_stats` (units: mean beat-envelope level); only the first two are read.

    Returns
    -------
    int or None
        Index of the double's hypothesis, or None to keep the winner.
    """
    on, mid = stats[0], stats[1]
    bpm = scored[0][1]
    if on <= 0 or mid < EVEN_PULSE * on:
        return None
    for i, (_, b, _) in enumerate(scored):
        if abs(np.log(b / (2.0 * bpm))) < SAME_TEMPO and tempo_preference(b) > tempo_preference(bpm):
            return i
    return None


def _octave_related(a: float, b: float) -> bool:
    r = max(a, b) / min(a, b)
    return any(abs(np.log(r / k)) < SAME_TEMPO for k in (1.0, 2.0, 4.0))


def track_pulse(cues: Cues) -> tuple[np.ndarray, float, list, float, bool] | None:
    """Steps 2-3 of `track_beats`: the best tempo hypothesis, tracked (before the off-beat correction).

    Parameters
    ----------
    cues : Cues

    Returns
    -------
    (frames, bpm, scored, tempo_margin, variable) or None
        Beat frames (``HOP`` frames), the chosen tempo (BPM), every hypothesis as (score, bpm,
        frames) with the winner first (`even_pulse_double` may put a double ahead of a higher
        score), the winner's lead over the best rival that is not its double or half (log
        units), and whether the beats follow a local tempo curve. None without hypotheses.
    """
    cands = tempo_candidates(cues.envelope)
    if not cands:
        return None
    scored, stats = [], {}
    for bpm, ac in cands:
        frames = _track(cues.envelope, bpm, tightness=400.0)
        stats[bpm] = _lattice_stats(cues, frames)
        scored.append((_score_candidate(bpm, ac, stats[bpm]), bpm, frames))
    scored.sort(key=lambda s: -s[0])
    double = even_pulse_double(scored, stats[scored[0][1]])
    if double is not None:
        scored.insert(0, scored.pop(double))
    best_score, bpm, frames = scored[0]
    rivals = [s for s, b, _ in scored[1:] if not _octave_related(b, bpm)]
    tempo_margin = best_score - (rivals[0] if rivals else best_score - 1.0)
    # the tempo curve may only wander half an octave from its centre: a song that slows from 100
    # to 76 BPM and ends at 120 (the winner) needs a curve centred on a rival such as 100
    centres = [bpm] + [b for _, b, _ in scored[1:] if abs(np.log2(b / bpm)) < 0.5 and not _octave_related(b, bpm)]
    best = None
    for centre in centres:
        curve = local_tempo(cues.envelope, centre)
        if float(np.mean(np.abs(curve / bpm - 1.0) > TEMPO_CHANGE)) <= 0.2:
            continue
        vframes = _track(cues.envelope, curve, tightness=100.0)
        salience = _salience(cues, vframes)
        if best is None or salience > best[0]:
            best = (salience, vframes)
    # follow a curve only if that puts the beats on clearly stronger onsets than the constant tempo
    variable = best is not None and best[0] > VARIABLE_GAIN * _salience(cues, frames)
    return (best[1] if variable else frames), bpm, scored, tempo_margin, variable


def track_beats(y: np.ndarray, sr: int, beats_per_bar: int | None = None) -> BeatGrid:
    """Beats, downbeats, phrases, sections and confidence of a song (module docstring, steps 1-9).

    Parameters
    ----------
    y : np.ndarray
        Audio: mono, or stereo channels-first or channels-last; float.
    sr : int
        Sampling rate of `y`, Hz (resampled to ``SR`` = 22 050 Hz internally).
    beats_per_bar : {3, 4}, optional
        Force the meter instead of estimating it.

    Returns
    -------
    BeatGrid
        Times in seconds; empty (confidence 0) for audio shorter than a second, silent, or
        with fewer than four beats.
    """
    from soundsight.models.audio.structure import phrase_boundaries, section_boundaries, timbre_harmony

    y = analysis_audio(y, sr)
    empty = np.zeros(0)
    if len(y) < SR or float(np.abs(y).max(initial=0.0)) == 0.0:
        return BeatGrid(0.0, empty, empty, 0.0)
    cues = compute_cues(y)
    pulse = track_pulse(cues)
    if pulse is None:
        return BeatGrid(0.0, empty, empty, 0.0)
    frames, bpm, scored, tempo_margin, variable = pulse
    frames, steady, flips, margin = place_beats(cues, frames, variable)
    beats = _trim(librosa.frames_to_time(frames, sr=SR, hop_length=HOP), cues)
    if len(beats) < 4:
        return BeatGrid(bpm, beats, beats[:1], 0.0)
    beats, strength = refine(beats, cues.fine_times, cues.fine, rigid=steady)
    meters = (beats_per_bar,) if beats_per_bar else (3, 4)
    meter, down = song_bars(cues, beats, meters)
    phase_t = phase_certainty(cues, frames) if steady else None  # None: too short, the margin decides
    terms = confidence_terms(beats, strength, cues.fine, margin, tempo_margin, phase_t)
    top = float(np.percentile(strength, 95)) or 1.0
    feats = timbre_harmony(cues.power, cues.chroma)
    phr, phr_s = phrase_boundaries(feats, beats[down])
    sec, sec_s = section_boundaries(feats, beats, beats[down])
    return BeatGrid(
        tempo_bpm=60.0 / float(np.median(np.diff(beats))),
        beats=beats,
        downbeats=beats[down],
        confidence=beat_confidence(terms),
        beats_per_bar=meter,
        strength=np.clip(strength / top, 0.0, 1.0),
        tempo_level="as_tracked",
        variable_tempo=variable,
        steady_tempo=steady,
        phase_flips=flips,
        candidates=tuple({"bpm": round(float(b), 2), "score": round(float(s), 3)} for s, b, _ in scored),
        phrase_boundaries=phr,
        phrase_strength=phr_s,
        section_boundaries=sec,
        section_strength=sec_s,
        confidence_terms={k: round(v, 4) for k, v in terms.items()},
    )


def place_beats(cues: Cues, frames: np.ndarray, variable: bool) -> tuple[np.ndarray, bool, int, float]:
    """Steps 4-5 of `track_beats`: the steady-tempo grid where it holds, then the off-beat correction.

    Parameters
    ----------
    cues : Cues
    frames : np.ndarray of int
        Tracked beat frames (`track_pulse`).
    variable : bool
        Whether they follow a local tempo curve (then no steady grid is tried).

    Returns
    -------
    frames : np.ndarray of int
        Beat frames.
    steady : bool
        Whether they are `steady_lattice`'s grid, with one beat half for the whole song.
    flips, margin
        From `correct_phase`.
    """
    lattice = None if variable else steady_lattice(frames, len(cues.envelope))
    steady = lattice is not None
    frames, flips, margin = correct_phase(cues, lattice if steady else frames, switch=np.inf if steady else None)
    return frames, steady, flips, margin


def _trim(beats: np.ndarray, cues: Cues) -> np.ndarray:
    """Beats between the first and the last onset reaching 10 % of the song's 99th-percentile attack."""
    if len(beats) < 3:
        return beats
    loud = cues.fine_times[cues.fine >= 0.1 * np.percentile(cues.fine, 99)]
    if len(loud) == 0:
        return beats[:0]
    half = 0.5 * float(np.median(np.diff(beats)))
    return beats[(beats >= loud[0] - half) & (beats <= loud[-1] + half)]


def is_credible(grid: BeatGrid, threshold: float = CREDIBLE_CONFIDENCE) -> bool:
    """Whether cuts may snap to `grid`: at least ``CREDIBLE_BEATS`` beats and confidence >= `threshold`.

    A steady grid (`BeatGrid.steady_tempo`) needs only its pulse confidence (`pulse_confidence`)
    to reach `threshold`: its beats and off-beats lie on one straight line of onsets, so a cut
    snapped to it lands on that line even when which half is the beat is unsure.

    Parameters
    ----------
    grid : BeatGrid
    threshold : float
        Confidence floor, 0..1 (docs/segmentation.md reads it in musical terms).

    Returns
    -------
    bool
    """
    if len(grid.beats) < CREDIBLE_BEATS:
        return False
    return grid.confidence >= threshold or (grid.steady_tempo and pulse_confidence(grid) >= threshold)


def pulse_confidence(grid: BeatGrid) -> float:
    """`beat_confidence` of `grid` with its phase term left out, 0..1 (0 without terms).

    Parameters
    ----------
    grid : BeatGrid

    Returns
    -------
    float
        How surely the grid's eighth-note lattice is on the music's pulse, whichever half of it
        is the beat.
    """
    if not grid.confidence_terms:
        return 0.0
    return beat_confidence({**grid.confidence_terms, "phase": 1.0})


def fine_onset_envelope(y: np.ndarray, sr: int = SR, fmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Short-window onset envelope: 512-sample window (23 ms), 64-sample hop (2.9 ms).

    Parameters
    ----------
    y : np.ndarray
        Mono audio at `sr`.
    sr : int
        Sampling rate, Hz.
    fmax : float, optional
        Highest frequency, Hz (24 mel bands up to it); None: 64 bands over the whole range.

    Returns
    -------
    times : np.ndarray
        Seconds.
    strength : np.ndarray
        Onset strength (librosa units: mean positive log-mel flux).
    """
    kwargs = {"fmax": fmax, "n_mels": 24} if fmax else {"n_mels": 64}
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=FINE_HOP, n_fft=FINE_NFFT, **kwargs)
    return librosa.frames_to_time(np.arange(len(env)), sr=sr, hop_length=FINE_HOP), env


def grid_salience(grid: np.ndarray, times: np.ndarray, env: np.ndarray, reach: float) -> float:
    """Mean attack peak of `env` (sampled at `times`, seconds) within `reach` seconds of each grid time.

    Parameters
    ----------
    grid : np.ndarray
        Seconds.
    times, env : np.ndarray
        An onset envelope and its frame times (seconds), e.g. `fine_onset_envelope`.
    reach : float
        Seconds either side.

    Returns
    -------
    float
        Envelope units; 0 for an empty grid.
    """
    vals = [p[1] if (p := _attack_near(times, env, float(g), reach, reach)) else 0.0 for g in grid]
    return float(np.mean(vals)) if vals else 0.0


def spectral_novelty(y: np.ndarray, sr: int, context_seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A 0..1 novelty curve: how different the next `context_seconds` sound from the previous ones.

    Foote-style: cosine distance between the mean standardised log-mel + chroma features of the
    window before and the window after each point, divided by the song's maximum - so 0.3 means
    "30 % of the biggest change of timbre/harmony in this song".

    Parameters
    ----------
    y : np.ndarray
        Audio at `sr`.
    sr : int
        Sampling rate, Hz.
    context_seconds : float
        Window on each side, seconds (`plan_segments` uses one bar, 1.5-4 s).

    Returns
    -------
    times : np.ndarray
        Seconds, every 93 ms (2048 samples at 22 050 Hz).
    novelty : np.ndarray
        0..1.
    """
    y = analysis_audio(y, sr)
    hop = 2048
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, hop_length=hop, n_mels=40))
    chroma = librosa.feature.chroma_stft(y=y, sr=SR, hop_length=hop)
    feats = np.vstack([(mel - mel.mean()) / (mel.std() + 1e-9), chroma * 3.0]).T
    n = len(feats)
    k = max(1, int(round(context_seconds * SR / hop)))
    csum = np.vstack([np.zeros((1, feats.shape[1])), np.cumsum(feats, axis=0)])
    novelty = np.zeros(n)
    if n > 2 * k:
        idx = np.arange(k, n - k)
        before = (csum[idx] - csum[idx - k]) / k
        after = (csum[idx + k] - csum[idx]) / k
        denom = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9
        novelty[idx] = 1.0 - (before * after).sum(1) / denom
    if novelty.max() > 0:
        novelty = novelty / novelty.max()
    return librosa.frames_to_time(np.arange(n), sr=SR, hop_length=hop), novelty
