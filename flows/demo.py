"""Real music with no audio file: public-domain scores rendered through a General MIDI soundfont.

music21's corpus supplies the scores, pretty_midi ships the `TimGM6mb.sf2` soundfont and
tinysoundfont renders with it - all pip packages, all offline. Used by `soundsight render --demo`;
the segmentation benchmark builds on it (benchmarks/scores.py) for audio whose beats are known
exactly.

Ground truth comes from the score, never from the audio: beat and downbeat positions are read from
the score's measures (time signature's beat unit - a dotted quarter in 6/8 and 12/8 - and bar
phase, so pickup bars and short first/second-ending bars are placed correctly), in quarter notes,
and mapped to seconds through the MIDI file's own tempo map (ticks -> seconds with
`pretty_midi.tick_to_time`). `pretty_midi.get_downbeats()` is not used: it assumes bar 1 starts
at t = 0, which is wrong for every piece with an upbeat.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

DEMO_PIECE = "bach/bwv66.6"
# Chorale voices -> General MIDI programs (flute, clarinet, viola, cello).
DEMO_PROGRAMS = (73, 71, 41, 42)


def soundfont_path() -> Path:
    """The General MIDI soundfont that ships with pretty_midi."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def score_to_midi(score, programs: tuple[int, ...] = ()) -> pretty_midi.PrettyMIDI:  # noqa: F821
    """A music21 score as a PrettyMIDI object; `programs` assigns GM programs to parts in order."""
    import pretty_midi

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "score.mid"
        score.write("midi", fp=str(path))
        pm = pretty_midi.PrettyMIDI(str(path))
    for inst, program in zip(pm.instruments, programs):
        inst.program = program
    return pm


def render_midi(pm, sample_rate: int = 44100, tail_seconds: float = 1.5) -> np.ndarray:
    """Render a PrettyMIDI object to stereo float32 audio, shape (samples, 2), peak-normalised.

    Notes are scheduled with sample accuracy: audio is generated in chunks between
    consecutive note events, so a note that starts at t seconds sounds at sample round(t*sr).
    """
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont_path()))
    events: list[tuple[int, int, int, int, int]] = []  # (sample, order, channel, key, velocity)
    channel_of: dict[int, int] = {}
    for i, inst in enumerate(pm.instruments):
        chan = 9 if inst.is_drum else [c for c in range(16) if c != 9][i % 15]
        channel_of[i] = chan
        synth.program_select(chan, sfid, 128 if inst.is_drum else 0, 0 if inst.is_drum else inst.program, inst.is_drum)
        for note in inst.notes:
            events.append((int(round(note.start * sample_rate)), 1, chan, note.pitch, note.velocity))
            events.append((int(round(note.end * sample_rate)), 0, chan, note.pitch, 0))
    events.sort()
    total = (events[-1][0] if events else 0) + int(tail_seconds * sample_rate)
    out = np.zeros((total, 2), dtype=np.float32)
    pos = 0
    for sample, kind, chan, key, velocity in events:
        if sample > pos:
            out[pos:sample] = np.frombuffer(synth.generate(sample - pos), dtype=np.float32).reshape(-1, 2)
            pos = sample
        if kind:
            synth.noteon(chan, key, velocity)
        else:
            synth.noteoff(chan, key)
    if total > pos:
        out[pos:total] = np.frombuffer(synth.generate(total - pos), dtype=np.float32).reshape(-1, 2)
    peak = float(np.abs(out).max())
    return out * (0.89 / peak) if peak > 0 else out


@dataclass
class ScoreTiming:
    """Exact timing of a rendered score, seconds."""

    beats: np.ndarray
    downbeats: np.ndarray
    end: float  # end of the last bar
    time_signatures: list[tuple[float, str]] = field(default_factory=list)  # (time, "3/4")
    tempi: list[tuple[float, float]] = field(default_factory=list)  # (time, quarter notes per minute)
    sections: list[float] = field(default_factory=list)  # interior section boundaries (medleys)

    def shifted(self, dt: float) -> ScoreTiming:
        """The same timing `dt` seconds later."""
        return ScoreTiming(
            self.beats + dt,
            self.downbeats + dt,
            self.end + dt,
            [(t + dt, s) for t, s in self.time_signatures],
            [(t + dt, q) for t, q in self.tempi],
            [t + dt for t in self.sections],
        )


