"""Scores rendered with known beats, for the segmentation benchmark and tests.

`soundsight.flows.demo` renders the demo song; these helpers build on it for measurements that
need other pieces: any music21 corpus piece, tempo changes written into the score, a drum track on
the beats, and medleys of several pieces with known section starts. Ground truth always comes from
the score (`soundsight.flows.demo.score_timing`), never from the audio.
"""

from __future__ import annotations

import numpy as np

from soundsight.flows.demo import ScoreTiming, render_midi, score_timing, score_to_midi


def load_score(name: str, number: int | None = None, expand_repeats: bool = True):
    """A music21 corpus piece (``number`` picks a tune inside a multi-tune file such as ABC books).

    Repeats are expanded so that the score's measures and the written MIDI file agree note for note.
    """
    from music21 import corpus

    score = corpus.parse(name, number=number) if number is not None else corpus.parse(name)
    if expand_repeats:
        try:
            score = score.expandRepeats()
        except Exception:  # noqa: BLE001 - malformed repeat marks: keep the score as written
            pass
    return score


def set_tempi(score, changes: list[tuple[int, float]]) -> None:
    """Put metronome marks into the score: ``(measure_index, bpm)`` pairs, bpm in the time signature's beats.

    `measure_index` counts the first part's measures from 0 (the pickup bar, if any, is index 0).
    Existing marks are removed so the given ones define the whole tempo map.
    """
    from music21 import tempo

    for part in score.parts:
        for mark in list(part.recurse().getElementsByClass(tempo.MetronomeMark)):
            mark.activeSite.remove(mark)
    measures = list(score.parts[0].getElementsByClass("Measure"))
    for index, bpm in changes:
        m = measures[index]
        own = m.getElementsByClass("TimeSignature")
        ts = own[0] if own else m.getContextByClass("TimeSignature")
        referent = ts.beatDuration.quarterLength if ts is not None else 1.0
        m.insert(0, tempo.MetronomeMark(number=bpm, referent=referent))


def add_drum_track(pm, timing: ScoreTiming, velocity: int = 100) -> None:
    """A plain rock kit on the score's beats: kick on downbeats, snare on the other beats, hi-hat on all."""
    import pretty_midi

    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
    down = set(np.round(timing.downbeats, 6))
    for t in timing.beats:
        pitch = 36 if round(float(t), 6) in down else 38
        drums.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=float(t), end=float(t) + 0.1))
        drums.notes.append(pretty_midi.Note(velocity=velocity - 20, pitch=42, start=float(t), end=float(t) + 0.05))
    pm.instruments.append(drums)


def render_score(
    score, programs: tuple[int, ...] = (), *, drums: bool = False, sample_rate: int = 44100, tail_seconds: float = 1.0
) -> tuple[np.ndarray, ScoreTiming]:
    """Render a score (optionally with a drum track on its beats); audio runs to the last bar's end + tail."""
    pm = score_to_midi(score, programs)
    timing = score_timing(score, pm)
    if drums:
        add_drum_track(pm, timing)
    audio = render_midi(pm, sample_rate, tail_seconds=tail_seconds)
    n = int(round((timing.end + tail_seconds) * sample_rate))
    audio = audio[:n] if len(audio) >= n else np.concatenate([audio, np.zeros((n - len(audio), 2), np.float32)])
    return audio, timing


def medley(parts: list[tuple[np.ndarray, ScoreTiming]], sample_rate: int = 44100) -> tuple[np.ndarray, ScoreTiming]:
    """Concatenate renders back to back, each cut at its last bar's end: a medley with known section starts."""
    chunks, beats, downbeats, sigs, tempi, sections = [], [], [], [], [], []
    offset = last = 0.0
    for k, (audio, timing) in enumerate(parts):
        n = int(round(timing.end * sample_rate)) if k < len(parts) - 1 else len(audio)
        t = timing.shifted(offset)
        beats.append(t.beats)
        downbeats.append(t.downbeats)
        sigs += t.time_signatures
        tempi += t.tempi
        if k:
            sections.append(offset)
        chunks.append(audio[:n])
        last = offset
        offset += n / sample_rate
    audio = np.concatenate(chunks)
    peak = float(np.abs(audio).max())
    audio = audio * (0.89 / peak) if peak > 0 else audio
    end = last + parts[-1][1].end
    return audio, ScoreTiming(np.concatenate(beats), np.concatenate(downbeats), end, sigs, tempi, sections)
