"""Held-out check: the rendered scores of the segmentation benchmark in other instruments.

    .venv/bin/python -m benchmarks.orchestration_check [--cache DIR] [--markdown OUT.md] [piano strings ...]

The tracker was tuned on `benchmarks.segmentation_eval`'s set (each score in its own
instruments). Here every part of the same ten scores is played by one other General MIDI
instrument (``ORCHESTRATIONS``: piano, string ensemble, church organ, nylon guitar), with and
without the drum track: other timbres and attacks, the nearest thing to "another soundfont" that
the machine has (pretty_midi's TimGM6mb is its only soundfont). Nothing here was used to choose
a parameter. Reported side by side, per orchestration and group:

- beat F-measure (mir_eval, 70 ms) of the new tracker and of the baselines ``librosa``,
  ``librosa_perc`` and ``plp`` (`segmentation_eval.baseline_beats`), and new / best baseline;
- every piece where the new tracker loses more than 0.05 F to the best baseline;
- downbeat precision (share of detected downbeats within 70 ms of a true downbeat, on a true
  beat) of the shipped evidence and of the equal-weight sum of the five cues it replaced
  (low, share, chord, bass, loud), both through the same `beats.bars.bars`;
- beat timing: median and 95th percentile of |beat - nearest true beat| (ms, beats within 70 ms
  of one), pooled per orchestration and group, of the shipped tracker and of the same tracker
  with its beats at the half-rise of each attack (``ATTACK_FRACTION`` = 0.5, before
  `beats.attack.attack_onset_shift`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks import segmentation_eval as E
from soundsight.models.audio.beats import attack, bars, cues, track_beats
from soundsight.models.base import BeatGrid

ORCHESTRATIONS = {"piano": 0, "strings": 48, "organ": 19, "guitar": 24}  # General MIDI programs
BEFORE_CUES = ("low", "share", "chord", "bass", "loud")  # the downbeat evidence before cue weighting


def rendered(cache: Path, spec: E.Spec, orchestra: str, drums: bool) -> tuple[np.ndarray, dict]:
    """Mono audio at `E.SR` and its exact beats/downbeats (cached as wav + json)."""
    program = ORCHESTRATIONS[orchestra]
    other = dataclasses.replace(spec, programs=tuple(program for _ in (spec.programs or (0,))))
    return E._cached(cache, f"orch-{orchestra}-{spec.name}_{int(drums)}", lambda: E._render(other, drums))


def before_downbeats(y: np.ndarray, grid: BeatGrid) -> np.ndarray:
    """Downbeats (bool per beat) from the equal-weight sum of `BEFORE_CUES`."""
    terms = bars.downbeat_terms(cues.compute_cues(cues.analysis_audio(y, E.SR)), grid.beats)
    evidence = sum(terms[k] for k in BEFORE_CUES)
    return bars.bars((evidence - evidence.mean()) / (evidence.std() + 1e-9))[1]


def beat_offsets(grid_beats: np.ndarray, beats: np.ndarray) -> list[float]:
    """|grid beat - nearest true beat| in ms, for the grid beats within 70 ms of one."""
    if len(grid_beats) == 0 or len(beats) == 0:
        return []
    off = np.min(np.abs(grid_beats[:, None] - beats[None, :]), axis=1) * 1e3
    return off[off <= 70.0].tolist()


def pooled_offsets(rows: list[dict], key: str) -> np.ndarray:
    """All rows' beat offsets under `key` (ms) in one array; NaN alone when there are none."""
    return np.concatenate([r[key] for r in rows] + [[np.nan]])


def half_rise_beats(y: np.ndarray) -> np.ndarray:
    """The tracker's beats with ``ATTACK_FRACTION`` = 0.5 (the attack read at its half-rise)."""
    saved, attack.ATTACK_FRACTION = attack.ATTACK_FRACTION, 0.5
    try:
        return track_beats(y, E.SR).beats
    finally:
        attack.ATTACK_FRACTION = saved


