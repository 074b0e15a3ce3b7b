"""`track_beats`, steps 1-9 in order, and the built-in tracker's backend object (`BACKEND`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundsight.media import ANALYSIS_SAMPLE_RATE
from soundsight.models.audio.beats.attack import refine, trim_to_music
from soundsight.models.audio.beats.bars import song_bars
from soundsight.models.audio.beats.confidence import beat_confidence, confidence_terms
from soundsight.models.audio.beats.cues import HOP, analysis_audio, compute_cues
from soundsight.models.audio.beats.phase import phase_certainty, place_beats
from soundsight.models.audio.beats.structure import phrase_boundaries, section_boundaries, timbre_harmony
from soundsight.models.audio.beats.tempo import track_pulse
from soundsight.models.base import BeatGrid
from soundsight.settings import SegmentSettings

__all__ = ["BACKEND", "NAME", "LibrosaBeatTracker", "plain_beat_frames", "track_beats"]

WITNESS = True  # ask plain librosa's beats when the tracked beats fail the steady test (`phase.place_beats`)
NAME = "librosa"  # its key in soundsight.backends.BEAT_TRACKERS, and BeatGrid.tracker of its grids


def track_beats(y: np.ndarray, sr: int, beats_per_bar: int | None = None) -> BeatGrid:
    """Beats, downbeats, phrases, sections and confidence of a song (the package docstring's steps 1-9).

    Parameters
    ----------
    y : np.ndarray
        Audio: mono, or stereo channels-first or channels-last; float.
    sr : int
        Sampling rate of `y`, Hz (resampled to ``ANALYSIS_SAMPLE_RATE`` = 22 050 Hz internally).
    beats_per_bar : {3, 4}, optional
        Force the meter instead of estimating it.

    Returns
    -------
    BeatGrid
        Times in seconds; empty (confidence 0) for audio shorter than a second, silent, or
        with fewer than four beats.
    """
    import librosa

    y = analysis_audio(y, sr)
    empty = np.zeros(0)
    if len(y) < ANALYSIS_SAMPLE_RATE or float(np.abs(y).max(initial=0.0)) == 0.0:
        return BeatGrid(0.0, empty, empty, 0.0, tracker=NAME)
    cues = compute_cues(y)
    pulse = track_pulse(cues)
    if pulse is None:
        return BeatGrid(0.0, empty, empty, 0.0, tracker=NAME)
    frames, bpm, scored, tempo_margin, variable = pulse
    frames, steady, flips, margin = place_beats(
        cues, frames, variable, witness=(lambda: plain_beat_frames(y)) if WITNESS else None
    )
    beats = trim_to_music(librosa.frames_to_time(frames, sr=ANALYSIS_SAMPLE_RATE, hop_length=HOP), cues)
    if len(beats) < 4:
        return BeatGrid(bpm, beats, beats[:1], 0.0, tracker=NAME)
    beats, strength = refine(beats, cues.fine_times, cues.fine, rigid=steady)
    meters = (beats_per_bar,) if beats_per_bar else (3, 4)
    meter, down, bar_t = song_bars(cues, beats, meters)
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
        tracker=NAME,
        bar_phase_t=round(bar_t, 3),
    )


def plain_beat_frames(y: np.ndarray) -> np.ndarray:
    """Plain librosa's beats (`librosa.beat.beat_track`, its defaults) of mono `y` at ``ANALYSIS_SAMPLE_RATE``, in ``HOP`` frames."""
    import librosa

    _, beats = librosa.beat.beat_track(y=y, sr=ANALYSIS_SAMPLE_RATE, units="time")
    return np.round(np.asarray(beats, dtype=float) * ANALYSIS_SAMPLE_RATE / HOP).astype(int)


@dataclass(frozen=True)
class LibrosaBeatTracker:
    """The built-in tracker (`track_beats`: librosa and numpy, CPU, no weights) as a `BeatTracker`."""

    name: str = NAME

    def identity(self, settings: SegmentSettings) -> str:
        """'': nothing but the segment settings and this code (the segment stage's version) changes its grid."""
        return ""

    def track(self, y: np.ndarray, sr: int, settings: SegmentSettings) -> BeatGrid:
        """`track_beats` of the mono song `y` (float32 at `sr` Hz), its meter estimated."""
        return track_beats(y, sr)


BACKEND = LibrosaBeatTracker()
