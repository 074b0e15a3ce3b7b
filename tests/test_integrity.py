"""The cache never hands back a wrong video.

Stage outputs are addressed by their cache key (run_dir/.stages/<stage>/<key>/), the run folder's
readable names point at the current ones, and every cache hit is checked against the sizes and
hashes recorded when the files were written. The first tests are the two wrong-result reports
(a setting changed and changed back; a corrupt cached file): both returned a wrong video with
exit 0 before the stages were content-addressed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundsight.media import ffmpeg_exe
from soundsight.schemas import Segmentation
from tests.support import probe, render

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("prefect_server")

SMALL = {"render": {"width": 64, "height": 36}}


@pytest.fixture(scope="module")
def song(music, tmp_path_factory) -> Path:
    """A 9 s excerpt: two or three scenes, a few seconds per render."""
    out = tmp_path_factory.mktemp("songs") / "celtic_9s.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "12", "-t", "9", "-i", str(music / "celtic.ogg"), str(out)],
                   check=True)  # fmt: skip
    return out


def groups(**render) -> dict:
    """Settings groups for `render`: small frames, plus the given render/segment fields."""
    segment = {k.removeprefix("segment_"): render.pop(k) for k in list(render) if k.startswith("segment_")}
    return {"render": {**SMALL["render"], **render}, "segment": segment}


def video_facts(ffprobe: str, video: Path) -> tuple[float, int, float]:
    """(video frame rate, frames, container duration in seconds)."""
    info = probe(ffprobe, video)
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    num, den = v["r_frame_rate"].split("/")
    return float(num) / float(den), int(v["nb_read_frames"]), float(info["format"]["duration"])


def test_a_setting_changed_and_changed_back_gives_that_settings_video(song, tmp_path, ffprobe):
    first, _ = render(song, tmp_path, **groups())
    first_bytes = first.read_bytes()
    _, states = render(song, tmp_path, **groups(fps=12))
    assert states["assemble"] == "Completed"
    video, states = render(song, tmp_path, **groups())
    assert all(state == "Cached" for state in states.values()), states  # every hit checked, none wrong
    assert video.read_bytes() == first_bytes
    fps, frames, duration = video_facts(ffprobe, video)
    assert (fps, frames) == (24.0, 9 * 24) and abs(duration - 9.0) < 0.05


def test_mode_changed_and_back_leaves_no_orphaned_scenes(song, tmp_path):
    video, _ = render(song, tmp_path, **groups())
    rule_based = len(Segmentation.model_validate_json((video.parent / "segments.json").read_text()).segments)
    render(song, tmp_path, **groups(segment_mode="random", segment_min_seconds=2.0, segment_random_max_seconds=2.5))
    random_scenes = len(list((video.parent / "scenes").iterdir()))
    assert random_scenes > rule_based  # 2-2.5 s segments: more scenes than the 4-7 s rule-based ones
    video, states = render(song, tmp_path, **groups())
    assert all(state == "Cached" for state in states.values()), states
    assert sorted(p.name for p in (video.parent / "scenes").iterdir()) == [
        f"scene_{i:03d}.mp4" for i in range(rule_based)
    ]


def test_a_corrupt_cached_scene_is_rendered_again(song, tmp_path, ffprobe, caplog):
    video, _ = render(song, tmp_path, **groups())
    scene = video.parent / "scenes" / "scene_001.mp4"
    scene.write_bytes(scene.read_bytes()[:1000])  # truncated through the readable name
    with caplog.at_level("WARNING", logger="soundsight.cache"):
        video, states = render(song, tmp_path, output={"runs_dir": str(tmp_path), "force": ["assemble"]}, **groups())
    assert states["render-scene-001"] == "Completed" and states["render-scene-000"] == "Cached", states
    assert any("scene_001.mp4 changed since it was written" in r.message for r in caplog.records)
    fps, frames, _ = video_facts(ffprobe, video)
    assert frames == 9 * 24


def test_a_truncated_segments_file_is_recomputed(song, tmp_path):
    video, _ = render(song, tmp_path, **groups())
    segments = video.parent / "segments.json"
    segments.write_text('{"trunc')
    video, states = render(song, tmp_path, **groups())
    assert states["segment"] == "Completed" and states["load"] == "Cached", states
    Segmentation.model_validate_json(segments.read_text())  # whole again


def test_a_moved_song_renders_with_new_settings(song, tmp_path, ffprobe):
    moved = tmp_path / "elsewhere" / "moved.wav"
    moved.parent.mkdir()
    shutil.copy(song, tmp_path / "song.wav")
    render(tmp_path / "song.wav", tmp_path / "runs", **groups())
    (tmp_path / "song.wav").rename(moved)
    video, states = render(moved, tmp_path / "runs", **groups(fps=12))
    assert states["load"] == "Cached" and states["assemble"] == "Completed", states
    assert video_facts(ffprobe, video)[:2] == (12.0, 9 * 12)


# --- any sequence of renders ends with the video a fresh render of the last settings makes --------

SETTINGS = st.fixed_dictionaries(
    {
        "fps": st.sampled_from([12, 24]),
        "width": st.sampled_from([64, 96]),
        "segment_mode": st.sampled_from(["rule_based", "random"]),
        "segment_seed": st.sampled_from([0, 1]),
    }
)
FRESH: dict[tuple, bytes] = {}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(SETTINGS, min_size=2, max_size=3))
def test_any_sequence_of_renders_ends_with_the_last_settings_video(sequence, song, tmp_path_factory):
    runs = tmp_path_factory.mktemp("sequence")
    for chosen in sequence:
        video, _ = render(song, runs, **groups(**chosen))
    key = tuple(sorted(sequence[-1].items()))
    if key not in FRESH:
        fresh, _ = render(song, tmp_path_factory.mktemp("fresh"), **groups(**sequence[-1]))
        FRESH[key] = fresh.read_bytes()
    assert video.read_bytes() == FRESH[key], sequence


# --- the run folder's names never mix runs; each run names its own video ---------------------------


def cli_render(song: Path, runs: Path, *flags: str) -> subprocess.Popen:
    """`soundsight render` as a user runs it, small frames, against the session's server."""
    return subprocess.Popen(
        [sys.executable, "-m", "soundsight.flows.cli", "render", str(song), "--output.runs_dir", str(runs),
         "--render.width", "64", "--render.height", "36", *flags],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.robustness(
    what="two renders of one song with different settings at the same time (fps 24 and 12)",
    outcome="each prints its own video, at its own fps; the run folder's names are one run's, never a mix",
)
def test_two_renders_racing_each_print_their_own_video_and_the_links_never_mix(song, tmp_path, ffprobe):
    runs = tmp_path / "runs"
    racing = {fps: cli_render(song, runs, "--render.fps", str(fps)) for fps in (24, 12)}
    printed = {}
    for fps, proc in racing.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
        printed[fps] = Path(out.strip().splitlines()[-1])
    for fps, video in printed.items():  # read after both ended: what each printed is still its own
        assert video_facts(ffprobe, video)[:2] == (fps, 9 * fps), (fps, video)
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    shown = (run_dir / "video.mp4").resolve()
    assert shown in {v.resolve() for v in printed.values()}
    fps = video_facts(ffprobe, shown)[0]
    segments = Segmentation.model_validate_json((run_dir / "segments.json").read_text())
    assert segments.fps == fps  # segments.json and video.mp4 of one run
    scenes = sorted((run_dir / "scenes").iterdir())
    assert len(scenes) == len(segments.segments)
    for scene, segment in zip(scenes, segments.segments):
        assert video_facts(ffprobe, scene)[:2] == (fps, segment.frames), scene


# --- every cache hit re-hashed; assemble checks the video it made ----------------------------------


def shorter_clip_of_the_same_size(clip: Path, seconds: float) -> bytes:
    """The first `seconds` of `clip` as a valid MP4 padded (a 'free' box) to exactly `clip`'s size."""
    short = clip.with_name("short.mp4")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(clip), "-t", str(seconds), "-c", "copy", str(short)],
                   check=True)  # fmt: skip
    data = short.read_bytes()
    short.unlink()
    pad = clip.stat().st_size - len(data)
    assert pad >= 8, "the excerpt must be smaller than the clip"
    return data + struct.pack(">I", pad) + b"free" + bytes(pad - 8)


