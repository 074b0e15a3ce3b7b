"""Reference beats beside a song, and how a run's cuts score against them (benchmarks and tests).

Ground-truth beats for a song lie beside it - ``<stem>.beats.txt`` (the demo song writes its own,
`soundsight.flows.demo.write_beats_file`) or a Frets-on-Fire note chart ``<stem>.chart.mid`` -
and `reference_metrics` scores the cuts and beats of its ``segments.json`` against them. The
segmentation benchmark aligns its charts with `chart_offset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soundsight.media import ANALYSIS_SAMPLE_RATE
from soundsight.models.audio.beats.cues import analysis_audio, fine_onset_envelope

__all__ = [
    "CHART_BAR_SHIFT",
    "chart_grid",
    "chart_offset",
    "load_reference_beats",
    "reference_file",
    "reference_metrics",
]

# Charts whose bar lines are not where their MIDI file puts them: Frets on Fire charts carry the
# sequencer's default 4/4 from tick 0, which says nothing about the song's bars. Beats to move the
# bar lines later, per song (the chart's folder name, lower case, spaces as _), each with the
# evidence, none of it from soundsight's tracker (`benchmarks/chart_bar_check.py` prints it for
# every chart; on the other seven charts of the two Debian packages the chart's notes and the
# backing's chord changes put position 1 first, and the kick never prefers position 2 by more
# than t +0.2).
CHART_BAR_SHIFT: dict[str, int] = {
    # mutilated_mime (muldjord, 180 BPM): the first note is on chart beat 1, not 0; per chart bar,
    # the longest note starting on a beat sits on position 2 in 27 bars, position 1 in 14,
    # position 3 in none (the other charts: position 1 first, or level with position 4 where held
    # notes anticipate the bar, metal_madness 15 / 16; position 2 never above 4 bars); chords on
    # beats: 39 on position 2 against 14 / 11 / 17; backing stem's kick energy rise: position 2
    # over position 1 with Welch t +5.2, 11 of 18 32-beat blocks won by position 2 (the other
    # charts: t +0.2 to -6.2); chord change (CQT chroma) leans the same way (t +1.1).
    "mutilated_mime": 1,
}


def _read_beats_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    beats, downbeats = [], []
    for line in path.read_text().splitlines():
        fields = line.replace(",", " ").split()
        if not fields or fields[0].startswith("#"):
            continue
        t = float(fields[0])
        beats.append(t)
        if len(fields) > 1 and float(fields[1]) == 1.0:
            downbeats.append(t)
    return np.array(beats, dtype=float), np.array(downbeats, dtype=float)


def chart_grid(
    chart_path: Path, beats_per_bar: int = 4, bar_shift: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beats, downbeats, note onsets) of a note chart (MIDI), in the chart's own time.

    Beats are the quarter-note ticks through the chart's tempo map; bars of `beats_per_bar` from
    tick 0 unless the file has time signatures (then pretty_midi's downbeats). Beats run from the
    first bar line at or before the first note to the last note. `bar_shift` moves every bar line
    that many beats later and leaves the beats alone (`CHART_BAR_SHIFT`: charts whose bar lines
    are not at tick 0).
    """
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(chart_path))
    onsets = np.unique(np.round([n.start for inst in pm.instruments for n in inst.notes], 6))
    if len(onsets) == 0:
        return np.zeros(0), np.zeros(0), onsets
    last_tick = pm.time_to_tick(float(onsets[-1]))
    ticks = np.arange(0, last_tick + 1, pm.resolution)
    beats = np.array([pm.tick_to_time(int(t)) for t in ticks])
    if pm.time_signature_changes:
        downbeats = pm.get_downbeats()
    else:
        downbeats = beats[::beats_per_bar]
    first_bar = downbeats[downbeats <= onsets[0] + 1e-6]
    start = first_bar[-1] if len(first_bar) else 0.0
    if bar_shift:
        all_beats = np.array(
            [pm.tick_to_time(int(t)) for t in range(0, last_tick + (bar_shift + 1) * pm.resolution, pm.resolution)]
        )
        at = np.clip(np.searchsorted(all_beats, downbeats - 1e-6) + bar_shift, 0, len(all_beats) - 1)
        downbeats = all_beats[at]
    return beats[beats >= start - 1e-6], downbeats[(downbeats >= start - 1e-6) & (downbeats <= beats[-1])], onsets


def chart_offset(onsets: np.ndarray, y: np.ndarray, sr: int, max_lag: float = 0.15) -> tuple[float, float]:
    """Seconds to add to chart times so its notes line up with the audio, and the peak's prominence.

    Cross-correlates the chart's note onsets (an impulse train) with the audio's fine onset
    envelope over lags of +-`max_lag` s in 2.9 ms steps; prominence is the best lag's score over
    the median score (about 1 for no alignment, > 2 for a clear one). Charts carry a constant
    offset of tens of ms; a wider search can settle half a beat off where a riff's notes sit on
    the off-beats (+-2 s did so on metal_madness, scoring a 0.94-F grid as 0.17).
    """
    y = analysis_audio(y, sr)
    times, env = fine_onset_envelope(y)
    env = env / (env.std() + 1e-9)
    step = times[1] - times[0]
    lags = np.arange(-max_lag, max_lag + step / 2, step)
    idx = np.round((onsets[None, :] + lags[:, None]) / step).astype(int)
    valid = (idx >= 0) & (idx < len(env))
    score = np.where(valid, env[np.clip(idx, 0, len(env) - 1)], 0.0).sum(1)
    best = int(np.argmax(score))
    return float(lags[best]), float(score[best] / (np.median(score) + 1e-9))


