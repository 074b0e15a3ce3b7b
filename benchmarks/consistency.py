"""One visual identity across scenes: each clip's colours against the run's palette and its neighbours.

    .venv/bin/python benchmarks/consistency.py                      # every song in ../shared/music
    .venv/bin/python benchmarks/consistency.py --songs celtic.ogg --strength 0.5 0.8 1.0
    .venv/bin/python benchmarks/consistency.py --runs runs/celtic-d0f6ece4 [more run folders]

For every clip: its dominant colours (k-means, k = 5, in CIELAB on a fixed pixel sample) and

- palette spread: the share-weighted mean CIEDE2000 from those colours to the nearest colour of
  the run's bible palette (`models.render.palette.palette_distance`);
- neighbour distance: the symmetric mean CIEDE2000 between a clip's dominant colours and the next
  clip's (`set_distance`): how much the look jumps at each cut.

Each is printed with palette matching off and on (`match_palette` at ``--strength``), with the
ratio on / off side by side; the goal is a palette spread at least halved (ratio <= 0.5).

Two sources of clips:

- ``--runs``: rendered runs (a folder with ``bible.json`` and ``scenes/scene_NNN.mp4``, any
  backend): "off" is the clips as rendered, "on" the same clips matched in memory.
- default: the songs themselves, through the embedded pipeline without Prefect (decode, segment,
  feature labels, template writer and its bible, `AnimaticRenderer` at 640x360, 24 fps). The
  animatic draws in the bible's palette by construction, so its own numbers are printed as a
  floor ("animatic"); then every clip gets a seeded random colour drift in CIELAB (hue turned
  40-140 degrees, chroma scaled 0.7-1.4, lightness moved +/-12: what a text-to-video model does to
  a palette it was only told about in words) and "off"/"on" measure the drifted clips before and
  after matching. This mode also times the render stage: wall seconds and CPU seconds (this
  process and its ffmpeg children) per second of song.

Subject similarity between scenes (not run here). Where real weights exist, the same harness would
report how alike the recurring character looks from scene to scene: embed a few frames of every
clip (e.g. 8, evenly spaced) with an image encoder - CLIP ViT-L/14 image features, or DINOv2
ViT-B/14 CLS tokens, which follow object identity more than style - average per clip, and print
the mean cosine similarity of neighbouring clips and of every clip to scene 0, with the bible's
character descriptions fed to CLIP's text tower as a second reference (text-image similarity of
each clip to "<name>, <description>"). The two numbers, consecutive and to-the-first, show drift
within a run; comparing runs with and without the bible (scene prompts from `scene_prompt` vs.
the bare sentences) measures what the bible buys. No CLIP or DINOv2 weights are on this machine
and none are downloaded, so this was not run and no figure for it is claimed.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundsight.models.render.palette import (  # noqa: E402
    _lab_to_rgb,
    dominant_colours,
    match_palette,
    palette_distance,
    palette_lab,
    read_clip,
    rgb_to_lab,
    set_distance,
)
from soundsight.schemas import VisualBible  # noqa: E402

MUSIC = ROOT.parent / "shared" / "music"
MEASURE_SIZE = (160, 90)  # clips are measured at this size, pixels: dominant colours need no detail
MEASURE_EVERY = 3  # and every third frame


def drift(frames: np.ndarray, seed: int) -> np.ndarray:
    """A clip recoloured the way an unconstrained video model drifts: hue, chroma and lightness moved."""
    rng = np.random.default_rng(seed)
    angle = np.deg2rad(rng.uniform(40, 140) * rng.choice([-1, 1]))
    chroma, lift = rng.uniform(0.7, 1.4), rng.uniform(-12, 12)
    lab = rgb_to_lab(frames)
    a, b = lab[..., 1], lab[..., 2]
    lab[..., 1], lab[..., 2] = (
        chroma * (a * np.cos(angle) - b * np.sin(angle)),
        chroma * (a * np.sin(angle) + b * np.cos(angle)),
    )
    lab[..., 0] = np.clip(lab[..., 0] + lift, 0, 100)
    return (_lab_to_rgb(lab) * 255).round().astype(np.uint8)


def measure(clips: list[np.ndarray], palette: np.ndarray) -> tuple[float, float]:
    """(mean palette spread, mean neighbour distance) of a run's clips, CIEDE2000."""
    colours = [dominant_colours(clip) for clip in clips]
    spread = float(np.mean([palette_distance(c, s, palette) for c, s in colours]))
    neighbours = float(np.mean([set_distance(a, b) for a, b in zip(colours, colours[1:])])) if len(clips) > 1 else 0.0
    return spread, neighbours


