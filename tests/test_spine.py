"""The spine: a real song through the real flow on a real Prefect server, checked with ffprobe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reference_beats import load_reference_beats, reference_metrics
from soundsight.schemas import Segmentation
from tests.support import gray_frames, probe, render

pytestmark = pytest.mark.usefixtures("prefect_server")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def celtic_run(music, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    video, states = render(music / "celtic.ogg", runs)
    return runs, video, states


def test_render_writes_every_intermediate_file(celtic_run):
    _, video, _ = celtic_run
    run_dir = video.parent
    for name in (
        "song.json",
        "segments.json",
        "analysis.json",
        "prompt.txt",
        "script.json",
        "script.txt",
        "response.txt",
    ):
        assert (run_dir / name).is_file(), name
    script = (run_dir / "script.txt").read_text()
    assert script.startswith("BEGIN SCRIPT") and "SCENE 1:" in script
    prompt = (run_dir / "prompt.txt").read_text()
    assert "There are" in prompt and "BEGIN SCRIPT" in prompt and "Instrumental intensity is" in prompt
    assert not list(run_dir.rglob("*.part*")), "temporary files left behind"


def test_video_matches_song_and_cuts_land_on_boundary_frames(celtic_run, ffprobe):
    _, video, _ = celtic_run
    run_dir = video.parent
    segmentation = Segmentation.model_validate_json((run_dir / "segments.json").read_text())
    fps = segmentation.fps
    info = probe(ffprobe, video)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    frame = 1.0 / fps
    duration = segmentation.duration
    assert int(streams["video"]["nb_read_frames"]) == round(duration * fps)
    assert abs(float(streams["video"]["duration"]) - duration) <= frame
    assert abs(float(streams["audio"]["duration"]) - duration) <= frame

    segments = segmentation.segments
    clips = sorted((run_dir / "scenes").glob("scene_*.mp4"))
    assert len(clips) == len(segments) >= 5
    assert segments[0].start == 0 and segments[-1].end == duration
    assert all(a.end == b.start and a.end_frame == b.start_frame for a, b in zip(segments, segments[1:]))

    final = gray_frames(video)
    for seg, clip in zip(segments, clips):
        own = gray_frames(clip)
        assert len(own) == seg.frames
        # The video's frames [start_frame, end_frame) are exactly this scene's clip.
        assert np.abs(final[seg.start_frame] - own[0]).mean() < 1.5, f"cut {seg.index} not at frame {seg.start_frame}"
        assert np.abs(final[seg.end_frame - 1] - own[-1]).mean() < 1.5


def test_second_render_is_fully_cached(celtic_run, music):
    runs, video, first = celtic_run
    assert all(state == "Completed" for state in first.values()), first
    again, states = render(music / "celtic.ogg", runs)
    assert again == video
    assert states and all(state == "Cached" for state in states.values()), states


def test_changed_render_setting_recomputes_only_render_and_assembly(celtic_run, music):
    runs, _, _ = celtic_run
    _, states = render(music / "celtic.ogg", runs, render={"width": 320, "height": 180})
    for name, state in states.items():
        expected = "Completed" if name.startswith(("render", "assemble")) else "Cached"
        assert state == expected, (name, states)


def test_deleted_clip_is_rendered_again(celtic_run, music):
    runs, video, _ = celtic_run
    link = video.parent / "scenes" / "scene_002.mp4"
    link.unlink()  # only the readable name: the clip itself is intact, so it is a hit and the name comes back
    _, states = render(music / "celtic.ogg", runs)
    assert states["render-scene-002"] == "Cached" and link.is_file()
    link.resolve().unlink()  # the clip itself
    _, states = render(music / "celtic.ogg", runs)
    assert states["render-scene-002"] == "Completed"
    assert link.is_file()
    assert all(
        state == "Cached" for name, state in states.items() if name.startswith(("load", "segment", "render-scene-001"))
    )


def test_demo_renders_with_a_temporary_prefect_server(tmp_path, ffprobe):
    """README's first command, minus the install: no PREFECT_API_URL, so a temporary server."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    proc = subprocess.run(
        [sys.executable, "-m", "soundsight.flows.cli", "render", "--demo", "--output.runs_dir", str(tmp_path / "runs"),
         "--render.width", "320", "--render.height", "180"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    video = Path(proc.stdout.strip().splitlines()[-1])
    assert video.is_file() and video.name == "video.mp4"
    assert "temporary" in proc.stderr or "using the Prefect server" in proc.stderr
    assert "Error logging to API" not in proc.stderr, proc.stderr[-1000:]  # run logs sent before the server stops
    streams = probe(ffprobe, video)["streams"]
    assert sorted(s["codec_type"] for s in streams) == ["audio", "video"]
    # The demo song carries its exact beats beside it: the run's cuts score against them.
    # The CLI prints the run's own video, in its stage folder; the run folder is above `.stages`.
    run_dir = next(p for p in video.parents if p.name == ".stages").parent
    segmentation = Segmentation.model_validate_json((run_dir / "segments.json").read_text())
    reference = load_reference_beats(tmp_path / "runs" / "demo" / "bach-chorale-bwv66.6.wav")
    assert reference is not None
    cuts = [s.start for s in segmentation.segments[1:]]
    metrics = reference_metrics(cuts, segmentation.beats, segmentation.downbeats, *reference, fps=segmentation.fps)
    assert metrics and metrics["n_cuts"] >= 1 and "cut_error_median_ms" in metrics
