"""Render the same songs through both pipelines and put their scripts side by side, for a person to judge.

    # against served models (pipeline 1's LLM and pipeline 2's audio-language model):
    .venv/bin/python benchmarks/pipelines.py --llm-url http://gpu-box:8000/v1 --lalm-url http://gpu-box:8001/v1 \\
        --songs ../shared/music/feelings.ogg ../shared/music/metal_madness.ogg

    # smoke run with the tests' tiny random Qwen3-Omni thinker on vLLM's CPU build (no GPU, no weights):
    .venv/bin/python benchmarks/pipelines.py --tiny

For each song: pipeline 1 (`pipeline=clap`: labels -> LLM script) and pipeline 2 (`pipeline=lalm`:
the LALM listens and writes a story, then splits it). The report (markdown, `--out`) has per
song the pipeline-2 story, then one table row per scene - its time, pipeline 1's scene, pipeline
2's scene - and each pipeline's wall time. Both renders use the same segmentation, so row k is the
same stretch of music in both columns. Renders use the animatic at a small size: the scripts are
what is compared.

`--tiny` builds the tests' tiny audio-language model, serves it (one server, also used as
pipeline 1's LLM: it answers text too), renders `--seconds` of each song and writes
benchmarks/RESULTS_pipelines.md. Its random weights write noise; the run shows the plumbing (both
pipelines, same cuts, the side-by-side report), not quality. Cells are cut at `--cell-chars`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT.parent / "shared" / "music"
DEFAULT_SONGS = ["celtic.ogg", "metal_madness.ogg"]


def cell(text: str, limit: int) -> str:
    """One table cell: printable, one line, pipes escaped, at most `limit` characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text.replace("|", "\\|") or "—"


def clock(seconds: float) -> str:
    """m:ss.s."""
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def excerpt(song: Path, seconds: float, folder: Path) -> Path:
    """The first `seconds` of `song` (from 0:10, past quiet intros) as FLAC; the song itself when 0."""
    if seconds <= 0:
        return song
    from soundsight.media import ffmpeg_exe

    out = folder / f"{song.stem}_{seconds:g}s.flac"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-ss", "10", "-t", str(seconds), "-i", str(song), str(out)], check=True
    )
    return out


def render(song: Path, runs_dir: Path, groups: dict) -> tuple[Path, float]:
    """Render `song` with `groups` of settings; the run folder and the wall time, seconds."""
    from soundsight.flows.music_video import render_song
    from soundsight.settings import Settings

    settings = Settings.model_validate({"output": {"runs_dir": str(runs_dir)}, **groups})
    started = time.monotonic()
    video = Path(render_song(str(song), settings))
    return video.parent, time.monotonic() - started


