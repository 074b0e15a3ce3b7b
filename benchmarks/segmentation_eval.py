"""Segmentation benchmark: where do the cuts land relative to the true beats?

    .venv/bin/python -m benchmarks.segmentation_eval [--cache DIR] [--markdown OUT.md] [--quick]

Ground truth
------------
*Exact*: public-domain scores from music21's corpus rendered with pretty_midi's General MIDI
soundfont (tinysoundfont). Beats and downbeats come from the score's measures (the time
signature's beat: a quarter in 4/4 and 3/4, a dotted quarter in 6/8 and 12/8; pickup bars by
their bar phase) mapped to seconds through the MIDI file's tempo map (`models.midi_synth`).
Every piece is rendered twice: as written ("no drums") and with a drum track programmatically
placed on the score's beats (kick on downbeats, snare on the other beats, hi-hat on all).
The set covers 4/4, 3/4, 12/8, 6/8, pickups, a tempo change (100 -> 76 -> 120 BPM) and a
medley of three pieces with known section boundaries (different meter, key, tempo, instruments).

*Silver*: `war_of_freedom.ogg` with its Frets on Fire chart `war_of_freedom.chart.mid`
(constant 140 BPM). The chart's beat grid is in chart time; its phase against the audio is
found by cross-correlating the chart's note onsets (an impulse train) with the audio's onset
envelope over lags of +-2 s in 2.9 ms steps (`models.beats.chart_offset`); the prominence of
the winning lag (its score over the median score) is printed. The eighth-note riffs make lags
half a beat apart score almost as well, so the phase is checked a second way: the audio's
onset strength on the aligned beats versus half a beat later (printed too). Downbeats assume
4/4 bars from the chart's tick 0 (the chart has no time signature): less certain than the beats.
Cuts outside the chart's span (its last note is at 171 s of 175 s) are not scored.

Modes
-----
The paper's random mode (4-8 s, seeds 0-4 pooled) and rule-based mode (novelty / 12 beats /
7 s), each with and without beat snapping, plus rule-based + snap under Wan 2.1's clip limit
(81 frames at 16 fps = 5.06 s). All with `SegmentSettings` defaults at 24 fps: no threshold is
tuned per piece.

Metrics (per cut = segment start after the first, on the 24 fps frame grid): median and 95th
percentile of |cut - nearest true beat| (ms), share within one frame (41.7 ms), share within
one frame of a true downbeat; the tracker's beat F-measure and AMLt (mir_eval), downbeat
F-measure and its own confidence; segment lengths (5th/50th/95th percentile, min, max).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from soundsight.models.audio import beats as B  # noqa: E402
from soundsight.models.audio.segmenters import plan_segments  # noqa: E402
from soundsight.settings import SegmentSettings  # noqa: E402
from soundsight.tasks import reference_beats as R  # noqa: E402

FPS = 24
SR = B.SR
WAN_CLIP = 81 / 16
MUSIC = ROOT.parent / "shared" / "music"
if not MUSIC.is_dir():
    MUSIC = Path("/work/shared/music")


@dataclass
class Spec:
    name: str
    label: str  # meter and features, for the table
    corpus: str
    number: int | None = None
    programs: tuple[int, ...] = ()
    tempi: tuple[tuple[int, float], ...] = ()  # (measure index, bpm in the meter's beats)
    measures: tuple[int, int] | None = None  # excerpt: measure indices [a, b)
    lead: float = 0.0  # seconds of silence before the music (keeps beats off the 24 fps grid)


PIECES = [
    Spec("chorale44", "4/4, pickup, piano+bass", "bach/bwv66.6", programs=(0, 0, 0, 32), lead=0.137),
    Spec("chorale34", "3/4, pickup, winds+strings", "bach/bwv269", programs=(73, 71, 41, 42), lead=0.213),
    Spec(
        "pastorale128",
        "12/8, pickup, 8 parts",
        "bach/bwv248.23-2",
        programs=(68, 71, 41, 42, 73, 70, 48, 32),
        lead=0.291,
    ),
    Spec("jig68", "6/8, pickup, solo violin", "airdsAirs/book1.abc", 50, (40,), ((0, 100.0),), lead=0.158),
    Spec(
        "tempo44",
        "4/4, pickup, 100->76->120 BPM, harpsichord",
        "bach/bwv48.7",
        programs=(6, 6, 6, 32),
        tempi=((0, 100.0), (6, 76.0), (11, 120.0)),
        lead=0.244,
    ),
]
MEDLEY_LEAD = 0.177
MEDLEY = [  # name, spec: played back to back
    Spec("m1", "", "bach/bwv66.6", programs=(0, 0, 0, 32)),
    Spec("m2", "", "airdsAirs/book1.abc", 50, (40,), ((0, 100.0),), measures=(0, 9)),
    Spec("m3", "", "bach/bwv269", programs=(73, 71, 41, 42), measures=(0, 9)),
]


@dataclass
class Item:
    name: str
    group: str  # drums | no drums | real
    label: str
    audio: np.ndarray  # mono float32 at SR
    beats: np.ndarray
    downbeats: np.ndarray
    sections: list[float]
    note: str = ""


def _render(spec: Spec, drums: bool):
    from soundsight.flows.demo import load_score, render_score, set_tempi

    score = load_score(spec.corpus, spec.number)
    if spec.measures:
        score = score.measures(spec.measures[0], spec.measures[1], indicesNotNumbers=True)
    if spec.tempi:
        set_tempi(score, list(spec.tempi))
    audio, timing = render_score(score, spec.programs, drums=drums, sample_rate=SR)
    return _lead(audio, timing, spec.lead)


def _lead(audio: np.ndarray, timing, seconds: float):
    pad = np.zeros((int(round(seconds * SR)), audio.shape[1]), dtype=audio.dtype)
    return np.concatenate([pad, audio]), timing.shifted(len(pad) / SR)


def _cached(cache: Path, key: str, make) -> tuple[np.ndarray, dict]:
    import soundfile as sf

    wav, meta = cache / f"v2-{key}.wav", cache / f"v2-{key}.json"
    if wav.is_file() and meta.is_file():
        return sf.read(wav, dtype="float32")[0], json.loads(meta.read_text())
    audio, timing = make()
    mono = audio.mean(axis=1).astype(np.float32)
    info = {
        "beats": timing.beats.tolist(),
        "downbeats": timing.downbeats.tolist(),
        "sections": list(timing.sections),
        "tempi": timing.tempi,
        "time_signatures": timing.time_signatures,
    }
    sf.write(wav, mono, SR, subtype="FLOAT")
    meta.write_text(json.dumps(info))
    return mono, info


def build_set(cache: Path, quick: bool = False) -> list[Item]:
    """Render (or reuse) the exact ground-truth set and load the silver one."""
    from soundsight.flows.demo import medley

    cache.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []
    pieces = PIECES[:2] if quick else PIECES
    for drums in (True, False):
        group = "drums" if drums else "no drums"
        for spec in pieces:
            audio, info = _cached(
                cache, f"{spec.name}_{int(drums)}", lambda spec=spec, drums=drums: _render(spec, drums)
            )
            items.append(
                Item(
                    f"{spec.name}{'+dr' if drums else ''}",
                    group,
                    spec.label,
                    audio,
                    np.array(info["beats"]),
                    np.array(info["downbeats"]),
                    [],
                )
            )
        if not quick:
            audio, info = _cached(
                cache,
                f"medley_{int(drums)}",
                lambda drums=drums: _lead(*medley([_render(s, drums) for s in MEDLEY], SR), MEDLEY_LEAD),
            )
            items.append(
                Item(
                    f"medley{'+dr' if drums else ''}",
                    group,
                    "4/4 -> 6/8 -> 3/4 medley",
                    audio,
                    np.array(info["beats"]),
                    np.array(info["downbeats"]),
                    info["sections"],
                )
            )
    song = MUSIC / "war_of_freedom.ogg"
    chart = MUSIC / "war_of_freedom.chart.mid"
    if song.is_file() and chart.is_file() and not quick:
        import librosa

        y, _ = librosa.load(str(song), sr=SR, mono=True)
        beats, downbeats, onsets = R.chart_grid(chart)
        lag, prominence = R.chart_offset(onsets, y, SR)
        beats, downbeats = beats + lag, downbeats + lag
        # Phase check: onset strength on the aligned chart beats vs on the grid half a beat later.
        fine_t, fine = B.fine_onset_envelope(y)
        on = B._grid_salience(beats, fine_t, fine, 0.02) / fine.mean()
        off = B._grid_salience(beats + 0.5 * float(np.median(np.diff(beats))), fine_t, fine, 0.02) / fine.mean()
        dur = len(y) / SR
        items.append(
            Item(
                "war_of_freedom",
                "real",
                "rock/metal, 140 BPM, real recording",
                y,
                beats[(beats >= 0) & (beats <= dur)],
                downbeats[(downbeats >= 0) & (downbeats <= dur)],
                [],
                note=f"chart offset {lag * 1e3:+.1f} ms (cross-correlation peak {prominence:.2f}x the "
                f"median lag score); onset strength on the aligned beats {on:.2f}x the mean, "
                f"half a beat later {off:.2f}x",
            )
        )
    return items


MODES = [
    ("random (paper)", dict(mode="random", beat_snap=False), True),
    ("random + snap", dict(mode="random", beat_snap=True), True),
    ("rule_based (paper)", dict(mode="rule_based", beat_snap=False), False),
    ("rule_based + snap", dict(mode="rule_based", beat_snap=True), False),
    ("rule_based + snap, Wan 5.06 s cap", dict(mode="rule_based", beat_snap=True, max_clip_seconds=WAN_CLIP), False),
]
SEEDS = range(5)


def _nearest(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    if len(grid) == 0:
        return np.full(len(x), np.inf)
    i = np.clip(np.searchsorted(grid, x), 1, max(1, len(grid) - 1))
    lo = grid[np.maximum(i - 1, 0)]
    hi = grid[np.minimum(i, len(grid) - 1)]
    return np.minimum(np.abs(x - lo), np.abs(x - hi))


def evaluate(items: list[Item]) -> dict:
    tracker_rows, cut_rows = [], {m[0]: [] for m in MODES}
    for it in items:
        duration = len(it.audio) / SR
        t0 = time.perf_counter()
        grid = B.track_beats(it.audio, SR)
        t_track = time.perf_counter() - t0
        bar = grid.period * grid.beats_per_bar if len(grid.beats) > 2 else 2.0
        novelty = B.spectral_novelty(it.audio, SR, context_seconds=float(np.clip(bar, 1.5, 4.0)))
        ref_tempo = 60.0 / float(np.median(np.diff(it.beats)))
        m = R.reference_metrics([], grid.beats, grid.downbeats, it.beats, it.downbeats, FPS)
        tracker_rows.append(
            dict(
                item=it.name,
                group=it.group,
                label=it.label,
                ref_bpm=ref_tempo,
                bpm=grid.tempo_bpm,
                level=grid.tempo_level,
                meter=grid.beats_per_bar,
                conf=grid.confidence,
                F=m.get("beat_f_measure", np.nan),
                AMLt=m.get("beat_amlt", np.nan),
                dF=m.get("downbeat_f_measure", np.nan),
                seconds=t_track,
                duration=duration,
                note=it.note,
            )
        )
        for name, kw, seeded in MODES:
            cuts, lengths, reasons, snaps, boundary = [], [], [], [], []
            for seed in SEEDS if seeded else [0]:
                settings = SegmentSettings(**{"seed": seed, **{k: v for k, v in kw.items() if k != "max_clip_seconds"}})
                seg = plan_segments(
                    it.audio,
                    SR,
                    settings,
                    song_hash="bench",
                    fps=FPS,
                    grid=grid,
                    novelty_curve=novelty,
                    max_clip_seconds=kw.get("max_clip_seconds", float("inf")),
                )
                starts = np.array([s.start for s in seg.segments[1:]])
                cuts.append(starts)
                lengths += [s.frames / FPS for s in seg.segments]
                reasons += [s.reason for s in seg.segments[:-1]]
                snaps += [s.snapped_to for s in seg.segments[:-1]]
                if it.sections:
                    boundary.append(float(np.mean(_nearest(np.array(it.sections), starts) <= 0.5)))
            c = np.concatenate(cuts) if cuts else np.zeros(0)
            half = 0.5 * float(np.median(np.diff(it.beats)))  # as reference_metrics: only the annotated span
            c = c[(c >= it.beats[0] - half) & (c <= it.beats[-1] + half)]
            err = _nearest(c, it.beats)
            derr = _nearest(c, it.downbeats)
            cut_rows[name].append(
                dict(
                    item=it.name,
                    group=it.group,
                    err=err,
                    derr=derr,
                    lengths=np.array(lengths),
                    reasons=reasons,
                    snaps=snaps,
                    boundary=boundary,
                    F=m.get("beat_f_measure", np.nan),
                    AMLt=m.get("beat_amlt", np.nan),
                    conf=grid.confidence,
                )
            )
    return dict(tracker=tracker_rows, cuts=cut_rows)


def _fmt_cut_row(label: str, err: np.ndarray, derr: np.ndarray, lengths: np.ndarray, extra: str = "") -> str:
    frame = 1.0 / FPS
    if len(err) == 0:
        return f"| {label} | 0 | - | - | - | - | {extra} |"
    q = np.percentile(lengths, [5, 50, 95])
    return (
        f"| {label} | {len(err)} | {np.median(err) * 1e3:.1f} | {np.percentile(err, 95) * 1e3:.1f} | "
        f"{np.mean(err <= frame + 1e-9):.0%} | {np.mean(derr <= frame + 1e-9):.0%} | "
        f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} ({lengths.min():.2f}-{lengths.max():.2f}) |{extra}"
    )


def report(results: dict) -> str:
    out = []
    out.append("### Beat tracker\n")
    out.append(
        "| item | group | material | true BPM | est. BPM | octave check | meter | beat F | AMLt | downbeat F | confidence | time (s) for audio (s) |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["tracker"]:
        out.append(
            f"| {r['item']} | {r['group']} | {r['label']} | {r['ref_bpm']:.1f} | {r['bpm']:.1f} | {r['level']} | "
            f"{r['meter']} | {r['F']:.2f} | {r['AMLt']:.2f} | {r['dF']:.2f} | {r['conf']:.2f} | "
            f"{r['seconds']:.1f} / {r['duration']:.0f} |"
        )
    notes = [f"{r['item']}: {r['note']}" for r in results["tracker"] if r["note"]]
    rows = results["tracker"]
    if len(rows) > 3:
        from scipy.stats import spearmanr

        rho = spearmanr([r["conf"] for r in rows], [r["F"] for r in rows]).statistic
        notes.append(f"confidence vs beat F-measure over the items: Spearman rho = {rho:.2f}")
    out += ["", *[f"- {n}" for n in notes], ""]
    groups = ["drums", "no drums", "real"]
    summary = []
    for name, _, seeded in MODES:
        rows = results["cuts"][name]
        out.append(f"### {name}{' (seeds 0-4 pooled)' if seeded else ''}\n")
        out.append(
            "| item | cuts | median ms | p95 ms | within 1 frame | on downbeat | length s p5 / p50 / p95 (min-max) | reasons / snapped |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for r in rows:
            reasons = {k: r["reasons"].count(k) for k in sorted(set(r["reasons"]))}
            snapped = sum(1 for s in r["snaps"] if s)
            extra = " " + ", ".join(f"{k} {v}" for k, v in reasons.items())
            extra += f"; snapped {snapped}/{len(r['snaps'])}" if "snap" in name else ""
            if r["boundary"]:
                extra += f"; section boundaries hit (+-0.5 s) {np.mean(r['boundary']):.0%}"
            out.append(_fmt_cut_row(r["item"], r["err"], r["derr"], r["lengths"], extra + " |"))
        for g in groups:
            sel = [r for r in rows if r["group"] == g]
            if not sel:
                continue
            err = np.concatenate([r["err"] for r in sel])
            derr = np.concatenate([r["derr"] for r in sel])
            lengths = np.concatenate([r["lengths"] for r in sel])
            line = _fmt_cut_row(f"**all {g}**", err, derr, lengths, " |")
            out.append(line)
            summary.append((name, g, err, derr))
        out.append("")
    out.append("### Summary: |cut - nearest true beat|\n")
    out.append("| mode | group | cuts | median ms | p95 ms | within 1 frame | on downbeat |")
    out.append("|---|---|---|---|---|---|---|")
    frame = 1.0 / FPS
    for name, g, err, derr in summary:
        out.append(
            f"| {name} | {g} | {len(err)} | {np.median(err) * 1e3:.1f} | {np.percentile(err, 95) * 1e3:.1f} | "
            f"{np.mean(err <= frame + 1e-9):.0%} | {np.mean(derr <= frame + 1e-9):.0%} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "soundsight-segeval")
    ap.add_argument("--markdown", type=Path, help="also write the tables here")
    ap.add_argument("--quick", action="store_true", help="two pieces only (smoke test)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    items = build_set(args.cache, args.quick)
    t1 = time.perf_counter()
    results = evaluate(items)
    t2 = time.perf_counter()
    text = report(results)
    text += (
        f"\n_{len(items)} items, {sum(len(i.audio) for i in items) / SR:.0f} s of audio; set built in {t1 - t0:.0f} s, "
        f"evaluated in {t2 - t1:.0f} s on {platform.machine()} Python {platform.python_version()}._\n"
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
