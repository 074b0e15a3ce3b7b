"""Issue 6 end to end: the real flow renders a 3-scene song with a (tiny, random) Wan pipeline
through a 2-worker Dask cluster; each worker builds its pipeline once, timing stays exact."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from soundsight.media import ffmpeg_exe
from soundsight.schemas import Manifest, Segmentation
from tests.support import gray_frames, probe, render

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def three_scene_song(music, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("songs") / "celtic_13s.wav"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", "20", "-t", "13", "-i", str(music / "celtic.ogg"), str(out)], check=True
    )
    return out


def wan_groups(tiny_wan_dir: Path) -> dict:
    """Settings groups: the tiny Wan pipeline at 32x32, 2 steps, on the CPU."""
    return {"render": {"backend": "wan", "model": str(tiny_wan_dir), "model_width": 32, "model_height": 32,
                       "dtype": "float32", "device": "cpu", "steps": 2, "width": 64, "height": 64}}  # fmt: skip


@pytest.fixture(scope="module")
def wan_run(three_scene_song, tmp_path_factory, tiny_wan_dir) -> tuple[Path, Path, dict[str, str]]:
    """One fresh render of the song with the tiny Wan pipeline: (runs folder, video, task states).
    Both tests read it (the second renders again on top of it), so its 2-worker cluster starts once."""
    runs = tmp_path_factory.mktemp("runs")
    video, states = render(three_scene_song, runs, **wan_groups(tiny_wan_dir))
    return runs, video, states


def test_wan_scenes_render_on_dask_workers_with_one_pipeline_each(wan_run, ffprobe):
    runs, video, states = wan_run
    run_dir = video.parent
    segmentation = Segmentation.model_validate_json((run_dir / "segments.json").read_text())
    assert len(segmentation.segments) == 3
    assert all(s.duration <= 81 / 16 + 1e-6 for s in segmentation.segments), "planner must respect Wan's 81 frames"

    for scene in sorted((run_dir / "scenes").glob("scene_*.mp4")):
        facts = probe(ffprobe, scene)["streams"][0]
        assert int(facts["nb_read_frames"]) in (65, 69, 73, 77, 81), facts  # 4k+1 frames covering the scene at 16 fps
        assert facts["r_frame_rate"] == "16/1"

    # Each scene task reports the worker process it ran in and how many pipelines that process built.
    records = sorted((runs / ".cache" / "results").glob("render-v*"))
    clips = [Manifest.model_validate(json.loads(json.loads(r.read_text())["result"])["data"]) for r in records]
    assert len(clips) == 3
    assert all(c.info["pipelines_built_in_worker"] == 1 for c in clips), [c.info for c in clips]
    # Two single-threaded CPU workers and three scenes: both workers render, each builds once.
    assert len({c.info["worker_pid"] for c in clips}) == 2, [c.info for c in clips]
    # The bible's palette is applied to the frames before the one encode, and the move is recorded:
    # random weights give colours far from any palette, so the distance must shrink.
    assert all(c.info["palette_strength"] == 0.8 for c in clips), [c.info for c in clips]
    assert all(c.info["palette_delta_e_after"] < c.info["palette_delta_e_before"] for c in clips), [
        c.info for c in clips
    ]

    # Assembly retimed 16 fps clips onto the 24 fps grid, cut on the boundary frames.
    info = probe(ffprobe, video)
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert int(v["nb_read_frames"]) == round(segmentation.duration * 24)
    assert all(state == "Completed" for state in states.values()), states
    frames = gray_frames(video)
    assert len(frames) == segmentation.segments[-1].end_frame

    # The run's timing table has a row per scene with the seconds spent inside the video model.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{run_dir.name}-timings"]))
        )
    first = min(found, key=lambda a: a.created)  # the fresh render's (a rerun of the run adds its own)
    rows = {row["stage"]: row for row in json.loads(first.data)}
    scene_rows = [rows[f"render-scene-{i:03d}"] for i in range(3)]
    assert all(r["states"] == "Completed" and 0 < r["gpu seconds"] <= r["seconds"] for r in scene_rows), scene_rows
    assert rows["render"]["gpu seconds"] == pytest.approx(sum(r["gpu seconds"] for r in scene_rows), abs=0.02)


def test_a_fully_cached_rerun_starts_no_cluster(wan_run, three_scene_song, tiny_wan_dir, monkeypatch):
    from soundsight.models.render import gpu_pool

    runs, _, _ = wan_run  # the song rendered once already, with these settings
    started = []
    real = gpu_pool.make_cluster
    monkeypatch.setattr(gpu_pool, "make_cluster", lambda *a, **k: started.append(1) or real(*a, **k))
    _, states = render(three_scene_song, runs, **wan_groups(tiny_wan_dir))
    assert all(state == "Cached" for state in states.values()), states
    assert started == []  # every scene was a checked cache hit: no Dask cluster for them


def _tiny_wan_groups(model: Path, **render) -> dict:
    return {"render": {"backend": "wan", "model": str(model), "model_width": 32, "model_height": 32, "dtype": "float32",
                       "device": "cpu", "steps": 2, "width": 64, "height": 64, **render}}  # fmt: skip


def test_gpu_workers_start_while_the_cpu_stages_run(three_scene_song, tmp_path, tiny_wan_dir, monkeypatch):
    """Issue 29: the first stage that runs starts the GPU workers (and their pipeline loads) on a thread of
    its own, long before the script is written; the render stage uses that cluster. A run whose scenes are
    all cached (the load stage forced) closes it again without rendering."""
    import threading
    import time

    from soundsight.flows import music_video
    from soundsight.models.render import gpu_pool

    events: list[tuple[str, float, str]] = []
    clusters = []
    real_cluster, real_plan = gpu_pool.make_cluster, music_video.plan_scenes

    def make_cluster(*a, **k):
        events.append(("cluster", time.monotonic(), threading.current_thread().name))
        clusters.append(real_cluster(*a, **k))
        return clusters[-1]

    def plan_scenes(*a, **k):
        events.append(("script written", time.monotonic(), ""))
        return real_plan(*a, **k)

    monkeypatch.setattr(gpu_pool, "make_cluster", make_cluster)
    monkeypatch.setattr(music_video, "plan_scenes", plan_scenes)
    _, states = render(three_scene_song, tmp_path, **_tiny_wan_groups(tiny_wan_dir))
    assert [e[0] for e in events] == ["cluster", "script written"], events
    assert events[0][2] == "soundsight-gpu-warm-up"
    assert all(state == "Completed" for state in states.values()), states
    records = sorted((tmp_path / ".cache" / "results").glob("render-v*"))
    clips = [Manifest.model_validate(json.loads(json.loads(r.read_text())["result"])["data"]) for r in records]
    assert len(clips) == 3 and all(c.info["pipelines_built_in_worker"] == 1 for c in clips), [c.info for c in clips]
    assert clusters[0].status.name == "closed"

    events.clear()
    forced = {"runs_dir": str(tmp_path), "force": ["load"]}
    _, states = render(three_scene_song, tmp_path, output=forced, **_tiny_wan_groups(tiny_wan_dir))
    assert states["load"] == "Completed" and all(s == "Cached" for n, s in states.items() if n.startswith("render"))
    assert [e[0] for e in events] == ["cluster", "script written"] and len(clusters) == 2
    assert clusters[1].status.name == "closed"


def test_two_scenes_share_a_gpu_worker_through_the_flow(three_scene_song, tmp_path, tiny_wan_dir):
    """Scenes claim a scene slot of a GPU worker (render.dask_address: a one-GPU layout on the CPU): the
    one worker renders all three, two at a time, and each scene reports its own seconds in the model."""
    from distributed import Client

    from soundsight.models.render import diffusion as vd
    from soundsight.models.render import gpu_pool

    with (
        gpu_pool.make_cluster(kind="cuda", gpus=["0"], use_dask_cuda=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        groups = _tiny_wan_groups(tiny_wan_dir, dask_address=cluster.scheduler_address)
        _, states = render(three_scene_song, tmp_path, **groups)
        records = {r["index"]: r for r in next(iter(client.run(vd.render_stats).values()))}
    assert all(state == "Completed" for state in states.values()), states
    results = sorted((tmp_path / ".cache" / "results").glob("render-v*"))
    clips = [Manifest.model_validate(json.loads(json.loads(r.read_text())["result"])["data"]) for r in results]
    assert len({c.info["worker_pid"] for c in clips}) == 1 and len(records) == 3
    assert sorted(c.info["gpu_seconds"] for c in clips) == sorted(round(r["render_s"], 3) for r in records.values())
    by_start = sorted(records.values(), key=lambda r: r["started"])
    assert any(later["started"] < earlier["ended"] for earlier, later in zip(by_start, by_start[1:])), by_start