def matched(clips: list[np.ndarray], bible: VisualBible, strength: float) -> list[np.ndarray]:
    return [match_palette(clip, bible.palette, strength)[0] for clip in clips]


def render_song(song: Path, scratch: Path) -> tuple[VisualBible, list[Path], dict[str, float]]:
    """The embedded pipeline on one song, no Prefect: the bible and one animatic clip per segment."""
    import hashlib

    from soundsight.models.analysis.features import FeatureAnalyser
    from soundsight.models.audio.decode import decode_audio
    from soundsight.models.audio.segmenters import plan_segments
    from soundsight.models.base import SceneJob, ScriptRequest
    from soundsight.models.render.animatic import AnimaticRenderer, palette_roles
    from soundsight.models.script.bible import scene_prompt
    from soundsight.models.script.template import TemplateScriptWriter
    from soundsight.prompts import load_vocabulary
    from soundsight.settings import RenderSettings, SegmentSettings

    sr, render = 22050, RenderSettings()
    y = decode_audio(song, sr)
    song_hash = hashlib.sha256(y.astype(np.float32).tobytes()).hexdigest()
    segmentation = plan_segments(y, sr, SegmentSettings(), song_hash=song_hash, fps=render.fps)
    analysis = FeatureAnalyser(load_vocabulary())(
        y, sr, segmentation.segments, segmentation.tempo_bpm or 120.0, segmentation.beats
    )
    durations = [s.duration for s in segmentation.segments]
    request = ScriptRequest(prompt="", analysis=analysis, durations=durations, song_hash=song_hash, title=song.stem)
    script = TemplateScriptWriter()(request)
    bible = script.bible
    renderer = AnimaticRenderer(render.fps)
    palette_roles(bible)  # import scikit-image before the clock starts, as a warm worker would have

    clips = []
    wall, cpu_self, cpu_children = (
        time.perf_counter(),
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    for segment, scene in zip(segmentation.segments, script.scenes):
        job = SceneJob(
            index=segment.index,
            prompt=scene_prompt(scene.description, bible),
            caption=scene.description,
            negative_prompt=render.negative_prompt,
            seed=segment.index,
            seconds=segment.duration,
            frames=segment.frames,
            fps=render.fps,
            width=render.width,
            height=render.height,
            audio=y[int(round(segment.start * sr)) : int(round(segment.end * sr))],
            sample_rate=sr,
            bible=bible,
            beat_times=tuple(b - segment.start for b in segment.beats),
            start_seconds=segment.start,
        )
        out = scratch / f"{song.stem}_scene_{segment.index:03d}.mp4"
        renderer(job, out)
        clips.append(out)
    wall = time.perf_counter() - wall
    end_self, end_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {
        "self": end_self.ru_utime + end_self.ru_stime - cpu_self.ru_utime - cpu_self.ru_stime,
        "ffmpeg": end_children.ru_utime + end_children.ru_stime - cpu_children.ru_utime - cpu_children.ru_stime,
    }
    return bible, clips, {"duration": segmentation.duration, "wall": wall, "scenes": len(clips), **cpu}


def load(paths: list[Path]) -> list[np.ndarray]:
    return [read_clip(path, size=MEASURE_SIZE)[0][::MEASURE_EVERY] for path in paths]


def row(name: str, off: tuple[float, float], on: tuple[float, float]) -> str:
    return (
        f"{name:<28} {off[0]:7.2f} {on[0]:7.2f} {on[0] / max(off[0], 1e-9):6.2f}   "
        f"{off[1]:7.2f} {on[1]:7.2f} {on[1] / max(off[1], 1e-9):6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", nargs="*", help="songs under ../shared/music (default: all) or paths")
    parser.add_argument("--runs", nargs="*", type=Path, help="rendered run folders (bible.json + scenes/)")
    parser.add_argument(
        "--strength", type=float, nargs="+", default=[0.8, 1.0], help="palette matching strengths, 0..1 (one row each)"
    )
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores; {date.today()}")
    print(f"palette matching strengths {args.strength}; dominant colours: k-means k=5 in CIELAB; CIEDE2000")
    header = f"{'clips':<28} {'spread':>7} {'':>7} {'on/off':>6}   {'neighbr':>7} {'':>7} {'on/off':>6}"
    sub = f"{'':<28} {'off':>7} {'on':>7} {'':>6}   {'off':>7} {'on':>7}"
    ratios: dict[float, list[float]] = {strength: [] for strength in args.strength}
    timing = []

    if args.runs:
        print(header + "\n" + sub)
        for run in args.runs:
            bible = VisualBible.model_validate_json((run / "bible.json").read_text())
            clips = load(sorted((run / "scenes").glob("scene_*.mp4")))
            palette = palette_lab(bible.palette)
            off = measure(clips, palette)
            for strength in args.strength:
                on = measure(matched(clips, bible, strength), palette)
                print(row(f"{run.name} @{strength:g}", off, on))
                ratios[strength].append(on[0] / max(off[0], 1e-9))
    else:
        songs = [Path(s) if Path(s).exists() else MUSIC / s for s in (args.songs or [])] or sorted(
            p for p in MUSIC.iterdir() if p.suffix in (".ogg", ".opus", ".mp3", ".wav", ".flac")
        )
        with tempfile.TemporaryDirectory() as scratch:
            print(header + "\n" + sub)
            for song in songs:
                bible, paths, t = render_song(song, Path(scratch))
                timing.append((song.name, t))
                palette = palette_lab(bible.palette)
                clips = load(paths)
                own = measure(clips, palette)
                drifted = [drift(clip, seed=k) for k, clip in enumerate(clips)]
                off = measure(drifted, palette)
                print(f"{song.stem[:18] + ' animatic':<28} {own[0]:7.2f} {'':>7} {'':>6}   {own[1]:7.2f}")
                for strength in args.strength:
                    on = measure(matched(drifted, bible, strength), palette)
                    print(row(f"{song.stem[:18]} drifted @{strength:g}", off, on), flush=True)
                    ratios[strength].append(on[0] / max(off[0], 1e-9))
                for path in paths:
                    path.unlink()
        print("\nrender stage (AnimaticRenderer per segment, 640x360 @ 24 fps, one process):")
        print(f"{'song':<28} {'s':>6} {'scenes':>6} {'wall s':>7} {'x song':>7} {'cpu s':>7} {'cpu/2 x':>8}")
        for name, t in timing:
            cpu = t["self"] + t["ffmpeg"]
            print(
                f"{name:<28} {t['duration']:6.1f} {t['scenes']:6d} {t['wall']:7.2f} {t['wall'] / t['duration']:7.3f} "
                f"{cpu:7.2f} {max(t['self'], cpu / 2) / t['duration']:8.3f}"
            )
        print("cpu/2 x: max(this process, all CPU / 2) per second of song: the wall time on two idle cores")

    print()
    for strength, values in ratios.items():
        worst = max(values)
        print(
            f"strength {strength:g}: palette spread on/off mean {np.mean(values):.2f}, worst {worst:.2f} "
            f"(goal <= 0.50: {'yes' if worst <= 0.5 else 'no'})"
        )


if __name__ == "__main__":
    main()
