"""The cache never hands back a wrong video.

Stage outputs are addressed by their cache key (run_dir/.stages/<stage>/<key>/), the run folder's
readable names point at the current ones, and every cache hit is checked against the sizes and
hashes recorded when the files were written. The first tests are the two wrong-result reports
(a setting changed and changed back; a corrupt cached file): both returned a wrong video with
exit 0 before the stages were content-addressed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundsight.media import ffmpeg_exe
from soundsight.schemas import Segmentation
from tests.support import probe, render

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
