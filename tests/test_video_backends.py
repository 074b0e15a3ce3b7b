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

from soundsight.errors import MissingCheckpointError
from soundsight.models.base import SceneJob
from soundsight.models.render import diffusion as vd
from soundsight.models.render import gpu_pool
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
    """The no-dask-cuda GPU layout: one Nanny per GPU id with GPU=1, two scene threads (one scene on
    the GPU while the other encodes) and its own CUDA_VISIBLE_DEVICES (checked on CPU: the variable
    is only set, nothing uses a GPU)."""
    from distributed import Client

    with (
        gpu_pool.make_cluster(kind="cuda", gpus=["0", "1"], use_dask_cuda=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        env = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        info = client.scheduler_info(n_workers=-1)["workers"]
        assert sorted(env.values()) == ["0,1", "1,0"]
        assert all(w["nthreads"] == 2 and w["resources"] == {"GPU": 1} for w in info.values())
        assert gpu_pool.GPU_PER_SCENE * gpu_pool.SCENES_PER_GPU == 1


# --------------------------------------------------------------------------------------------- draft quality


class _Forwards:
    """Counts a module's forward calls (a hook: the model itself runs)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, *_):
        self.n += 1

    def remove(self):
        self.handle.remove()


def _frames(renderer, job):
    frames, stats = renderer.generate(job)
    return frames.astype("float32"), stats


def test_draft_fuses_the_lora_and_runs_four_steps_without_cfg(tiny_wan_dir, tiny_wan_lora, tiny_wan_zero_lora):
    """Draft: the LoRA (original Wan key format, as public distill LoRAs ship) goes through diffusers'
    load_lora_weights, is fused and unloaded; 4 transformer forwards (no CFG) against final's 8."""
    import torch

    job = _job(0, 0.5)
    final = vd.make_renderer(_settings("wan", tiny_wan_dir, steps=4))
    final_pipe = final.pipeline()
    base_q = final_pipe.transformer.blocks[0].attn1.to_q.weight.detach().clone()
    count = _Forwards(final_pipe.transformer)
    final_frames, stats = _frames(final, job)
    count.remove()
    assert count.n == 8 and stats["quality"] == "final"  # 4 steps x (cond + uncond)

    draft = vd.make_renderer(_settings("wan", tiny_wan_dir, steps=4, quality="draft", draft_lora=str(tiny_wan_lora)))
    draft_pipe = draft.pipeline("draft")
    assert draft_pipe is not final_pipe  # the worker swapped its one pipeline for the draft one
    assert not any("lora" in name for name, _ in draft_pipe.transformer.named_modules())  # fused, then unloaded
    assert not torch.equal(draft_pipe.transformer.blocks[0].attn1.to_q.weight, base_q)
    count = _Forwards(draft_pipe.transformer)
    draft_frames, stats = _frames(draft, job)
    count.remove()
    assert count.n == 4 and stats["quality"] == "draft"  # draft_steps=4, guidance 1.0: no unconditional pass
    assert draft_frames.shape == final_frames.shape == (9, 32, 32, 3)

    # The same sampling with a LoRA that changes nothing: the random LoRA is what moved the pixels.
    vd.clear_pipeline_cache()
    zero = vd.make_renderer(_settings("wan", tiny_wan_dir, quality="draft", draft_lora=str(tiny_wan_zero_lora)))
    zero_frames, _ = _frames(zero, job)
    assert torch.equal(zero.pipeline("draft").transformer.blocks[0].attn1.to_q.weight, base_q)
    assert abs(draft_frames - zero_frames).mean() > 0.5  # 8-bit levels


def test_backend_id_names_quality_and_lora_revision(tiny_wan_dir, tiny_wan_lora, tmp_path):
    final = vd.make_renderer(_settings("wan", tiny_wan_dir)).backend_id
    draft = vd.make_renderer(_settings("wan", tiny_wan_dir, quality="draft", draft_lora=str(tiny_wan_lora))).backend_id
    assert "+" not in final and draft.startswith(final + "+draft[draft_lora.safetensors@sha256:")
    other = tmp_path / "draft_lora.safetensors"
    other.write_bytes(tiny_wan_lora.read_bytes()[:-1] + b" ")  # same name, other content
    assert vd.make_renderer(_settings("wan", tiny_wan_dir, quality="draft", draft_lora=str(other))).backend_id != draft


def test_final_scenes_override_draft_per_scene(tiny_wan_dir, tiny_wan_lora):
    """final_scenes renders chosen scenes in final quality; per-scene settings differ only for them."""
    s = _settings("wan", tiny_wan_dir, steps=3, quality="draft", draft_lora=str(tiny_wan_lora), final_scenes=[1])
    r = vd.make_renderer(s)
    assert [vd.scene_quality(s, i) for i in range(3)] == ["draft", "final", "draft"]
    counts = []
    for i in (0, 1):
        pipe = r.pipeline("final" if i == 1 else "draft")
        count = _Forwards(pipe.transformer)
        _, stats = _frames(r, _job(i, 0.5))
        count.remove()
        counts.append((stats["quality"], count.n))
    assert counts == [("draft", 4), ("final", 6)]
    per_scene = [vd.scene_settings(s, i) for i in range(3)]
    assert [p.quality for p in per_scene] == ["draft", "final", "draft"] and all(not p.final_scenes for p in per_scene)
    assert per_scene[0] == per_scene[2] != per_scene[1]
    ids = [vd.make_renderer(p).backend_id for p in per_scene]
    assert "+draft[" in ids[0] and ids[1] == vd.make_renderer(_settings("wan", tiny_wan_dir)).backend_id


def test_missing_draft_lora_names_the_download_command(tiny_wan_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingCheckpointError) as err:
        vd.make_renderer(_settings("wan", tiny_wan_dir, quality="draft"))  # default: the 1.3B distill LoRA
    repo, _, path = vd.SELF_FORCING_1_3B.partition("/")[2].partition("/")
    assert f"hf download Kijai/{repo} {path}" in str(err.value)
    with pytest.raises(MissingCheckpointError, match="no such LoRA"):
        vd.make_renderer(_settings("wan", tiny_wan_dir, quality="draft", draft_lora=str(tmp_path / "nope.safetensors")))
    with pytest.raises(ValueError, match="no draft LoRA is known for mochi"):
        vd.draft_quality(vd.MOCHI, vd.MOCHI.default_model, "")


# --------------------------------------------------------------------------------------------- newer Wan


def test_wan22_and_vace_are_detected_from_the_pipeline_folder(tiny_wan22_a14b_dir, tiny_wan22_ti2v_dir, tiny_vace_dir):
    assert vd.detect_family("wan", str(tiny_wan22_a14b_dir)) is vd.WAN22_A14B
    assert vd.detect_family("wan", str(tiny_wan22_ti2v_dir)) is vd.WAN22_TI2V
    assert vd.detect_family("wan", str(tiny_vace_dir)) is vd.WAN_VACE
    # by name when there is no folder yet (the planner's view of a hub id)
    assert vd.spec_for("wan", "Wan-AI/Wan2.2-TI2V-5B-Diffusers") == vd.WAN22_TI2V.spec
    assert vd.detect_family("wan", "Wan-AI/Wan2.2-T2V-A14B-Diffusers") is vd.WAN22_A14B
    assert vd.detect_family("wan", "Wan-AI/Wan2.1-VACE-14B-diffusers").size_for("Wan2.1-VACE-14B") == (1280, 720)
    ti2v = vd.WAN22_TI2V.spec
    assert (ti2v.native_fps, ti2v.frame_multiple, ti2v.frame_offset) == (24.0, 4, 1) and ti2v.frames_for(
        ti2v.max_seconds
    ) == 121
    assert vd.WAN22_TI2V.size_for(vd.WAN22_TI2V.default_model) == (1280, 704)
    with pytest.raises(ValueError, match="not one of backend 'mochi'"):
        vd.detect_family("mochi", str(tiny_vace_dir))


def test_wan22_a14b_uses_both_experts(tiny_wan22_a14b_dir, tmp_path):
    r = vd.make_renderer(_settings("wan", tiny_wan22_a14b_dir, steps=6))
    assert r.name == "wan2.2-a14b" and r.backend_id.startswith("wan2.2-a14b:")
    pipe = r.pipeline()
    high, low = _Forwards(pipe.transformer), _Forwards(pipe.transformer_2)
    info = r(_job(0, 0.5), tmp_path / "a14b.mp4")
    high.remove(), low.remove()
    assert info.frames == 9 and high.n > 0 and low.n > 0 and high.n + low.n == 12


def test_wan22_a14b_draft_fuses_into_both_experts(tiny_wan22_a14b_dir, tiny_wan_lora):
    import torch

    base = vd.make_renderer(_settings("wan", tiny_wan22_a14b_dir)).pipeline()
    w = [base.transformer.blocks[0].attn1.to_q.weight.clone(), base.transformer_2.blocks[0].attn1.to_q.weight.clone()]
    r = vd.make_renderer(_settings("wan", tiny_wan22_a14b_dir, quality="draft", draft_lora=str(tiny_wan_lora)))
    pipe = r.pipeline("draft")
    assert not torch.equal(pipe.transformer.blocks[0].attn1.to_q.weight, w[0])
    assert not torch.equal(pipe.transformer_2.blocks[0].attn1.to_q.weight, w[1])


def test_wan22_ti2v_renders_at_24_fps(tiny_wan22_ti2v_dir, tmp_path):
    r = vd.make_renderer(_settings("wan", tiny_wan22_ti2v_dir))
    info = r(_job(0, 0.5), tmp_path / "ti2v.mp4")
    assert r.name == "wan2.2-ti2v" and (info.frames, info.fps, info.width) == (13, 24.0, 32)
    assert _probe(info.path)["frames"] == 13


# --------------------------------------------------------------------------------------------- reference identity


def _reference_png(path: Path, color: tuple[int, int, int]) -> Path:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (48, 48), color)
    ImageDraw.Draw(im).ellipse((8, 8, 40, 40), fill=(255 - color[0], 40, 200))
    im.save(path)
    return path


def test_reference_image_reaches_vace_and_changes_the_clip(tiny_vace_dir, tmp_path):
    """identity='reference': the image is VAE-encoded into VACE's conditioning input (one more latent
    frame in `control_hidden_states`, seen by hooks on the transformer), the denoiser's output follows
    its content, and the clip differs from the text-only one."""
    import hashlib

    import numpy as np
    import torch

    red = _reference_png(tmp_path / "red.png", (220, 30, 30))
    blue = _reference_png(tmp_path / "blue.png", (20, 40, 230))
    job = _job(0, 0.5)
    seen = {}
    for name, ref in (("text", None), ("red", red), ("blue", blue)):
        extra = {"identity": "reference", "reference": str(ref)} if ref else {}
        r = vd.make_renderer(_settings("wan", tiny_vace_dir, **extra))
        assert r.name == "wan-vace"
        if ref:
            assert r.backend_id.endswith("+ref:sha256:" + hashlib.sha256(ref.read_bytes()).hexdigest())
        tr = r.pipeline().transformer
        got = {"control": [], "out": []}
        hooks = [
            tr.register_forward_pre_hook(
                lambda m, a, kw, got=got: got["control"].append(kw["control_hidden_states"]), with_kwargs=True
            ),
            tr.register_forward_hook(lambda m, a, kw, out, got=got: got["out"].append(out[0]), with_kwargs=True),
        ]
        frames, _ = _frames(r, job)
        for h in hooks:
            h.remove()
        seen[name] = (frames, got["control"][0], got["out"][0])
    (text, c_text, _), (red_px, c_red, o_red), (_, c_blue, o_blue) = seen["text"], seen["red"], seen["blue"]
    assert c_red.shape[2] == c_text.shape[2] + 1  # the reference image's latent frame leads the conditioning
    assert not torch.allclose(c_red[:, :, 0], c_blue[:, :, 0]) and torch.equal(c_red[:, :, 1:], c_blue[:, :, 1:])
    assert float((o_red - o_blue).norm() / o_red.norm()) > 1e-5  # the denoiser follows the image's content
    assert text.shape == red_px.shape == (9, 32, 32, 3)  # the pipeline strips the reference frame from the clip
    assert np.abs(red_px - text).mean() > 0.5


def test_reference_identity_needs_vace_and_an_image(tiny_wan_dir, tiny_vace_dir, tmp_path):
    with pytest.raises(ValueError, match="Wan VACE"):
        vd.make_renderer(_settings("wan", tiny_wan_dir, identity="reference", reference=str(tmp_path / "x.png")))
    with pytest.raises(FileNotFoundError, match="render.reference"):
        vd.make_renderer(_settings("wan", tiny_vace_dir, identity="reference", reference=""))


# --------------------------------------------------------------------------------------------- speed options


def test_speed_options_compile_by_default_on_cuda_only():
    s = RenderSettings(backend="wan")
    assert vd.SpeedOptions.of(s, "cuda").compile == "default" and vd.SpeedOptions.of(s, "cuda:1").compile == "default"
    assert vd.SpeedOptions.of(s, "cpu").compile == ""
    assert vd.SpeedOptions.of(s.model_copy(update={"compile": True}), "cpu").compile == "default"
    assert vd.SpeedOptions.of(s.model_copy(update={"compile_mode": "off", "compile": True}), "cuda").compile == ""
    mode = "max-autotune-no-cudagraphs"
    assert vd.SpeedOptions.of(s.model_copy(update={"compile_mode": mode}), "cpu").compile == mode


def test_fp8_needs_a_recent_gpu(tiny_wan_dir):
    r = vd.make_renderer(_settings("wan", tiny_wan_dir, quantization="fp8"))
    with pytest.raises(ValueError, match="compute capability 8.9"):
        r.pipeline()
