"""Real music with no audio file: public-domain scores rendered through a General MIDI soundfont.

music21's corpus supplies the scores, pretty_midi ships the `TimGM6mb.sf2` soundfont and
tinysoundfont renders with it - all pip packages, all offline. Used by `soundsight render --demo`
and by the segmentation benchmark, which needs audio whose beats are known exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

DEMO_PIECE = "bach/bwv66.6"
# Chorale voices -> General MIDI programs (flute, clarinet, viola, cello).
DEMO_PROGRAMS = (73, 71, 41, 42)


def soundfont_path() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def score_to_midi(score, programs: tuple[int, ...] = ()) -> "pretty_midi.PrettyMIDI":  # noqa: F821
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


def demo_song(out_path: Path, repeats: int = 2, sample_rate: int = 44100) -> Path:
    """Write the demo song: a Bach chorale for flute, clarinet, viola and cello, played `repeats` times."""
    import soundfile as sf
    from music21 import corpus

    score = corpus.parse(DEMO_PIECE)
    pm = score_to_midi(score, DEMO_PROGRAMS)
    once = render_midi(pm, sample_rate, tail_seconds=0.0)
    gap = np.zeros((int(0.5 * sample_rate), 2), dtype=np.float32)
    audio = np.concatenate([np.concatenate([once, gap])] * repeats + [np.zeros((sample_rate, 2), np.float32)])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.part.wav")
    sf.write(tmp, audio, sample_rate, subtype="PCM_16")
    tmp.replace(out_path)
    return out_path
