"""Issue 29, a song's draft faster than the song: the tiny video decoder (TAEHV), two scenes per GPU
worker (one denoising while the other encodes) and the GPU workers started while the CPU stages run.

Tiny random models built offline (tests/video_fixtures.py) through the same code as real
checkpoints; the "GPU worker" layouts run on the CPU (CUDA_VISIBLE_DEVICES is only set).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from soundsight.errors import MissingCheckpointError
from soundsight.models.base import SceneJob
from soundsight.models.render import diffusion as vd
from soundsight.models.render import gpu_pool
from soundsight.models.render.diffusion import draft as draft_module
from soundsight.models.render.diffusion import tiny_decoder as td
from soundsight.models.render.lora import file_fingerprint
from soundsight.settings import RenderSettings
from tests.video_fixtures import _tiny_wan_transformer, write_tiny_decoder, write_wan_lora

NARROW = td.TinyDecoderConfig(widths=(8, 8, 8, 8))  # the published layout at width 8: seconds on 2 cores


@pytest.fixture(autouse=True)
def _fresh_cache():
    vd.clear_pipeline_cache()
    yield
    vd.clear_pipeline_cache()


def _settings(model: Path, **kw) -> RenderSettings:
    base = dict(backend="wan", model=str(model), dtype="float32", device="cpu", steps=2, model_width=32,
                model_height=32, compile_mode="off")  # fmt: skip
    return RenderSettings(**{**base, **kw})


def _job(index: int, seconds: float = 0.5, seed: int = 7) -> SceneJob:
    return SceneJob(index=index, prompt=f"a red fox runs through a neon city, scene {index}", caption="",
                    negative_prompt="", seed=seed, seconds=seconds, frames=int(seconds * 24), fps=24, width=64,
                    height=64)  # fmt: skip


class _Calls:
    """Counts a module's forward calls (a hook: the module itself runs)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, *_):
        self.n += 1


# --------------------------------------------------------------------------------------------- the decoder


def test_published_layout_in_both_file_formats(tmp_path):
    """A decoder written as the published taew2_1 files are (fp16 ``decoder.N.*`` keys; .pth and .safetensors)."""
    for suffix in (".pth", ".safetensors"):
        path = write_tiny_decoder(tmp_path / f"taew2_1{suffix}", seed=3)
        model = td.load_tiny_decoder(path, latent_channels=16)
        assert model.config == td.TAE_CONFIGS["taew2_1"]
        assert sum(p.numel() for p in model.parameters()) == 9_844_611  # the decoder half of the 22.7 MB file
        assert tuple(model.state_dict()["decoder.13.conv.weight"].shape) == (256, 128, 1, 1)  # TGrow x2
    a, b = (td.load_tiny_decoder(tmp_path / f"taew2_1{s}") for s in (".pth", ".safetensors"))
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_a_wrong_file_is_one_clear_error(tmp_path, tiny_wan_lora):
    ti2v = write_tiny_decoder(tmp_path / "taew2_2.safetensors", td.TinyDecoderConfig(48, 2, (8, 8, 8, 8)))
    with pytest.raises(ValueError, match=r"decodes 48-channel latents; this model's have 16 .*taew2_1"):
        td.load_tiny_decoder(ti2v, latent_channels=16)
    with pytest.raises(ValueError, match=r"is not a TAEHV video decoder: it has no decoder.1.weight"):
        td.load_tiny_decoder(tiny_wan_lora)


def test_frame_count_size_and_chunks():
    """21 latent frames -> 81 frames (x4, the first 3 dropped), x8 in space; Wan 2.2's x16 with pixel shuffle;
    chunked decoding gives the one-pass result."""
    torch.manual_seed(0)
    model = td.TinyVideoDecoder(NARROW).eval()
    frames = td.decode_latents(model, torch.randn(1, 16, 21, 6, 10))
    assert frames.shape == (81, 48, 80, 3) and float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    assert td.decode_latents(model, torch.randn(1, 16, 1, 60, 104)).shape == (1, 480, 832, 3)
    z = torch.randn(1, 16, 9, 6, 10)
    whole, chunked = td.decode_latents(model, z), td.decode_latents(model, z, chunk=td.DECODE_CHUNK)
    assert float((whole - chunked).abs().max()) < 1e-5
    ti2v = td.TinyVideoDecoder(td.TinyDecoderConfig(48, 2, (8, 8, 8, 8))).eval()
    assert td.decode_latents(ti2v, torch.randn(1, 48, 3, 2, 3)).shape == (9, 32, 48, 3)


