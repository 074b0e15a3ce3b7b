"""Lyrics with a real Whisper: word error rate, word-onset error, invented words, CPU cost.

    nice -n 10 .venv/bin/python -m benchmarks.lyrics_real [--model ID] [--quick] [--parts lines,song,instrumentals]

The model is the lyrics stage's (``lyrics.model``; empty: the packaged tiny.en), on CPU, int8, loaded
with 2 threads; everything else runs through the product's own code and decoding settings.

Parts, each printed as a markdown table:

1. ``lines``: espeak-ng lines with exact word onsets (`benchmarks.sung_lines`: per-word synthesis),
   spoken and "sung" (melody, held notes, 80 and 120 BPM), four voices: 12 lines of 8-10 words. Each
   alone and placed 1 s into a 30 s-in excerpt of a shared instrumental at 0, -6 and -12 dB (the
   voice's level over its active samples against the music's over the same samples), transcribed
   whole (`transcribe`, language en). WER = word edits (Levenshtein over `normalise`d words; a word
   counts as right when it is the word sung and heard within 3 s of it) / words sung; onset error =
   |transcribed start - true start| over the right words on one optimal alignment path: median,
   90th percentile, and the median without each line's first word.
2. ``song``: a 90 s song, 8 of those lines (speech and sung, four voices) every 11 s over feelings.ogg
   from 30 s, alone and at 0, -6, -12 dB, through the stage's `find_lyrics` as ``soundsight render``
   runs it (``lyrics.mode=auto``: the vocal check decides, and Whisper hears the segments it calls
   vocal; segments of 6 s here, where the flow's are 4-8 s long on the beat), the same without the
   check's Silero cue (``lyrics.silero_vad=false``), and with ``lyrics.mode=always`` (the whole song):
   WER, onset error, CPU seconds per song minute.
3. ``instrumentals``: every shared instrumental track, whole, in 6 s segments, through `find_lyrics` in
   the same three ways: the words Whisper writes where no one sings, and CPU seconds per minute.

CPU seconds are this process's user + system time (`resource.getrusage`), all threads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import sung_lines as S
from soundsight.models.lyrics.align import normalise
from soundsight.models.lyrics.song import find_lyrics
from soundsight.models.lyrics.vocals import vocal_activity
from soundsight.models.lyrics.whisper import load_whisper, transcribe
from soundsight.schemas import Segment
from soundsight.settings import LyricsSettings

ROOT = Path(__file__).resolve().parent.parent
MUSIC = ROOT.parent / "shared" / "music"
INSTRUMENTALS = [
    "celtic.ogg",
    "war_of_freedom.ogg",
    "escape_from_chaosland.ogg",
    "feelings.ogg",
    "metal_madness.ogg",
    "digital_pursuit.ogg",
    "elvish_theme.ogg",
    "urban_bolero.ogg",
    "warzone_aftermath_track26.opus",
]
BEDS = INSTRUMENTALS[:-1]  # the long ambient track only in part 3
LEVELS = [None, 0.0, -6.0, -12.0]  # dB of voice over music; None: the voice alone
STAGE_RATE = 22_050  # Hz: what the lyrics stage receives from the load stage
THREADS = 2
NEAR_S = 3.0  # seconds: a word heard further than this from where it is sung is not right
# The stage's settings compared (label -> LyricsSettings fields): the product's default, the vocal
# check without its Silero cue, and Whisper forced over the whole song.
VARIANTS: dict[str, dict] = {
    "auto": {},
    "auto, no Silero": {"silero_vad": False},
    "always": {"mode": "always"},
}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def level_name(level: float | None) -> str:
    return "alone" if level is None else f"{level:+g} dB"


def words_of(text: str) -> list[str]:
    return [t for t in (normalise(w) for w in text.split()) if t]


def alignment(
    ref: list[str], ref_times: list[float], hyp: list[str], hyp_times: list[float]
) -> tuple[int, list[tuple[int, int]]]:
    """Word edits and the (reference, hypothesis) index pairs of right words on one optimal path.

    A word is right when it is the word sung and heard within `NEAR_S` of where it is sung (a "the"
    heard 20 s away is a substitution, not a match).
    """
    n, m = len(ref), len(hyp)
    same = [[ref[i] == hyp[j] and abs(ref_times[i] - hyp_times[j]) <= NEAR_S for j in range(m)] for i in range(n)]
    d = np.zeros((n + 1, m + 1), dtype=int)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (not same[i - 1][j - 1]))
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (not same[i - 1][j - 1]):
            if same[i - 1][j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(d[n, m]), pairs[::-1]


def score(ref: list[str], onsets: list[float], first: set[int], words: list[dict]) -> dict:
    """Edits, matches and onset errors (seconds) of transcribed `words` against the sung words."""
    hyp = [(t, w["start"]) for w in words for t in words_of(w["text"])]
    edits, pairs = alignment(ref, onsets, [t for t, _ in hyp], [t for _, t in hyp])
    errors = [abs(hyp[j][1] - onsets[i]) for i, j in pairs]
    later = [abs(hyp[j][1] - onsets[i]) for i, j in pairs if i not in first]
    return {"words": len(ref), "edits": edits, "matched": len(pairs), "onset_errors": errors, "later_errors": later}


def summary_row(label: str, rows: list[dict], extra: str = "") -> str:
    words = sum(r["words"] for r in rows)
    errors = [e for r in rows for e in r["onset_errors"]]
    later = [e for r in rows for e in r["later_errors"]]

    def ms(values, q=50):
        return f"{1000 * np.percentile(values, q):.0f} ms" if values else "—"

    wer = sum(r["edits"] for r in rows) / words
    matched = sum(r["matched"] for r in rows)
    return f"| {label} | {wer:.2f} | {matched}/{words} | {ms(errors)} | {ms(errors, 90)} | {ms(later)} |{extra}"


# ----------------------------------------------------------------------------------------- lines


def line_set(quick: bool) -> list[S.Line]:
    lines, k = [], 0
    for voice in S.VOICES[:2] if quick else S.VOICES:
        for tempo in (None, 80.0, 120.0):
            text = S.LINES[k % len(S.LINES)]
            k += 1
            lines.append(S.spoken(text, voice) if tempo is None else S.sung(text, voice, tempo, key=k % 5))
    return lines


def run_lines(loaded, lines: list[S.Line]) -> list[dict]:
    rows = []
    for n, line in enumerate(lines):
        bed_name = BEDS[n % len(BEDS)]
        bed = S.load_bed(MUSIC / bed_name, 30.0, 2.0 + len(line.audio) / S.SR + 1.0)
        ref = words_of(line.text)
        for level in LEVELS:
            y = S.mix(line.audio, bed, level, at=1.0)
            words, _, _ = transcribe(loaded, y, S.SR, [(0.0, len(y) / S.SR)], language="en")
            row = score(ref, [1.0 + t for t in line.onsets], {0}, words)
            row.update(style=line.label, voice=line.voice, bed=bed_name, level=level_name(level))
            row["heard"] = " ".join(w["text"] for w in words)
            rows.append(row)
            print(f"  {line.label:<14} {line.voice:<18} {row['level']:>7}: {row['edits']}/{len(ref)} «{row['heard']}»")
    return rows


def lines_table(rows: list[dict]) -> str:
    out = [
        "| line, level | WER | words matched | median onset error | p90 | median without first words |",
        "|---|---|---|---|---|---|",
    ]
    for level in map(level_name, LEVELS):
        at = [r for r in rows if r["level"] == level]
        out.append(summary_row(f"**{level}**", at))
        for style in sorted({r["style"] for r in at}):
            out.append(summary_row(f"&nbsp;&nbsp;{style}", [r for r in at if r["style"] == style]))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ song


def make_song() -> tuple[np.ndarray, np.ndarray, list[str], list[float], set[int]]:
    """(voice, bed) at `S.SR` and the words, onsets and line-first word indices of a 90 s song."""
    bed = S.load_bed(MUSIC / "feelings.ogg", 30.0, 90.0)
    voice = np.zeros_like(bed)
    ref, onsets, first = [], [], set()
    for k, tempo in enumerate([None, 80.0, None, 120.0] * 2):
        text, who = S.LINES[k % len(S.LINES)], S.VOICES[k % len(S.VOICES)]
        line = S.spoken(text, who) if tempo is None else S.sung(text, who, tempo, key=k)
        t0 = 2.0 + 11.0 * k
        i = int(t0 * S.SR)
        clip = line.audio[: len(voice) - i]
        voice[i : i + len(clip)] += clip
        first.add(len(ref))
        ref += words_of(text)
        onsets += [t0 + t for t in line.onsets]
    return voice, bed, ref, onsets, first


def fixed_segments(duration: float, length: float = 6.0) -> list[Segment]:
    """Segments of `length` seconds (the last one shorter), as the segment stage would hand them on."""
    starts = np.arange(0.0, duration, length)
    return [
        Segment(
            index=i,
            start=float(a),
            end=float(min(duration, a + length)),
            start_frame=round(a * 24),
            end_frame=round(min(duration, a + length) * 24),
            reason="end" if i == len(starts) - 1 else "max_length",
        )
        for i, a in enumerate(starts)
    ]


def run_song() -> list[dict]:
    import librosa

    voice, bed, ref, onsets, first = make_song()
    rows = []
    for level in LEVELS:
        y16 = S.mix(voice, bed, level, at=0.0)[: len(bed)]
        y = librosa.resample(y16, orig_sr=S.SR, target_sr=STAGE_RATE)
        minutes = len(y) / STAGE_RATE / 60
        c0 = cpu_seconds()
        vocal_activity(y, STAGE_RATE)
        check_cpu = cpu_seconds() - c0
        for variant, fields in VARIANTS.items():
            c0 = cpu_seconds()
            lyrics = find_lyrics(y, STAGE_RATE, fixed_segments(len(y) / STAGE_RATE), LyricsSettings(**fields))
            cpu = cpu_seconds() - c0
            words = [w.model_dump() for w in lyrics.words]
            row = score(ref, onsets, first, words)
            row.update(level=level_name(level), variant=variant, source=lyrics.source, note=lyrics.note)
            row.update(vocal_share=lyrics.vocals.active_fraction, runs=bool(lyrics.model))
            row.update(cpu_per_min=cpu / minutes, check_cpu_per_min=check_cpu / minutes, heard=len(words))
            rows.append(row)
            print(f"  song {row['level']:>7} {variant:<16}: {row['edits']}/{len(ref)} edits, {cpu:.1f} CPU s")
    return rows


def song_table(rows: list[dict]) -> str:
    out = [
        "| level, lyrics.mode | vocal share, Whisper runs | WER | words matched | median onset error "
        "| p90 | median without first words | stage CPU s per song minute (weight-free check alone) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gate = f"{r['vocal_share']:.2f}, {'yes' if r['runs'] else 'no'}"
        label = f"{r['level']}, {r['variant']}"
        extra = f" {r['cpu_per_min']:.1f} ({r['check_cpu_per_min']:.1f}) |"
        row = summary_row(label, [r], extra)
        out.append(row.replace(f"| {label} |", f"| {label} | {gate} |", 1))
    return "\n".join(out)


# --------------------------------------------------------------------------------- instrumentals


def run_instrumentals(max_seconds: float | None) -> list[dict]:
    import librosa

    rows = []
    for name in INSTRUMENTALS:
        y, _ = librosa.load(str(MUSIC / name), sr=STAGE_RATE, mono=True, duration=max_seconds)
        minutes = len(y) / STAGE_RATE / 60
        row = {"song": name, "seconds": round(len(y) / STAGE_RATE, 1)}
        for variant, fields in VARIANTS.items():
            c0 = cpu_seconds()
            lyrics = find_lyrics(y, STAGE_RATE, fixed_segments(len(y) / STAGE_RATE), LyricsSettings(**fields))
            cpu = cpu_seconds() - c0
            row[variant] = {
                "words": len(lyrics.words),
                "text": " ".join(w.text for w in lyrics.words)[:160],
                "cpu_per_min": cpu / minutes,
                "vocal_share": lyrics.vocals.active_fraction,
                "gate": lyrics.vocals.track_gate,
                "speech_windows": lyrics.vocals.speech_windows,
            }
        rows.append(row)
        counts = ", ".join(f"{variant} {row[variant]['words']}" for variant in VARIANTS)
        print(f"  {name:<32} words: {counts}: «{row['always']['text']}»")
    return rows


def instrumentals_table(rows: list[dict]) -> str:
    out = [
        "| track | seconds | vocal share: weight-free (+ Silero) | words: auto | auto, no Silero | always "
        "| what it hears (always) | stage CPU s per min: auto, always |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, n, w = r["auto"], r["auto, no Silero"], r["always"]
        text = f"«{w['text'][:60]}{'…' if len(w['text']) > 60 else ''}»" if w["text"] else ""
        out.append(
            f"| {r['song']} | {r['seconds']:g} | {n['vocal_share']:.3f} ({a['vocal_share']:.3f}) | {a['words']} "
            f"| {n['words']} | {w['words']} | {text} | {a['cpu_per_min']:.1f}, {w['cpu_per_min']:.1f} |"
        )
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="", help="lyrics.model (empty: the packaged tiny.en)")
    ap.add_argument("--parts", default="lines,song,instrumentals")
    ap.add_argument("--quick", action="store_true", help="2 voices, 60 s of each instrumental")
    ap.add_argument(
        "--json", type=Path, default=None, help="raw results (default benchmarks/logs/lyrics_real-DATE.json)"
    )
    args = ap.parse_args(argv)
    parts = args.parts.split(",")

    started = datetime.datetime.now().astimezone()
    print(f"# benchmarks/lyrics_real.py, {started:%Y-%m-%d %H:%M %Z}")
    print(f"command: {' '.join([Path(sys.executable).name, '-m', 'benchmarks.lyrics_real', *(argv or sys.argv[1:])])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}")
    c0, t0 = cpu_seconds(), time.monotonic()
    loaded = load_whisper(args.model, "cpu", "auto", cpu_threads=THREADS)
    print(f"model: {loaded.backend_id} ({loaded.compute_type}, {THREADS} threads)")
    print(f"loaded in {time.monotonic() - t0:.1f} s wall, {cpu_seconds() - c0:.1f} s CPU\n")
    results: dict = {"date": started.isoformat(), "model": loaded.backend_id, "machine": platform.machine()}

    if "lines" in parts:
        print("## lines")
        rows = run_lines(loaded, line_set(args.quick))
        results["lines"] = rows
        print("\n" + lines_table(rows) + "\n")
    if "song" in parts:
        print("## song (90 s, 8 lines over feelings.ogg)")
        rows = run_song()
        results["song"] = rows
        print("\n" + song_table(rows) + "\n")
    if "instrumentals" in parts:
        print("## instrumentals")
        rows = run_instrumentals(60.0 if args.quick else None)
        results["instrumentals"] = rows
        print("\n" + instrumentals_table(rows) + "\n")
    out = args.json or ROOT / "benchmarks" / "logs" / f"lyrics_real-{started:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"raw results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