@pytest.mark.robustness(
    what="a cached clip overwritten in place, its size and mtime put back",
    outcome="the cache hit's re-hash catches it; the scene renders again; the video is whole",
)
def test_a_clip_overwritten_in_place_with_size_and_mtime_restored_is_rendered_again(song, tmp_path, ffprobe):
    video, _ = render(song, tmp_path, **groups())
    clip = (video.parent / "scenes" / "scene_001.mp4").resolve()
    before = clip.stat()
    clip.write_bytes(shorter_clip_of_the_same_size(clip, 1.0))
    os.utime(clip, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (clip.stat().st_size, clip.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    video, states = render(song, tmp_path, output={"runs_dir": str(tmp_path), "force": ["assemble"]}, **groups())
    assert states["render-scene-001"] == "Completed" and states["render-scene-000"] == "Cached", states
    fps, frames, duration = video_facts(ffprobe, video)
    assert frames == 9 * 24 and abs(duration - 9.0) < 0.05


@pytest.mark.robustness(
    what="a clip shorter than its record says (the video would be short)",
    outcome="assemble counts the video's frames and fails, naming both lengths; no video.mp4",
)
def test_assemble_refuses_a_video_shorter_than_the_song(song, tmp_path, monkeypatch):
    """A renderer that writes half the frames it reports: the video would be short; assemble says so."""
    from soundsight.models.render.animatic import BACKEND

    make = BACKEND.make

    def lying_renderer(settings):
        renderer = make(settings)

        def render_half(job, out):
            info = renderer(job, out)
            half = out.with_name("half.mp4")
            subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out), "-frames:v", str(job.frames // 2), "-c", "copy",
                            str(half)], check=True)  # fmt: skip
            half.replace(out)
            return info  # still claims every frame

        return render_half

    monkeypatch.setattr(BACKEND, "make", lying_renderer)
    from soundsight.flows.music_video import render_song
    from soundsight.settings import Settings

    settings = Settings.model_validate({"output": {"runs_dir": str(tmp_path)}, **groups()})
    state = render_song(str(song), settings, return_state=True)
    assert state.is_failed(), state
    assert "assembled video" in state.message and "9.0" in state.message, state.message
    assert not list(tmp_path.rglob("video.mp4"))


# --- the same song in two runs folders: the same key for every stage -------------------------------


def stage_keys(runs: Path) -> set[str]:
    """Every stage folder (``<run folder>/.stages/<stage>/<key>``) under `runs`, as text."""
    return {str(p.relative_to(runs)) for p in runs.glob("*/.stages/*/*") if p.is_dir()}


@pytest.mark.robustness(
    what="the same song loaded again (another runs folder)",
    outcome="audio.wav byte-identical; every stage has the same key (nothing recomputed by a timestamp)",
)
def test_the_same_song_in_two_runs_folders_has_the_same_key_for_every_stage(song, tmp_path):
    first, _ = render(song, tmp_path / "one", **groups())
    second, _ = render(song, tmp_path / "two", **groups())
    assert (first.parent / "audio.wav").read_bytes() == (second.parent / "audio.wav").read_bytes()
    keys = stage_keys(tmp_path / "one")
    assert {k.split("/")[2] for k in keys} >= {"load", "segment", "analyse", "lyrics", "script", "render", "assemble"}
    assert stage_keys(tmp_path / "two") == keys
