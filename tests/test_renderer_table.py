"""A render backend added through its table alone (`soundsight.backends.RENDERERS`) renders a song through the real flow.

No task or flow knows the backend's name: the planner follows its longest clip, each scene is its
clip at its frame rate and frame rule, the assembler retimes them onto the output grid, and a rerun
is all cache hits.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from soundsight.backends import RENDERERS
from soundsight.media import FrameEncoder, ffmpeg_exe
from soundsight.models.base import ClipInfo, RenderCosts, RenderSpec, SceneJob
from soundsight.schemas import Manifest, Segmentation
from soundsight.settings import RenderSettings
from tests.support import gray_frames, probe, render

pytestmark = pytest.mark.usefixtures("prefect_server")

SPEC = RenderSpec(native_fps=12.0, frame_multiple=4, frame_offset=1, max_seconds=4.5)


def grey_level(index: int) -> int:
    """The flat grey of scene `index`, 0..255: 60 levels apart from one scene to the next."""
    return 30 + 60 * (index % 4)


class FlatGreyRenderer:
    """Each scene one flat grey (`grey_level`), ``SPEC.frames_for(seconds)`` frames at 12 fps."""

    name = "flat-grey"
    backend_id = "flat-grey-v1"
    spec = SPEC

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        frames = SPEC.frames_for(job.seconds)
        with FrameEncoder(out_path, width=job.width, height=job.height, fps=SPEC.native_fps, frames=frames) as enc:
            for _ in range(frames):
                enc.write(np.full((job.height, job.width, 3), grey_level(job.index), np.uint8))
        return ClipInfo(out_path, frames, SPEC.native_fps, job.width, job.height)


class FlatGreyBackend:
    """The render backend: on the flow's threads, no reference image, no model."""

    name = "flat-grey"
    gpu_workers = False
    takes_reference = False

    def spec(self, settings: RenderSettings) -> RenderSpec:
        return SPEC

    def make(self, settings: RenderSettings) -> FlatGreyRenderer:
        return FlatGreyRenderer()

    def draw_reference(self, settings: RenderSettings, job: SceneJob) -> np.ndarray:
        raise ValueError("flat-grey takes no reference image")

    def costs(self) -> RenderCosts:
        return RenderCosts()


BACKEND = FlatGreyBackend()


@pytest.fixture(scope="module")
def song(music, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("songs") / "celtic_13s.wav"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", "20", "-t", "13", "-i", str(music / "celtic.ogg"), str(out)], check=True
    )
    return out


def test_a_backend_added_to_the_table_renders_a_song(song, tmp_path, ffprobe, monkeypatch):
    monkeypatch.setitem(RENDERERS, "flat-grey", f"{__name__}:BACKEND")
    groups = {
        "render": {"backend": "flat-grey", "width": 64, "height": 36},
        # Its own run name: the run's UI artifacts (keyed by it) stay apart from other tests' runs of this excerpt.
        "output": {"runs_dir": str(tmp_path), "run_name": "renderer-table"},
    }
    video, states = render(song, tmp_path, **groups)
    run_dir = video.parent
    assert all(state == "Completed" for state in states.values()), states

    # The planner cut the 13 s song within the backend's 4.5 s (the segment rules alone allow 7 s).
    segments = Segmentation.model_validate_json((run_dir / "segments.json").read_text()).segments
    assert len(segments) == 3 and all(4.0 - 1e-6 <= s.duration <= 4.5 + 1e-6 for s in segments), segments

    # Each scene is the backend's clip: 4k+1 frames covering the scene at 12 fps.
    for seg in segments:
        facts = probe(ffprobe, run_dir / "scenes" / f"scene_{seg.index:03d}.mp4")["streams"][0]
        assert int(facts["nb_read_frames"]) == SPEC.frames_for(seg.duration) and facts["r_frame_rate"] == "12/1"
    records = [json.loads(p.read_text()) for p in (tmp_path / ".cache" / "results").glob("render-v*")]
    clips = [Manifest.model_validate(json.loads(r["result"])["data"]) for r in records]
    assert sorted(c.info["index"] for c in clips) == [0, 1, 2]
    assert all(c.info["pipelines_built_in_worker"] == 0 and c.info["gpu_seconds"] == 0.0 for c in clips)

    # The video: every output frame from its scene's clip, the cut on the boundary frame.
    grey = gray_frames(video).mean(axis=(1, 2))
    assert len(grey) == segments[-1].end_frame
    levels = [float(np.median(grey[s.start_frame : s.end_frame])) for s in segments]
    assert levels[0] + 40 < levels[1] and levels[1] + 40 < levels[2], levels  # 60 levels apart, less range squeeze
    for seg, level in zip(segments, levels):
        assert np.abs(grey[seg.start_frame : seg.end_frame] - level).max() <= 3, (seg.index, level)

    _, again = render(song, tmp_path, **groups)
    assert all(state == "Cached" for state in again.values()), again