def reference_file(song_path: str | Path) -> Path | None:
    """The beats file beside a song that `load_reference_beats` reads, or None."""
    song_path = Path(song_path)
    for candidate in (
        song_path.with_name(song_path.stem + ".beats.txt"),
        song_path.with_name(song_path.name + ".beats.txt"),
        song_path.with_name(song_path.stem + ".chart.mid"),
    ):
        if candidate.is_file():
            return candidate
    return None


def load_reference_beats(
    song_path: str | Path, y: np.ndarray | None = None, sr: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Reference (beats, downbeats) in seconds for a song, or None when it has no reference.

    Looked up beside the song: ``<stem>.beats.txt`` (also ``<name>.beats.txt``): one beat time
    per line, optionally a second column with the beat's position in its bar (1 = downbeat; any
    other number = not a downbeat; no second column = no downbeats known). Else
    ``<stem>.chart.mid``: a note chart whose beat grid is in its own time; it is aligned to the
    audio with `chart_offset` (the audio is read from `song_path` when `y` is not given).
    """
    song_path = Path(song_path)
    found = reference_file(song_path)
    if found is None:
        return None
    if found.suffix == ".txt":
        return _read_beats_txt(found)
    chart = found
    if chart.is_file():
        beats, downbeats, onsets = chart_grid(chart)
        if len(beats) == 0:
            return None
        if y is None:
            import librosa

            y, sr = librosa.load(str(song_path), sr=ANALYSIS_SAMPLE_RATE, mono=True)
        lag, _ = chart_offset(onsets, y, sr)
        duration = len(analysis_audio(y, sr)) / ANALYSIS_SAMPLE_RATE
        beats, downbeats = beats + lag, downbeats + lag
        return beats[(beats >= 0) & (beats <= duration)], downbeats[(downbeats >= 0) & (downbeats <= duration)]
    return None


def reference_metrics(
    cut_times, beats, downbeats, reference_beats, reference_downbeats, fps: float
) -> dict[str, float]:
    """How well cuts and tracked beats match a reference. Pure; keys with no defined value are left out.

    - ``cut_error_median_ms``, ``cut_error_p95_ms``: |cut - nearest reference beat|, milliseconds;
    - ``cuts_within_frame``: share of cuts within one output frame (1/fps) of a reference beat;
    - ``cuts_on_downbeat``: share of cuts within one frame of a reference downbeat;
    - ``beat_f_measure`` (70 ms window), ``beat_amlt`` (continuity allowing half/double tempo and
      off-beat), ``downbeat_f_measure``: mir_eval on the tracked beats, no trimming of the start;
    - ``n_cuts``, ``n_cuts_scored`` (cuts inside the reference's span, from half a beat before
      its first beat to half a beat after its last; only these are scored), ``n_reference_beats``.
    """
    import mir_eval

    cuts = np.asarray(cut_times, dtype=float)
    ref = np.sort(np.asarray(reference_beats, dtype=float))
    ref_down = np.sort(np.asarray(reference_downbeats, dtype=float))
    est = np.sort(np.asarray(beats, dtype=float))
    est_down = np.sort(np.asarray(downbeats, dtype=float))
    frame = 1.0 / float(fps)
    out: dict[str, float] = {"n_cuts": float(len(cuts)), "n_reference_beats": float(len(ref))}

    def nearest(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(grid, x), 1, len(grid) - 1)
        return np.minimum(np.abs(x - grid[i - 1]), np.abs(x - grid[i]))

    if len(ref) >= 2:  # score only cuts inside the annotated span (half a beat of slack at each end)
        half = 0.5 * float(np.median(np.diff(ref)))
        cuts = cuts[(cuts >= ref[0] - half) & (cuts <= ref[-1] + half)]
        out["n_cuts_scored"] = float(len(cuts))
    if len(cuts) and len(ref) >= 2:
        err = nearest(cuts, ref)
        out["cut_error_median_ms"] = float(np.median(err) * 1e3)
        out["cut_error_p95_ms"] = float(np.percentile(err, 95) * 1e3)
        out["cuts_within_frame"] = float(np.mean(err <= frame + 1e-9))
    if len(cuts) and len(ref_down) >= 2:
        out["cuts_on_downbeat"] = float(np.mean(nearest(cuts, ref_down) <= frame + 1e-9))
    if len(ref) >= 2 and len(est) >= 2:
        out["beat_f_measure"] = float(mir_eval.beat.f_measure(ref, est))
        out["beat_amlt"] = float(mir_eval.beat.continuity(ref, est)[3])
    if len(ref_down) >= 2 and len(est_down) >= 2:
        out["downbeat_f_measure"] = float(mir_eval.beat.f_measure(ref_down, est_down))
    return out