def baseline_f(cache: Path, key: str, y: np.ndarray, beats: np.ndarray) -> dict[str, float]:
    import mir_eval

    path = cache / "grids" / f"orch-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = {name: float(mir_eval.beat.f_measure(beats, E.baseline_beats(name, y))) for name in E.BASELINES}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def run(cache: Path, orchestras: list[str]) -> list[dict]:
    import mir_eval

    rows = []
    for orchestra in orchestras:
        for spec in E.PIECES + E.EXTRA:
            for drums in (True, False):
                y, info = rendered(cache, spec, orchestra, drums)
                beats, downbeats = np.array(info["beats"]), np.array(info["downbeats"])
                key = f"{orchestra}-{spec.name}{'+dr' if drums else ''}"
                grid = track_beats(y, E.SR)
                shipped = np.isin(grid.beats, grid.downbeats)
                row = dict(
                    orchestra=orchestra,
                    item=key,
                    group="drums" if drums else "no drums",
                    new=float(mir_eval.beat.f_measure(beats, grid.beats)),
                    confidence=grid.confidence,
                    down_new=E.downbeat_precision(grid.beats[shipped], downbeats),
                    down_before=E.downbeat_precision(grid.beats[before_downbeats(y, grid)], downbeats),
                    offsets=beat_offsets(grid.beats, beats),
                    offsets_half=beat_offsets(half_rise_beats(y), beats),
                    **baseline_f(cache, key, y, beats),
                )
                rows.append(row)
                print(
                    f"  {key}: new {row['new']:.2f} " + " ".join(f"{b} {row[b]:.2f}" for b in E.BASELINES),
                    file=sys.stderr,
                )
    return rows


def report(rows: list[dict]) -> str:
    text = "| orchestra | group | items | new F | librosa | librosa_perc | plp | new / best baseline | "
    text += "downbeat precision (shipped) | (equal-weight cues) | beat timing ms, median / p95 | (at the half-rise) |\n"
    text += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    for orchestra in dict.fromkeys(r["orchestra"] for r in rows):
        for group in ("drums", "no drums"):
            sel = [r for r in rows if r["orchestra"] == orchestra and r["group"] == group]
            if not sel:
                continue

            def mean(k: str, sel=sel) -> float:
                return float(np.mean([r[k] for r in sel]))

            def timing(k: str, sel=sel) -> str:
                off = pooled_offsets(sel, k)
                return f"{np.nanmedian(off):.1f} / {np.nanpercentile(off, 95):.1f}"

            best = max(mean(b) for b in E.BASELINES)
            text += (
                f"| {orchestra} | {group} | {len(sel)} | {mean('new'):.3f} | {mean('librosa'):.3f} | "
                f"{mean('librosa_perc'):.3f} | {mean('plp'):.3f} | {mean('new') / best:.2f} | "
                f"{mean('down_new'):.2f} | {mean('down_before'):.2f} | {timing('offsets')} | {timing('offsets_half')} |\n"
            )
    for group in ("drums", "no drums"):
        sel = [r for r in rows if r["group"] == group]
        if sel:
            new, half = pooled_offsets(sel, "offsets"), pooled_offsets(sel, "offsets_half")
            text += (
                f"\nBeat timing, all {group} renders: median |beat - true beat| {np.nanmedian(new):.1f} ms "
                f"(half-rise {np.nanmedian(half):.1f} ms, ratio {np.nanmedian(new) / np.nanmedian(half):.2f}); "
                f"within 20 ms {np.nanmean(new <= 20.0):.0%} (half-rise {np.nanmean(half <= 20.0):.0%})\n"
            )
    losses = [r for r in rows if r["new"] < max(r[b] for b in E.BASELINES) - 0.05]
    text += f"\nPieces losing more than 0.05 F to the best baseline: {len(losses)} of {len(rows)}\n\n"
    for r in losses:
        text += (
            f"- {r['item']}: new {r['new']:.2f} (confidence {r['confidence']:.2f}); "
            + ", ".join(f"{b} {r[b]:.2f}" for b in E.BASELINES)
            + "\n"
        )
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("orchestras", nargs="*", metavar="ORCHESTRA", help=f"any of {list(ORCHESTRATIONS)} (default: all)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "soundsight-segeval")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.orchestras) - set(ORCHESTRATIONS))
    if unknown:
        ap.error(f"unknown orchestra {unknown}; choose from {list(ORCHESTRATIONS)}")
    t0 = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = run(args.cache, args.orchestras or list(ORCHESTRATIONS))
    text = f"## Held-out orchestrations ({date.today().isoformat()})\n\n" + report(rows)
    text += f"\n_{len(rows)} renders, run took {time.perf_counter() - t0:.0f} s._\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
