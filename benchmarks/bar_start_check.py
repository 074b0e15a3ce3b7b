"""Bar lines of real songs that do not start on one: excerpts cut 0-3 beats before a bar line.

    .venv/bin/python -m benchmarks.bar_start_check [--markdown OUT.md]

`beats.bars.bars` may let a song's start settle 4/4's half-bar question (`beats.bars._start_anchored`:
music starts on a bar line or one beat before it), but only where no downbeat cue marks the bars
with certainty (`beats.bars.song_bars`). The real songs of `benchmarks.segmentation_eval` all start on
a bar line, so that rule never had to hold back on them; here each of the four charted songs is
cut into excerpts (30 and 60 s, from about 40 s and 90 s in) that start 0, 1, 2 or 3 beats
before a chart bar line, and the share of detected downbeats within 70 ms of a chart downbeat is
printed for three variants side by side:

- ``shipped``: `track_beats` as it is;
- ``always``: the start anchor whatever the cues (the rule without its guard);
- ``never``: no start anchor (the Viterbi's bar lines as they come).

An excerpt starting 2 or 3 beats before a bar line is where the anchor can only do harm; the
shipped guard must keep ``never``'s figures there.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks import segmentation_eval as E
from soundsight.models.audio.beats import bars, track_beats

STARTS = (40.0, 90.0)  # seconds into the song, near where each excerpt starts
LENGTHS = (30.0, 60.0)  # excerpt seconds
VARIANTS = ("shipped", "always", "never")


def excerpt_precision(y: np.ndarray, offset: float, downbeats: np.ndarray, variant: str) -> float:
    """`E.downbeat_precision` of the excerpt `y` starting `offset` seconds into the song, under `variant`."""
    shipped = bars.bars
    if variant != "shipped":
        bars.bars = lambda evidence, meters=(3, 4), switch=None, anchor=True: shipped(
            evidence, meters, switch, anchor=variant == "always"
        )
    try:
        grid = track_beats(y, E.SR)
    finally:
        bars.bars = shipped
    return E.downbeat_precision(grid.downbeats + offset, downbeats)


def run() -> dict[tuple[str, int], list[float]]:
    """{(variant, beats before the bar line): [precision per excerpt]} over songs, starts and lengths."""
    rows: dict[tuple[str, int], list[float]] = {}
    for song in E.REAL:
        item = E.real_item(song)
        if item is None:
            continue
        is_down = np.isin(np.round(item.beats, 6), np.round(item.downbeats, 6))
        down_index = np.flatnonzero(is_down)
        for start in STARTS:
            k = int(down_index[np.searchsorted(down_index, int(np.argmin(np.abs(item.beats - start))))])
            for before in range(4):
                t0 = float(item.beats[k - before]) - 0.05
                for length in LENGTHS:
                    y = item.audio[int(t0 * E.SR) : int((t0 + length) * E.SR)]
                    for variant in VARIANTS:
                        rows.setdefault((variant, before), []).append(excerpt_precision(y, t0, item.downbeats, variant))
    return rows


def report(rows: dict[tuple[str, int], list[float]]) -> str:
    lines = [
        "| beats before the bar line | excerpts | " + " | ".join(VARIANTS) + " |",
        "|---|---|" + "---|" * len(VARIANTS),
    ]
    for before in range(4):
        n = len(rows.get(("shipped", before), []))
        cells = [f"{np.mean(rows[(v, before)]):.2f}" for v in VARIANTS]
        lines.append(f"| {before} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run()
    text = f"## Real excerpts that start off a bar line ({date.today().isoformat()})\n\n"
    text += "Mean share of detected downbeats on a chart downbeat.\n\n" + report(rows)
    text += f"\n_{len(rows.get(('shipped', 0), [])) * 4} excerpts, run took {time.perf_counter() - t0:.0f} s._\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
