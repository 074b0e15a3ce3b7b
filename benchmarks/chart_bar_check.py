"""Where each Frets on Fire chart's bar lines are, from evidence that owes nothing to soundsight's tracker.

    .venv/bin/python -m benchmarks.chart_bar_check --stems DIR [--markdown OUT.md]

The segmentation benchmark takes a chart's bar lines from tick 0 in 4/4 (the MIDI files carry the
sequencer's default 4/4 time signature and no markers). This prints, per chart under DIR (Debian's
``fretsonfire-songs-sectoid`` and ``fretsonfire-songs-muldjord``), for each of the four beat
positions of those tick-0 bars:

- *chart*: the beat of the first expert note; per bar, the position of its longest note that
  starts on a beat (a charter holds notes over strong beats); notes starting a chord on a beat;
- *backing stem* (``song.ogg``, drums + bass + rhythm guitar, no lead): the kick's energy rise
  (log power below 120 Hz over the 70 ms after the beat against the 70 ms before), and the chord
  change (cosine distance of CQT chroma over the beat after against the beat before), each as a
  z score per position and Welch's t of position 2 against position 1, with the number of
  32-beat blocks each position wins.

A chart whose tick-0 bars are right has position 1 ahead on each (position 3 second in the
chart's note lengths). `reference_beats.CHART_BAR_SHIFT` records the charts where they are not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import reference_beats as R  # noqa: E402
from soundsight.media import ANALYSIS_SAMPLE_RATE as SR  # noqa: E402

HOP = 256
EXPERT = range(96, 101)  # MIDI pitches of a Frets on Fire chart's expert notes


def chart_votes(chart: Path) -> dict:
    """First expert note's beat; per position of the tick-0 bars: bars won by their longest note, chord starts."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(chart))
    res = pm.resolution
    notes = [n for inst in pm.instruments for n in inst.notes if n.pitch in EXPERT]
    starts: dict[int, list[int]] = {}
    for n in notes:
        t0 = pm.time_to_tick(n.start)
        starts.setdefault(t0, []).append(pm.time_to_tick(n.end) - t0)
    longest: dict[int, tuple[int, int]] = {}
    chords = np.zeros(4, dtype=int)
    for t0, lengths in starts.items():
        if t0 % res:
            continue
        bar, pos = divmod(t0 // res, 4)
        chords[pos] += len(lengths) > 1
        if max(lengths) >= res // 2 and max(lengths) > longest.get(bar, (0, 0))[0]:
            longest[bar] = (max(lengths), pos)
    return dict(
        first=min(starts) / res if starts else np.nan,
        longest=np.bincount([p for _, p in longest.values()], minlength=4),
        chords=chords,
    )


def audio_cues(folder: Path) -> dict:
    """Per position of the chart's tick-0 bars on the backing stem: kick rise and chord change (z, t, blocks won)."""
    import librosa
    import pretty_midi
    from scipy import stats

    pm = pretty_midi.PrettyMIDI(str(folder / "notes.mid"))
    back = librosa.load(str(folder / "song.ogg"), sr=SR, mono=True)[0]
    lead = librosa.load(str(folder / "guitar.ogg"), sr=SR, mono=True)[0]
    n = min(len(back), len(lead))
    back, lead = back[:n], lead[:n]
    onsets = R.chart_grid(folder / "notes.mid")[2]
    lag, _ = R.chart_offset(onsets, back + lead, SR)
    last = pm.time_to_tick(float(onsets[-1]))
    beats = np.array([pm.tick_to_time(t) for t in range(0, last + 1, pm.resolution)]) + lag
    pos = np.arange(len(beats)) % 4
    keep = (beats > 0.5) & (beats < n / SR - 1.0)
    beats, pos = beats[keep], pos[keep]
    frames = np.round(beats * SR / HOP).astype(int)
    spec = np.abs(librosa.stft(back, n_fft=2048, hop_length=HOP))
    low = (spec[librosa.fft_frequencies(sr=SR, n_fft=2048) < 120] ** 2).sum(0)
    w = int(0.07 * SR / HOP)
    rise = np.array([np.log((low[i : i + w].mean() + 1e-9) / (low[max(0, i - w) : i].mean() + 1e-9)) for i in frames])
    chroma = librosa.feature.chroma_cqt(y=back, sr=SR, hop_length=HOP)
    pw = int(np.median(np.diff(beats)) * SR / HOP)

    def change(i: int) -> float:
        a, b = chroma[:, i : i + pw].mean(1), chroma[:, max(0, i - pw) : i].mean(1)
        return 1.0 - float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)

    out = {}
    for name, x in (("kick", rise), ("chord", np.array([change(i) for i in frames]))):
        z = (x - x.mean()) / (x.std() + 1e-9)
        blocks = np.arange(len(z)) // 32
        won = [int(np.argmax([z[(blocks == b) & (pos == j)].mean() for j in range(4)])) for b in np.unique(blocks)]
        out[name] = dict(
            z=[float(z[pos == j].mean()) for j in range(4)],
            t=float(stats.ttest_ind(z[pos == 1], z[pos == 0], equal_var=False).statistic),
            won=np.bincount(won, minlength=4),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.segmentation_eval import stem_songs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stems", type=Path, required=True, help="folder with Frets on Fire song folders")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    lines = [
        "| chart | first note (beat) | bars by longest note, pos 1/2/3/4 | chords on pos 1/2/3/4 | "
        "kick rise z, pos 1/2/3/4 | t pos 2 - pos 1 | 32-beat blocks won | chord change z | t pos 2 - pos 1 "
        "| blocks won | bar shift used |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: " / ".join(f"{x:+.2f}" if isinstance(x, float) else str(x) for x in v)  # noqa: E731
    for folder in stem_songs(args.stems):
        song = folder.name.lower().replace(" ", "_")
        c, a = chart_votes(folder / "notes.mid"), audio_cues(folder)
        k, h = a["kick"], a["chord"]
        lines.append(
            f"| {song} | {c['first']:.0f} | {fmt(c['longest'].tolist())} | {fmt(c['chords'].tolist())} | "
            f"{fmt(k['z'])} | {k['t']:+.1f} | {fmt(k['won'].tolist())} | {fmt(h['z'])} | {h['t']:+.1f} | "
            f"{fmt(h['won'].tolist())} | {R.CHART_BAR_SHIFT.get(song, 0)} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