def score_beat_offsets(score) -> tuple[list[Fraction], list[Fraction], Fraction]:
    """Beat and downbeat offsets (quarter notes from the start) and the end offset, from the measures.

    Each measure's metrical phase: a full bar starts at phase 0; a short bar takes its
    ``paddingLeft`` when music21 set one (an upbeat), else continues the previous short bar's phase
    (a second half of a split bar), else is a pickup when it is the first bar, else starts at 0
    (a truncated last bar or first ending). Beats are the time signature's beat unit (music21's
    ``beatDuration``: a quarter in 4/4 and 3/4, a dotted quarter in 6/8 and 12/8).
    """
    from music21 import meter

    part = score.parts[0] if hasattr(score, "parts") and len(score.parts) else score
    measures = list(part.getElementsByClass("Measure"))
    beats: list[Fraction] = []
    downbeats: list[Fraction] = []
    carry: Fraction | None = None  # phase at which the previous (short) bar ended
    ts = None
    end = Fraction(0)
    for i, m in enumerate(measures):
        found = m.getElementsByClass(meter.TimeSignature)
        if found:
            ts = found[0]
        elif ts is None:
            ts = m.getContextByClass(meter.TimeSignature) or meter.TimeSignature("4/4")
        bar = Fraction(ts.barDuration.quarterLength)
        beat = Fraction(ts.beatDuration.quarterLength)
        length = Fraction(m.duration.quarterLength)
        start = Fraction(m.offset)
        if length >= bar:
            phase = Fraction(0)
        elif m.paddingLeft:
            phase = Fraction(m.paddingLeft)
        elif carry is not None and carry + length <= bar:
            phase = carry
        elif i == 0:
            phase = bar - length
        else:
            phase = Fraction(0)
        pos = Fraction(0)
        while pos < bar:
            if phase <= pos < phase + length:
                at = start + pos - phase
                beats.append(at)
                if pos == 0:
                    downbeats.append(at)
            pos += beat
        ended = phase + length
        carry = ended if ended < bar else None
        end = max(end, start + length)
    return beats, downbeats, end


def offsets_to_seconds(pm, offsets) -> np.ndarray:
    """Quarter-note offsets to seconds through a PrettyMIDI object's tempo map."""
    res = pm.resolution
    return np.array([pm.tick_to_time(int(round(float(q) * res))) for q in offsets], dtype=float)


def score_timing(score, pm) -> ScoreTiming:
    """Exact beats and downbeats of `score` as played by `pm` (the MIDI written from it)."""
    beats, downbeats, end = score_beat_offsets(score)
    times, qpm = pm.get_tempo_changes()
    sigs = [(float(t.time), f"{t.numerator}/{t.denominator}") for t in pm.time_signature_changes]
    return ScoreTiming(
        beats=offsets_to_seconds(pm, beats),
        downbeats=offsets_to_seconds(pm, downbeats),
        end=float(offsets_to_seconds(pm, [end])[0]),
        time_signatures=sigs,
        tempi=[(float(t), float(q)) for t, q in zip(times, qpm)],
    )


def write_beats_file(path: Path, timing: ScoreTiming) -> Path:
    """``time<TAB>beat-in-bar`` per line (1 = downbeat, 0 = position unknown), the format `load_reference_beats` reads."""
    down = set(np.round(timing.downbeats, 6))
    lines, count = [], 0
    for t in timing.beats:
        if round(float(t), 6) in down:
            count = 1
        elif count:
            count += 1
        lines.append(f"{t:.6f}\t{count}")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def demo_song(out_path: Path, repeats: int = 2, sample_rate: int = 44100, write_beats: bool = True) -> Path:
    """Write the demo song: a Bach chorale for flute, clarinet, viola and cello, played `repeats` times.

    With `write_beats`, the exact beats go beside it as ``<stem>.beats.txt`` (see `write_beats_file`),
    so a run's cuts on the demo song can be scored against ground truth (`benchmarks.reference_beats`).
    """
    import soundfile as sf
    from music21 import corpus

    score = corpus.parse(DEMO_PIECE)
    pm = score_to_midi(score, DEMO_PROGRAMS)
    timing = score_timing(score, pm)
    once = render_midi(pm, sample_rate, tail_seconds=0.0)
    gap = np.zeros((int(0.5 * sample_rate), 2), dtype=np.float32)
    audio = np.concatenate([np.concatenate([once, gap])] * repeats + [np.zeros((sample_rate, 2), np.float32)])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.part.wav")
    sf.write(tmp, audio, sample_rate, subtype="PCM_16")
    tmp.replace(out_path)
    if write_beats:
        period = (len(once) + len(gap)) / sample_rate
        parts = [timing.shifted(k * period) for k in range(repeats)]
        whole = ScoreTiming(
            np.concatenate([p.beats for p in parts]), np.concatenate([p.downbeats for p in parts]), parts[-1].end
        )
        write_beats_file(out_path.with_name(out_path.stem + ".beats.txt"), whole)
    return out_path