def test_a_draft_clip_is_decoded_by_the_tiny_decoder(tiny_wan_dir, tiny_wan_lora, tiny_wan_decoder, tmp_path):
    """Draft with a decoder: the VAE never runs, the clip has the VAE path's frame count, size and type, the
    backend id names the decoder's revision; a final scene of the same run decodes with the VAE."""
    s = _settings(tiny_wan_dir, quality="draft", draft_lora=str(tiny_wan_lora), draft_decoder=str(tiny_wan_decoder),
                  final_scenes=[1])  # fmt: skip
    r = vd.make_renderer(s)
    assert r.backend_id.endswith(f"+decoder[taew2_1.safetensors@sha256:{file_fingerprint(tiny_wan_decoder)}]")
    pipe = r.pipeline("draft")
    loaded = r.pipeline_for("cpu", r.draft)
    vae, tiny = _Calls(pipe.vae.decoder), _Calls(loaded.decoder)
    frames, record = r.generate(_job(0))
    assert (vae.n, tiny.n) == (0, 1) and record["decoder"] == "tiny" and record["decode_s"] > 0
    assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8

    final = r.pipeline("final")
    vae = _Calls(final.vae.decoder)
    final_frames, record = r.generate(_job(1))
    assert vae.n > 0 and record["decoder"] == "vae" and record["decode_s"] == 0
    assert final_frames.shape == frames.shape and final_frames.dtype == frames.dtype
    info = r(_job(0), tmp_path / "draft.mp4")
    assert (info.frames, info.width, info.height) == (9, 32, 32)