def song_section(name: str, run1: Path, run2: Path, seconds1: float, seconds2: float, limit: int) -> str:
    """The markdown for one song: the story, then the two scripts side by side."""
    from soundsight.schemas import SceneScript, Segmentation

    s1 = SceneScript.model_validate_json((run1 / "script.json").read_text())
    s2 = SceneScript.model_validate_json((run2 / "script.json").read_text())
    cut = Segmentation.model_validate_json((run2 / "segments.json").read_text())
    plan = json.loads((run2 / "listen" / "plan.json").read_text())
    story = (run2 / "story.txt").read_text()
    lines = [
        f"## {name}",
        "",
        f"{clock(cut.duration)}, {len(cut.segments)} scenes, {cut.tempo_bpm or 0:.0f} BPM. "
        f"Pipeline 1: {s1.writer} ({seconds1:.0f} s). Pipeline 2: {s2.writer}, model `{plan['model']}` heard it "
        f"{plan['mode']} in {len(plan['requests'])} request(s) ({seconds2:.0f} s).",
        "",
        f"**Pipeline 2's story:** {cell(story, 4 * limit)}",
        "",
        "| # | time | pipeline 1 (labels → LLM script) | pipeline 2 (LALM story → scenes) |",
        "|---|---|---|---|",
    ]
    for seg, a, b in zip(cut.segments, s1.scenes, s2.scenes):
        lines.append(
            f"| {seg.index + 1} | {clock(seg.start)}–{clock(seg.end)} | {cell(a.description, limit)} "
            f"| {cell(b.description, limit)}{' *(fallback)*' if b.source == 'fallback' else ''} |"
        )
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def tiny_server(work: Path):
    """Build and serve the tests' tiny audio-language model; yields its base URL."""
    sys.path.insert(0, str(ROOT))
    from tests.lalm_fixtures import ARCH, SERVER_ENV, build_tiny_audioflamingo3, build_tiny_qwen3_omni, serve_command
    from tests.support import free_port, stop_process_group, wait_healthy

    build = build_tiny_qwen3_omni if ARCH == "qwen3_omni" else build_tiny_audioflamingo3
    model = build(work / ("tiny-qwen3-omni" if ARCH == "qwen3_omni" else "tiny-audio-flamingo-3"))
    port = free_port()
    log = open(work / "vllm.log", "wb")  # noqa: SIM115 - the server writes it for its lifetime
    process = subprocess.Popen(
        serve_command(model, port),
        env={**os.environ, **SERVER_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", 600, process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(process, grace=30)
        log.close()


def main(argv: list[str] | None = None) -> int:
    """Render, compare, write the report; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--songs", nargs="*", type=Path, help=f"default: {', '.join(DEFAULT_SONGS)} from ../shared/music"
    )
    parser.add_argument("--lalm-url", default="", help="pipeline 2's audio-language model (OpenAI-compatible, /v1)")
    parser.add_argument("--llm-url", default="", help="pipeline 1's LLM, also the scene writer with --scene-writer llm")
    parser.add_argument("--scene-writer", choices=("lalm", "llm"), default="lalm", help="pipeline 2's scene writer")
    parser.add_argument("--tiny", action="store_true", help="serve the tests' tiny random model on the CPU")
    parser.add_argument("--seconds", type=float, default=None, help="render only this long an excerpt (0: whole songs)")
    parser.add_argument("--cell-chars", type=int, default=None, help="longest table cell, characters")
    parser.add_argument("--out", type=Path, default=None, help="report (default: benchmarks/RESULTS_pipelines.md)")
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="where the renders go (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    if not args.tiny and not args.lalm_url:
        parser.error("give --lalm-url (and --llm-url), or --tiny")
    seconds = args.seconds if args.seconds is not None else (30.0 if args.tiny else 0.0)
    limit = args.cell_chars or (90 if args.tiny else 400)
    out = args.out or ROOT / "benchmarks" / "RESULTS_pipelines.md"
    songs = args.songs or [MUSIC / name for name in DEFAULT_SONGS]

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soundsight-pipelines-")))
        runs_dir = args.runs_dir or work / "runs"
        if not os.environ.get("PREFECT_API_URL"):
            from soundsight.flows.prefect_server import temporary_server

            os.environ["PREFECT_API_URL"] = stack.enter_context(temporary_server())
        lalm_url = stack.enter_context(tiny_server(work)) if args.tiny else args.lalm_url
        llm_url = args.llm_url or lalm_url  # --tiny: the tiny model answers pipeline 1's text requests too
        tokens = {"max_tokens": 1024} if args.tiny else {}
        common = {"render": {"width": 160, "height": 96}}
        pipeline_1 = common | {
            "pipeline": "clap",
            "analysis": {"backend": "features"} if args.tiny else {},
            "script": {"backend": "llm", "llm_base_url": llm_url, **tokens},
        }
        pipeline_2 = common | {
            "pipeline": "lalm",
            "lalm": {"base_url": lalm_url, **({"max_tokens": 160} if args.tiny else {})},
            "script": {"scene_writer": args.scene_writer, "llm_base_url": llm_url, **tokens},
        }
        sections, started = [], time.strftime("%Y-%m-%d %H:%M")
        for song in songs:
            clip = excerpt(song, seconds, work)
            run1, t1 = render(clip, runs_dir / "p1", pipeline_1)
            run2, t2 = render(clip, runs_dir / "p2", pipeline_2)
            name = song.name + (f" (first {seconds:g} s after 0:10)" if seconds else "")
            sections.append(song_section(name, run1, run2, t1, t2, limit))
            print(f"{song.name}: pipeline 1 {t1:.0f} s, pipeline 2 {t2:.0f} s", file=sys.stderr)

    model = "the tests' tiny random audio-language model (vLLM CPU build)" if args.tiny else lalm_url
    header = [
        "# Pipelines side by side",
        "",
        f"`benchmarks/pipelines.py{' --tiny' if args.tiny else ''}`, {started}, on {os.uname().nodename} "
        f"({os.cpu_count()} CPUs). Pipeline 2's model: {model}; scene writer: {args.scene_writer}.",
        "",
    ]
    if args.tiny:
        header += [
            "Random weights write noise: this run checks the plumbing (same cuts in both pipelines, the "
            "report's shape), not the writing. Their next-token distributions are nearly flat, so a seeded "
            "sample hardly depends on the input: the same story for different songs is expected here (that "
            "the audio arrives is what tests/test_lalm.py checks, by the server's token counts). Pipeline 1 "
            "uses the embedded feature labels and the same tiny model as its LLM. Cells are cut at "
            f"{limit} characters.",
            "",
        ]
    text = "\n".join(header) + "\n" + "\n".join(sections)
    text = re.sub(r"\n{3,}", "\n\n", text)
    out.write_text(text)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
