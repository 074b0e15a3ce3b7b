"""Wan / Mochi clip renderers on tiny random pipelines (fixtures: tests/video_fixtures.py).

Everything loads through `from_pretrained` from folders written by `save_pretrained`; nothing is
downloaded and no model call is faked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from soundsight.models.base import SceneJob
from soundsight.models.render import diffusion as vd
from soundsight.models.render import gpu_pool

from soundsight.errors import MissingCheckpointError
from soundsight.settings import RenderSettings


def _settings(backend: str, model: Path | str, **kw) -> RenderSettings:
    """The tiny pipelines render 32x32 on the CPU in float32, 2 steps."""
    base = dict(
        backend=backend,
        model=str(model),
        dtype="float32",
        device="cpu",
        steps=2,
        guidance_scale=5.0,
        model_width=32,
        model_height=32,
    )
    base.update(kw)
    return RenderSettings(**base)


def _job(index: int, seconds: float, seed: int = 7) -> SceneJob:
    return SceneJob(
        index=index,
        prompt=f"a red fox runs through a neon city at night, scene {index}, watercolor",
        caption="",
        negative_prompt="blurry, watermark",
        seed=seed,
        seconds=seconds,
        frames=int(seconds * 24),
        fps=24,
        width=640,
        height=360,
    )


def _probe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    s = json.loads(out.stdout)["streams"][0]
    num, den = s["r_frame_rate"].split("/")
    return {
        "codec": s["codec_name"],
        "pix_fmt": s["pix_fmt"],
        "width": s["width"],
        "height": s["height"],
        "fps": float(num) / float(den),
        "frames": int(s["nb_read_frames"]),
    }


@pytest.fixture(autouse=True)
def _fresh_cache():
    vd.clear_pipeline_cache()
    yield
    vd.clear_pipeline_cache()


# ---------------------------------------------------------------------------------------------


def test_family_specs_and_frame_rules():
    wan, mochi = vd.spec_for("wan"), vd.spec_for("mochi")
    assert (wan.native_fps, wan.frame_multiple, wan.frame_offset) == (16, 4, 1)
    assert (mochi.native_fps, mochi.frame_multiple, mochi.frame_offset) == (30, 6, 1)
    assert wan.frames_for(wan.max_seconds) == 81 and abs(wan.max_seconds - 5.0625) < 1e-9
    assert mochi.frames_for(mochi.max_seconds) == 163 and abs(mochi.max_seconds - 163 / 30) < 1e-9
    assert wan.frames_for(1.0) == 17 and wan.frames_for(1.07) == 21
    assert mochi.frames_for(1.0) == 31 and mochi.frames_for(0.5) == 19
    assert vd.WAN.size_for("Wan-AI/Wan2.1-T2V-14B-Diffusers") == (1280, 720)
    assert vd.WAN.size_for(vd.WAN.default_model) == (832, 480) and vd.MOCHI.default_size == (848, 480)


def test_memory_ladder_order():
    M = vd.MemoryOptions
    assert vd.memory_ladder(M(), "cuda") == [M(), M(cpu_offload=True), M(cpu_offload=True, vae_tiling=True)]
    assert vd.memory_ladder(M(), "cuda:1")[1] == M(cpu_offload=True)
    assert vd.memory_ladder(M(cpu_offload=True), "cuda") == [M(cpu_offload=True), M(True, True)]
    assert vd.memory_ladder(M(), "cpu") == [M(), M(vae_tiling=True)]  # offload means nothing on a CPU
    assert vd.next_cheaper(M(True, True), "cuda") is None


def test_missing_checkpoint_names_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingCheckpointError) as err:
        vd.make_renderer(_settings("wan", ""))  # empty: the family's default checkpoint
    msg = str(err.value)
    assert "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg and "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in msg
    with pytest.raises(MissingCheckpointError, match="hf download genmo/mochi-1-preview"):
        vd.make_renderer(_settings("mochi", ""))
    with pytest.raises(MissingCheckpointError, match="no such folder"):
        vd.make_renderer(_settings("wan", tmp_path / "nowhere" / "wan"))
    (tmp_path / "not-a-pipeline").mkdir()
    with pytest.raises(MissingCheckpointError, match="model_index.json"):
        vd.make_renderer(_settings("wan", tmp_path / "not-a-pipeline"))


def test_hub_cache_snapshot_gives_revision(tiny_wan_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--soundsight--tiny-wan"
    shutil.copytree(tiny_wan_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = vd.make_renderer(_settings("wan", "soundsight/tiny-wan"))
    assert r.backend_id == f"wan:soundsight/tiny-wan@{commit}"
    info = r(_job(0, 0.5), tmp_path / "hub-clip.mp4")
    assert info.frames == 9


def test_backend_id_follows_folder_content(tiny_wan_dir, tmp_path):
    copy = tmp_path / "wan-copy"
    shutil.copytree(tiny_wan_dir, copy)
    a = vd.make_renderer(_settings("wan", tiny_wan_dir)).backend_id
    b = vd.make_renderer(_settings("wan", copy)).backend_id
    assert a.startswith(f"wan:{tiny_wan_dir.name}@sha256:") and a.split("@")[1] == b.split("@")[1]
    cfg = copy / "scheduler" / "scheduler_config.json"
    cfg.write_text(cfg.read_text().replace('"shift": 7.0', '"shift": 5.0'))
    assert vd.make_renderer(_settings("wan", copy)).backend_id.split("@")[1] != a.split("@")[1]


@pytest.mark.parametrize("backend, seconds, frames, fps", [("wan", 0.9, 17, 16.0), ("mochi", 0.5, 19, 30.0)])
def test_tiny_pipeline_renders_clip_and_is_built_once(backend, seconds, frames, fps, request, tmp_path):
    folder = request.getfixturevalue(f"tiny_{backend}_dir")
    r = vd.make_renderer(_settings(backend, folder))
    assert r.name == backend and r.spec.frames_for(seconds) == frames
    infos = [r(_job(i, seconds), tmp_path / f"{backend}-{i}.mp4") for i in range(2)]
    for info in infos:
        assert (info.frames, info.fps, info.width, info.height) == (frames, fps, 32, 32)
        p = _probe(info.path)
        assert p == {"codec": "h264", "pix_fmt": "yuv420p", "width": 32, "height": 32, "fps": fps, "frames": frames}
    assert list(vd.construction_counts().values()) == [1]
    assert not list(tmp_path.glob(".*part*"))  # atomic writes left no temporaries


def test_out_of_memory_retries_with_cheaper_setting(tiny_wan_dir, tmp_path, caplog):
    """A real torch.OutOfMemoryError, raised where a small GPU would run out (untiled VAE
    decode), by a hook standing in for the card's memory limit; the model itself runs."""
    import torch

    r = vd.make_renderer(_settings("wan", tiny_wan_dir))
    pipe = r.pipeline()
    calls = {"refused": 0}

    def budget(module, args):
        if not pipe.vae.use_tiling:
            calls["refused"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.50 GiB (simulated budget)")

    handle = pipe.vae.decoder.register_forward_pre_hook(budget)
    try:
        with caplog.at_level(logging.WARNING, logger="soundsight.render"):
            info = r(_job(0, 0.5), tmp_path / "oom.mp4")
            info2 = r(_job(1, 0.5), tmp_path / "after.mp4")
    finally:
        handle.remove()
    assert calls["refused"] == 1 and info.frames == 9 and info2.frames == 9
    assert _probe(info.path)["frames"] == 9
    assert any("out of memory" in rec.message and "vae_tiling" in rec.message for rec in caplog.records)
    stats = vd.render_stats()
    assert [s["oom_retries"] for s in stats] == [1, 0] and stats[0]["memory"] == "vae_tiling"
    assert list(vd.construction_counts().values()) == [1]  # degraded in place, not rebuilt


def test_gpu_layout_pins_one_gpu_per_worker():
    """The no-dask-cuda GPU layout: one single-threaded Nanny per GPU id with GPU=1 and its own
    CUDA_VISIBLE_DEVICES (checked on CPU: the variable is only set, nothing uses a GPU)."""
    from distributed import Client

    with (
        gpu_pool.make_cluster(kind="cuda", gpus=["0", "1"], use_dask_cuda=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        env = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        info = client.scheduler_info(n_workers=-1)["workers"]
        assert sorted(env.values()) == ["0,1", "1,0"]
        assert all(w["nthreads"] == 1 and w["resources"] == {"GPU": 1} for w in info.values())