def test_the_default_decoder_comes_from_the_hub_cache_else_the_vae_with_a_note(
    tiny_wan_dir, tiny_wan_lora, tiny_wan_decoder, tmp_path, monkeypatch, caplog
):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(draft_module, "_NOTED", set())
    s = _settings(tiny_wan_dir, quality="draft", draft_lora=str(tiny_wan_lora))
    with caplog.at_level(logging.WARNING, logger="soundsight.render"):
        ids = {vd.make_renderer(s).backend_id for _ in range(3)}
    notes = [r.message for r in caplog.records if "tiny video decoder" in r.message]
    assert len(ids) == 1 and "+decoder[" not in ids.pop() and len(notes) == 1  # once per process
    assert "hf download lightx2v/Autoencoders taew2_1.safetensors" in notes[0]
    assert "https://github.com/madebyollin/taehv/raw/main/safetensors/taew2_1.safetensors" in notes[0]

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lightx2v--Autoencoders"
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(tiny_wan_decoder, repo / "snapshots" / commit / "taew2_1.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    r = vd.make_renderer(s)
    assert r.backend_id.endswith(f"+decoder[lightx2v/Autoencoders/taew2_1.safetensors@{commit}]")
    assert r.generate(_job(0))[1]["decoder"] == "tiny"
    assert "+decoder[" not in vd.make_renderer(s.model_copy(update={"draft_decoder": "vae"})).backend_id


def test_a_named_decoder_that_is_missing_stops_the_run(tiny_wan_dir, tiny_wan_lora, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = _settings(tiny_wan_dir, quality="draft", draft_lora=str(tiny_wan_lora))
    with pytest.raises(MissingCheckpointError) as err:
        vd.make_renderer(s.model_copy(update={"draft_decoder": str(tmp_path / "nope.safetensors")}))
    assert "no such file or folder" in str(err.value)
    assert "hf download lightx2v/Autoencoders taew2_1.safetensors" in str(err.value)
    assert "github.com/madebyollin/taehv" in str(err.value)
    with pytest.raises(MissingCheckpointError, match="hf download someone/decoders taew2_1.pth"):
        vd.make_renderer(s.model_copy(update={"draft_decoder": "someone/decoders/taew2_1.pth"}))


def test_vace_with_a_reference_decodes_the_clip_without_the_reference_frame(tiny_vace_dir, tiny_wan_decoder, tmp_path):
    from PIL import Image

    lora = write_wan_lora(_tiny_wan_transformer("WanVACETransformer3DModel", num_layers=3, vace_layers=[0, 2],
                                                vace_in_channels=96), tmp_path / "vace_lora.safetensors")  # fmt: skip
    Image.new("RGB", (32, 32), (200, 40, 40)).save(tmp_path / "ref.png")
    s = _settings(tiny_vace_dir, identity="reference", reference=str(tmp_path / "ref.png"), quality="draft",
                  draft_lora=str(lora), draft_decoder=str(tiny_wan_decoder))  # fmt: skip
    frames, record = vd.make_renderer(s).generate(_job(0))
    assert record["decoder"] == "tiny" and frames.shape == (9, 32, 32, 3)  # 3 latent frames, not 4


# --------------------------------------------------------------------------------------------- two scenes per GPU


def test_a_gpu_worker_encodes_one_scene_while_the_next_takes_the_pipeline(tiny_wan_dir, tmp_path):
    """One GPU-layout worker (two scene threads), three scenes claiming a scene slot each: every scene's
    clip is written, the pipeline is built once, a scene takes the pipeline before the one before it
    has finished writing its clip, and each scene's cost is its own (looked up by index)."""
    from distributed import Client

    settings = _settings(tiny_wan_dir, palette_strength=0.0)

    def render(index: int, out: str) -> dict:
        from soundsight.models.render.diffusion import WAN_BACKEND

        clip = WAN_BACKEND.make(settings)(_job(index, seed=index), Path(out))
        return {"frames": clip.frames, "gpu_seconds": WAN_BACKEND.costs(index).gpu_seconds}

    with (
        gpu_pool.make_cluster(kind="cuda", gpus=["0"], use_dask_cuda=False) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        claim = {"GPU": gpu_pool.GPU_PER_SCENE}
        futures = [client.submit(render, i, str(tmp_path / f"s{i}.mp4"), resources=claim, pure=False) for i in range(3)]
        results = client.gather(futures)
        records = next(iter(client.run(vd.render_stats).values()))
        builds = next(iter(client.run(vd.construction_counts).values()))
    assert [r["frames"] for r in results] == [9, 9, 9] and all((tmp_path / f"s{i}.mp4").is_file() for i in range(3))
    assert list(builds.values()) == [1]
    by_start = sorted(records, key=lambda r: r["started"])
    assert any(later["started"] < earlier["ended"] for earlier, later in zip(by_start, by_start[1:])), by_start
    by_index = {r["index"]: r for r in records}
    assert [r["gpu_seconds"] for r in results] == [by_index[i]["render_s"] for i in range(3)]


def test_a_pipeline_replaced_for_another_quality_finishes_its_scene_first(tiny_wan_dir, tiny_wan_lora):
    """A final scene arriving while a draft scene holds the draft pipeline waits for it, then retires it."""
    import threading

    s = _settings(tiny_wan_dir, quality="draft", draft_lora=str(tiny_wan_lora), final_scenes=[1])
    r = vd.make_renderer(s)
    draft = r.pipeline_for("cpu", r.draft)
    order = []
    with draft.lock:  # a draft scene is "on the GPU"
        final = threading.Thread(target=lambda: order.append(("final", r.generate(_job(1))[1]["quality"])))
        final.start()
        time.sleep(1.0)
        order.append(("draft done", draft.retired))
    final.join()
    assert order == [("draft done", False), ("final", "final")] and draft.retired
    assert r.generate(_job(0))[1]["quality"] == "draft"  # a retired pipeline is never called: rebuilt


# --------------------------------------------------------------------------------------------- early start


def test_the_warm_up_starts_the_workers_and_loads_their_pipelines(tiny_wan_dir):
    """GpuWarmUp.start: a cluster on a thread of its own, each worker's pipeline built before any scene;
    address() hands it over; close() closes it. Without GPU workers (animatic) it starts nothing."""
    from distributed import Client

    from soundsight.flows.fan_out import GpuWarmUp

    with GpuWarmUp(_settings(tiny_wan_dir)) as warm:
        warm.start()
        warm.start()  # once only
        address = warm.address()
        with Client(address, set_as_default=False) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                built = client.run(vd.construction_counts)
                if len(built) == 2 and all(list(b.values()) == [1] for b in built.values()):
                    break
                time.sleep(0.5)
            assert len(built) == 2 and all(list(b.values()) == [1] for b in built.values()), built
            assert all(not s for s in client.run(vd.render_stats).values())  # no scene has run
        cluster = warm._cluster
    assert cluster.status.name == "closed" and warm.address() == ""
    animatic = GpuWarmUp(RenderSettings())
    animatic.start()
    assert animatic.address() == "" and animatic._thread is None
