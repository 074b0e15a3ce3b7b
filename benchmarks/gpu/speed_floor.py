"""How close the render path gets to the GPU's bf16 floor, and what every model costs per clip.

One script, one GPU call: every part builds real-size models with random weights directly on the
GPU from their configs (speed does not depend on weight values), times with CUDA events (median
after warm-up) and appends a JSON record to ``OUT/speed_floor.json`` as soon as it has one, so a
call cut short still reports. Parts, in priority order (each skipped when the time budget left
is below its estimate):

ceilings   bf16 matmul rate and the attention kernel alone at Wan 1.3B's shape (the floor's terms)
wan13      Wan 2.1 1.3B transformer forward, 480x832x81: eager vs regional torch.compile (default,
           reduce-overhead = CUDA graphs, max-autotune-no-cudagraphs when 200 s are left), FP8
           (torchao) + compile, SageAttention 1 (Triton), and their combinations (--variants)
draft      draft vs final per clip through `DiffusionClipRenderer.generate` on a saved random
           checkpoint with a random real-size LoRA (load_lora_weights + fuse), 4 steps, no CFG
vace       Wan 2.1 VACE 1.3B pipeline, reference image vs text only, per scene
wan14      Wan 2.1 14B (= each Wan 2.2 A14B expert) forward at 720p and 480p, VAE decode at 720p
ti2v       Wan 2.2 TI2V-5B forward at 1280x704x121 and the Wan 2.2 VAE decode
mochi      Mochi-1 forward at 480x848x163 and its VAE decode

``--tiny`` runs the same code on the CPU with the test suite's tiny models (a smoke test).

    python3 benchmarks/gpu/speed_floor.py --out OUT --budget 560
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T0 = time.perf_counter()
RESULTS: list[dict] = []
ARGS: argparse.Namespace


def soundsight_importable() -> None:
    """Make ``soundsight.models`` importable from a source checkout that is not pip-installed.

    The repository maps ``models/`` to ``soundsight.models`` at install time; on a bare GPU box
    an alias folder (a copy of ``soundsight/`` with ``models/`` inside) does the same.
    """
    try:
        import soundsight.models.base  # noqa: F401

        return
    except ImportError:
        pass
    import shutil
    import tempfile

    alias = Path(tempfile.mkdtemp(prefix="soundsight-alias-"))
    shutil.copytree(ROOT / "soundsight", alias / "soundsight")
    shutil.copytree(ROOT / "models", alias / "soundsight" / "models")
    sys.path.insert(0, str(alias))
    for name in [m for m in sys.modules if m == "soundsight" or m.startswith("soundsight.")]:
        del sys.modules[name]


def left() -> float:
    """Seconds of the budget left."""
    return ARGS.budget - (time.perf_counter() - T0)


def record(part: str, **data) -> dict:
    """Append one result and rewrite the JSON file."""
    row = {"part": part, "t_s": round(time.perf_counter() - T0, 1), **data}
    RESULTS.append(row)
    print(json.dumps(row, default=str), flush=True)
    Path(ARGS.out, "speed_floor.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    return row


def cuda() -> bool:
    import torch

    return torch.cuda.is_available() and not ARGS.tiny


def device() -> str:
    return "cuda" if cuda() else "cpu"


def sync() -> None:
    import torch

    if cuda():
        torch.cuda.synchronize()


def timed(fn, warmup: int = 2, reps: int = 5) -> tuple[float, list[float]]:
    """Median and all times of `fn` in ms (CUDA events on the GPU), after `warmup` calls."""
    import torch

    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(reps):
        if cuda():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out), [round(x, 2) for x in out]


def wall(fn) -> tuple[float, object]:
    """Wall seconds of `fn` (synchronised) and its result."""
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def rel(a, b) -> float:
    """||a - b|| / ||b|| in float32."""
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def peak_gb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if cuda() else 0.0


def free() -> None:
    import torch

    gc.collect()
    if cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@contextlib.contextmanager
def default_dtype(dtype):
    import torch

    was = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(was)


def as_loaded(model):
    """bf16 with the modules from_pretrained keeps in float32 (`_keep_in_fp32_modules`) in float32."""
    import torch

    model.to(torch.bfloat16)
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, p in model.named_parameters():
        if keep & set(name.split(".")):
            p.data = p.data.float()
    return model.eval().requires_grad_(False)


def build(cls_name: str, cfg: dict, tiny_cfg: dict | None = None):
    """A diffusers model with random weights, built on the device in bf16 (tiny config on --tiny)."""
    import diffusers
    import torch

    torch.manual_seed(0)
    cls = getattr(diffusers, cls_name)
    with torch.device(device()), default_dtype(torch.bfloat16):
        model = cls(**(tiny_cfg if ARGS.tiny else cfg))
    return as_loaded(model)


def tiny_tr(**extra) -> dict:
    from benchmarks.gpu.wan_bench_lib import WAN_TINY_TRANSFORMER

    return dict(WAN_TINY_TRANSFORMER, **extra)


def wan_inputs(tr, frames: int, h: int, w: int, spatial: int = 8, text_tokens: int = 512):
    """Latents, timestep and text states for one Wan forward at frames x h x w pixels."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(1)
    c = tr.config.in_channels
    lat = (1, c, (frames - 1) // 4 + 1, h // spatial, w // spatial)
    x = torch.randn(lat, generator=g).to(device(), torch.bfloat16)
    enc = torch.randn(1, text_tokens, tr.config.text_dim, generator=g).to(device(), torch.bfloat16)
    t = torch.tensor([500.0], device=device())
    p = tr.config.patch_size
    tokens = lat[2] // p[0] * (lat[3] // p[1]) * (lat[4] // p[2])
    return {"hidden_states": x, "timestep": t, "encoder_hidden_states": enc, "return_dict": False}, tokens


def wan_flops(tokens: int, dim: int, ffn: int, layers: int, text: int = 512) -> float:
    """Matmul FLOPs of one Wan forward: self-attention (projections + QK^T + PV), cross-attention, FFN."""
    per = 8 * tokens * dim * dim + 4 * tokens * tokens * dim  # self-attn proj + core
    per += 4 * tokens * dim * dim + 4 * text * dim * dim + 4 * tokens * text * dim  # cross-attn
    per += 4 * tokens * dim * ffn
    return per * layers


def forward_row(part: str, variant: str, tr, inputs: dict, ref=None, warmup: int = 2, reps: int = 5, pre=None, **extra):
    """Time `tr(**inputs)`; record median ms, rel. diff vs `ref`, peak memory.

    `pre` runs before every call (e.g. ``torch.compiler.cudagraph_mark_step_begin`` for CUDA graphs).
    """
    import torch

    def call():
        if pre is not None:
            pre()
        return tr(**inputs)[0]

    free()
    with torch.inference_mode():
        t_first, out = wall(lambda: call().clone())
        ms, all_ms = timed(call, warmup=max(0, warmup - 1), reps=reps)
    row = record(
        part,
        variant=variant,
        ms_per_forward=round(ms, 2),
        times_ms=all_ms,
        first_call_s=round(t_first, 2),
        rel_diff_vs_eager=None if ref is None else rel(out, ref),
        peak_gb=round(peak_gb(), 2),
        **extra,
    )
    return row, out


class ForwardClock:
    """Counts and times (synchronised wall clock) a module's forward calls through hooks."""

    def __init__(self, module):
        self.n, self.ms, self._t = 0, 0.0, 0.0
        self.hooks = [module.register_forward_pre_hook(self._before), module.register_forward_hook(self._after)]

    def _before(self, *_):
        sync()
        self._t = time.perf_counter()

    def _after(self, *_):
        sync()
        self.n += 1
        self.ms += (time.perf_counter() - self._t) * 1e3

    def reset(self) -> None:
        self.n, self.ms = 0, 0.0

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def uncompile(model) -> None:
    """Undo `nn.Module.compile` on every submodule (back to eager)."""
    import torch

    for m in model.modules():
        if getattr(m, "_compiled_call_impl", None) is not None:
            m._compiled_call_impl = None
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------


def part_env() -> None:
    import subprocess

    import torch

    info = {"torch": torch.__version__, "python": sys.version.split()[0]}
    for mod in ("diffusers", "transformers", "torchao", "peft", "triton"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001 - report what is missing
            info[mod] = f"unavailable: {exc}"[:120]
    if cuda():
        info["card"] = torch.cuda.get_device_name(0)
        info["capability"] = torch.cuda.get_device_capability(0)
        with contextlib.suppress(Exception):
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            ).stdout.strip()
    record("env", **info)


def part_ceilings() -> None:
    import torch
    import torch.nn.functional as F

    n = 256 if ARGS.tiny else 8192
    a = torch.randn(n, n, device=device(), dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device(), dtype=torch.bfloat16)
    ms, _ = timed(lambda: a @ b, 3, 10)
    record("ceilings", what=f"bf16 matmul {n}^3", ms=round(ms, 3), tflops=round(2 * n**3 / ms / 1e9, 1))
    s, h, d = (64, 2, 64) if ARGS.tiny else (32760, 12, 128)
    q, k, v = (torch.randn(1, h, s, d, device=device(), dtype=torch.bfloat16) for _ in range(3))
    ms, _ = timed(lambda: F.scaled_dot_product_attention(q, k, v), 2, 5)
    record(
        "ceilings",
        what=f"SDPA default backend, 1x{h}x{s}x{d} bf16 (Wan 1.3B self-attention)",
        ms=round(ms, 3),
        tflops=round(4 * s * s * d * h / ms / 1e9, 1),
        ms_x30_layers=round(30 * ms, 1),
    )


def sage_patch():
    """Route Wan's self-attention (no mask, equal lengths) through SageAttention 1's Triton kernel.

    diffusers' own 'sage' backend needs sageattention>=2.1.1, which PyPI has no wheel of; 1.0.6
    is pure Python + Triton. Returns an undo function.
    """
    import diffusers.models.transformers.transformer_wan as tw
    from sageattention import sageattn

    orig = tw.dispatch_attention_fn

    def dispatch(query, key, value, attn_mask=None, **kw):
        if attn_mask is None and query.shape[1] == key.shape[1] and query.shape[-1] in (64, 128):
            return sageattn(query, key, value, tensor_layout="NHD", is_causal=False)
        return orig(query, key, value, attn_mask=attn_mask, **kw)

    tw.dispatch_attention_fn = dispatch
    return lambda: setattr(tw, "dispatch_attention_fn", orig)


def compile_any(model, mode: str = "default") -> str:
    """Regional compile; full graphs when they trace, else each block with graph breaks allowed."""
    from soundsight.models.render import diffusion as vd

    try:
        vd.compile_blocks(model, mode)
        return "fullgraph"
    except Exception:  # noqa: BLE001 - compile is lazy; this catches only argument errors
        uncompile(model)
        kwargs = {} if mode == "default" else {"mode": mode}
        for block in model.blocks:
            block.compile(**kwargs)
        return "graph breaks allowed"


WAN13_VARIANTS = ("repeat", "compile", "cudagraphs", "fp8", "sage", "sage+compile", "fp8+sage+compile", "autotune")


def part_wan13() -> None:
    """Wan 1.3B forward variants (``--variants``), each guarded: one failing does not stop the rest."""
    import torch

    from benchmarks.gpu.wan_bench_lib import WAN_1_3B_TRANSFORMER
    from soundsight.models.render import diffusion as vd

    tr = build("WanTransformer3DModel", WAN_1_3B_TRANSFORMER, tiny_tr())
    f, h, w = (9, 32, 32) if ARGS.tiny else (81, 480, 832)
    inputs, tokens = wan_inputs(tr, f, h, w)
    cfg = tr.config
    flops = wan_flops(tokens, cfg.num_attention_heads * cfg.attention_head_dim, cfg.ffn_dim, cfg.num_layers)
    common = {"tokens": tokens, "tflop_per_forward": round(flops / 1e12, 2)}
    _, ref = forward_row("wan13", "eager (SDPA default)", tr, inputs, **common)
    wanted = ARGS.variants.split(",")
    gpu_only = {"fp8", "sage", "sage+compile", "fp8+sage+compile", "autotune"}

    def variant(name: str, label: str, run) -> None:
        if name not in wanted or (name in gpu_only and not cuda()) or left() < 45:
            return
        undo = []
        try:
            run(undo)
        except Exception as exc:  # noqa: BLE001 - report and go on
            record("wan13", variant=label, error=repr(exc)[:400])
        finally:
            for fn in undo:
                fn()
            uncompile(tr)
            free()

    def plain(mode):
        def run(undo):
            how = compile_any(tr, mode)
            step = torch.compiler.cudagraph_mark_step_begin if mode == "reduce-overhead" else None
            forward_row(
                "wan13", f"regional compile, mode={mode}", tr, inputs, ref=ref, warmup=3, pre=step, how=how, **common
            )

        return run

    def compiled_row(model, label: str) -> None:
        """Regional compile with full graphs; if tracing fails at the first call, with graph breaks."""
        try:
            vd.compile_blocks(model, "default")
            forward_row("wan13", label, model, inputs, ref=ref, warmup=3, how="fullgraph", **common)
        except Exception as exc:  # noqa: BLE001 - e.g. a kernel dynamo cannot trace
            uncompile(model)
            for block in model.blocks:
                block.compile()
            how = f"graph breaks ({type(exc).__name__})"
            forward_row("wan13", label, model, inputs, ref=ref, warmup=3, how=how, **common)

    def fp8(with_sage: bool):
        def run(undo):
            q = copy.deepcopy(tr)
            vd.quantize_fp8(q)
            if ARGS.thorough and not with_sage:
                forward_row("wan13", "fp8 (torchao rowwise), eager", q, inputs, ref=ref, warmup=2, reps=3, **common)
            if with_sage:
                undo.append(sage_patch())
            label = "fp8 (torchao rowwise)" + (" + SageAttention 1" if with_sage else "") + " + regional compile"
            compiled_row(q, label)

        return run

    def sage(compiled: bool):
        def run(undo):
            undo.append(sage_patch())
            if compiled:
                compiled_row(tr, "SageAttention 1.0.6 (Triton INT8 QK) + regional compile")
            else:
                forward_row("wan13", "SageAttention 1.0.6 (Triton INT8 QK), eager", tr, inputs, ref=ref, **common)

        return run

    variant(
        "repeat",
        "eager, repeat",
        lambda undo: forward_row("wan13", "eager, repeat (noise)", tr, inputs, ref=ref, **common),
    )
    variant("compile", "compile", plain("default"))
    variant("cudagraphs", "compile reduce-overhead", plain("reduce-overhead"))
    variant("fp8", "fp8", fp8(False))
    variant("sage", "sage", sage(False))
    variant("sage+compile", "sage+compile", sage(True))
    variant("fp8+sage+compile", "fp8+sage+compile", fp8(True))
    if left() > 200:
        variant("autotune", "autotune", plain("max-autotune-no-cudagraphs"))
    tr = None
    free()


def save_random_wan(folder: Path, lora: Path) -> None:
    """A real-size Wan 2.1 1.3B pipeline with random weights (2-layer UMT5 stand-in) saved to
    `folder`, and a random LoRA for its transformer (rank 32, the public distill LoRAs' format)."""
    from benchmarks.gpu.wan_bench_lib import build_wan_pipeline
    from tests.video_fixtures import write_wan_lora

    pipe = build_wan_pipeline(ARGS.tiny, "small", device=device())
    pipe.save_pretrained(folder)
    write_wan_lora(pipe.transformer.cpu(), lora, rank=4 if ARGS.tiny else 32, seed=3)


def part_draft() -> None:
    import torch

    from soundsight.models.base import SceneJob
    from soundsight.models.render import diffusion as vd
    from soundsight.settings import RenderSettings

    folder, lora = Path("/tmp/ss-wan13"), Path("/tmp/ss-lora/draft.safetensors")
    t_save, _ = wall(lambda: save_random_wan(folder, lora))
    free()
    job = SceneJob(
        index=0,
        prompt="a red fox runs through a neon city at night, watercolor",
        caption="",
        negative_prompt="blurry, watermark",
        seed=7,
        seconds=0.5 if ARGS.tiny else 81 / 16,
        frames=120,
        fps=24,
        width=640,
        height=360,
    )
    size = {"model_width": 32, "model_height": 32} if ARGS.tiny else {}
    for quality in ("draft", "final"):
        # Final at 50 steps x CFG is 100 forwards: it runs 2 steps here, extrapolated per forward.
        s = RenderSettings(
            backend="wan",
            model=str(folder),
            device=device(),
            dtype="float32" if ARGS.tiny else "bfloat16",
            quality=quality,
            draft_lora=str(lora),
            steps=2,
            compile_mode="auto" if ARGS.thorough else "off",
            **size,
        )
        r = vd.make_renderer(s)
        t_build, loaded = wall(lambda r=r: r.pipeline_for(device(), r.quality_for(job)))
        pipe = loaded.pipe
        clock = ForwardClock(pipe.transformer)
        t_first, _ = wall(lambda r=r: r.generate(job))
        clock.reset()
        t_warm, (frames, stats) = wall(lambda r=r: r.generate(job))
        clock.remove()
        record(
            "draft",
            quality=quality,
            backend_id=r.backend_id[:160],
            build_s=round(t_build, 2),
            first_scene_s=round(t_first, 2),
            scene_s=round(t_warm, 2),
            forwards=clock.n,
            transformer_ms=round(clock.ms, 1),
            ms_per_forward=round(clock.ms / max(1, clock.n), 1),
            rest_s=round(t_warm - clock.ms / 1e3, 2),
            frames=list(frames.shape),
            save_checkpoint_s=round(t_save, 1),
        )
        del pipe, loaded
        vd.clear_pipeline_cache()
        free()
    _ = torch


def part_vace() -> None:
    import diffusers
    import torch
    from PIL import Image

    from benchmarks.gpu.wan_bench_lib import WAN_VACE_1_3B_TRANSFORMER, build_wan_pipeline

    base = build_wan_pipeline(ARGS.tiny, "small", device=device())
    tr = build(
        "WanVACETransformer3DModel",
        WAN_VACE_1_3B_TRANSFORMER,
        tiny_tr(num_layers=3, vace_layers=[0, 2], vace_in_channels=96),
    )
    vae = base.vae.to(torch.float32)
    pipe = diffusers.WanVACEPipeline(
        tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=vae, transformer=tr, scheduler=base.scheduler
    )
    pipe.set_progress_bar_config(disable=True)
    del base
    f, h, w = (9, 32, 32) if ARGS.tiny else (81, 480, 832)
    ref = Image.fromarray((torch.rand(h, w, 3) * 255).byte().numpy())

    def run(steps: int, reference: bool):
        g = torch.Generator("cpu").manual_seed(0)
        return pipe(
            prompt="a red fox",
            negative_prompt="blurry",
            reference_images=[ref] if reference else None,
            height=h,
            width=w,
            num_frames=f,
            num_inference_steps=steps,
            guidance_scale=5.0,
            generator=g,
            output_type="np",
        )

    clock = ForwardClock(tr)
    with torch.inference_mode():
        wall(lambda: run(1, True))  # warm-up (cuDNN, allocator)
        for reference in (False, True):
            clock.reset()
            t, _ = wall(lambda r=reference: run(2, r))
            fwd = clock.ms / max(1, clock.n)
            fixed = t - clock.ms / 1e3
            record(
                "vace",
                identity="reference" if reference else "text",
                forwards=clock.n,
                ms_per_forward=round(fwd, 1),
                fixed_s=round(fixed, 2),
                fixed_note="text encoding, VAE encode of the (empty) control video and reference, VAE decode",
                scene_50_steps_cfg_s=round(fixed + 100 * fwd / 1e3, 1),
                peak_gb=round(peak_gb(), 1),
            )
    clock.remove()
    pipe = tr = None
    free()


def vae_decode_row(part: str, vae, frames: int, h: int, w: int, **extra) -> None:
    import torch

    cfg = vae.config
    sp = getattr(cfg, "scale_factor_spatial", 8) or 8
    lat = torch.randn(1, cfg.z_dim, (frames - 1) // 4 + 1, h // sp, w // sp, device=device(), dtype=vae.dtype)
    free()
    with torch.inference_mode():
        t_first, _ = wall(lambda: vae.decode(lat, return_dict=False))
        t, _ = wall(lambda: vae.decode(lat, return_dict=False))
    record(
        part,
        what=f"VAE decode {frames}x{h}x{w}",
        first_s=round(t_first, 2),
        s=round(t, 2),
        peak_gb=round(peak_gb(), 1),
        **extra,
    )


def part_wan14() -> None:
    import diffusers
    import torch

    from benchmarks.gpu.wan_bench_lib import WAN_14B_TRANSFORMER
    from soundsight.models.render import diffusion as vd

    tr = build("WanTransformer3DModel", WAN_14B_TRANSFORMER, tiny_tr())
    cfg = tr.config
    # 720p (its default) eager; 480p eager and compiled (the compile ratio, at a quarter of the cost).
    for (f, h, w), compiled in (
        (((9, 32, 32), True),) if ARGS.tiny else (((81, 720, 1280), False), ((81, 480, 832), True))
    ):
        inputs, tokens = wan_inputs(tr, f, h, w)
        fl = wan_flops(tokens, cfg.num_attention_heads * cfg.attention_head_dim, cfg.ffn_dim, cfg.num_layers)
        extra = {"size": f"{f}x{h}x{w}", "tokens": tokens, "tflop_per_forward": round(fl / 1e12, 1)}
        _, ref = forward_row("wan14", "eager", tr, inputs, warmup=1, reps=2, **extra)
        if compiled and left() > 100:
            vd.compile_blocks(tr, "default")
            forward_row("wan14", "regional compile", tr, inputs, ref=ref, warmup=2, reps=3, **extra)
            uncompile(tr)
    del tr
    free()
    with torch.device(device()):
        vae = diffusers.AutoencoderKLWan(
            **({} if not ARGS.tiny else dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1))
        )
    vae_decode_row("wan14", vae.float().eval(), *((9, 32, 32) if ARGS.tiny else (81, 720, 1280)))
    del vae
    free()


def part_ti2v() -> None:
    import diffusers
    import torch

    from benchmarks.gpu.wan_bench_lib import WAN22_5B_TRANSFORMER, WAN22_VAE
    from soundsight.models.render import diffusion as vd

    tr = build("WanTransformer3DModel", WAN22_5B_TRANSFORMER, tiny_tr(in_channels=48, out_channels=48))
    f, h, w = (9, 32, 32) if ARGS.tiny else (121, 704, 1280)
    inputs, tokens = wan_inputs(tr, f, h, w, spatial=16)
    cfg = tr.config
    fl = wan_flops(tokens, cfg.num_attention_heads * cfg.attention_head_dim, cfg.ffn_dim, cfg.num_layers)
    extra = {"size": f"{f}x{h}x{w}", "tokens": tokens, "tflop_per_forward": round(fl / 1e12, 1)}
    _, ref = forward_row("ti2v", "eager", tr, inputs, warmup=1, reps=3, **extra)
    if (ARGS.thorough or ARGS.tiny) and left() > 80:
        vd.compile_blocks(tr, "default")
        forward_row("ti2v", "regional compile", tr, inputs, ref=ref, warmup=2, reps=3, **extra)
    del tr
    free()
    tiny_vae = dict(WAN22_VAE, base_dim=3, decoder_base_dim=None, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    with torch.device(device()):
        vae = diffusers.AutoencoderKLWan(**(tiny_vae if ARGS.tiny else WAN22_VAE))
    vae_decode_row("ti2v", vae.float().eval(), f, h, w)
    del vae
    free()


def part_mochi() -> None:
    import diffusers
    import torch

    from benchmarks.gpu.wan_bench_lib import MOCHI_TINY_TRANSFORMER

    # The class defaults are mochi-1-preview's config.
    tr = build("MochiTransformer3DModel", {}, MOCHI_TINY_TRANSFORMER)
    f, h, w = (13, 32, 32) if ARGS.tiny else (163, 480, 848)
    g = torch.Generator("cpu").manual_seed(0)
    lat = (1, 12, (f - 1) // 6 + 1, h // 8, w // 8)
    text = 16 if ARGS.tiny else 256
    inputs = {
        "hidden_states": torch.randn(lat, generator=g).to(device(), torch.bfloat16),
        "encoder_hidden_states": torch.randn(1, text, tr.config.text_embed_dim, generator=g).to(
            device(), torch.bfloat16
        ),
        "timestep": torch.tensor([500], device=device()),
        "encoder_attention_mask": torch.ones(1, text, dtype=torch.bool, device=device()),
        "return_dict": False,
    }
    tokens = lat[2] * lat[3] // 2 * lat[4] // 2
    params = sum(p.numel() for p in tr.parameters()) / 1e9
    forward_row("mochi", "eager", tr, inputs, warmup=1, reps=2, tokens=tokens, params_billion=round(params, 2))
    del tr
    free()
    if left() > 40:
        with torch.device(device()):
            vae = diffusers.AutoencoderKLMochi(
                **(
                    dict(
                        latent_channels=12,
                        out_channels=3,
                        encoder_block_out_channels=(32, 32, 32, 32),
                        decoder_block_out_channels=(32, 32, 32, 32),
                        layers_per_block=(1, 1, 1, 1, 1),
                    )
                    if ARGS.tiny
                    else {}
                )
            )
        vae = vae.to(torch.bfloat16).eval()
        lat_t = torch.randn(1, 12, lat[2], lat[3], lat[4], device=device(), dtype=torch.bfloat16)
        free()
        with torch.inference_mode():
            t, _ = wall(lambda: vae.decode(lat_t, return_dict=False))
        record("mochi", what=f"VAE decode {f}x{h}x{w} (first call, bf16)", s=round(t, 2), peak_gb=round(peak_gb(), 1))
        del vae
        free()


PARTS = {
    "env": (part_env, 5),
    "ceilings": (part_ceilings, 15),
    "wan13": (part_wan13, 120),
    "draft": (part_draft, 90),
    "vace": (part_vace, 60),
    "wan14": (part_wan14, 70),
    "ti2v": (part_ti2v, 35),
    "mochi": (part_mochi, 45),
}


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for speed_floor.json")
    ap.add_argument("--budget", type=float, default=560.0, help="seconds; parts that would not fit are skipped")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated, in order")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test)")
    ap.add_argument("--variants", default=",".join(WAN13_VARIANTS), help="wan13 variants to run")
    ap.add_argument(
        "--thorough",
        action="store_true",
        help="also FP8 eager, compiled draft/final scenes, compiled 14B (480p) and TI2V-5B (about +3 min)",
    )
    ARGS = ap.parse_args(argv)
    ARGS.out.mkdir(parents=True, exist_ok=True)
    soundsight_importable()
    for name in ARGS.parts.split(","):
        fn, estimate = PARTS[name]
        if left() < estimate and not ARGS.tiny:
            record(name, skipped=f"{left():.0f} s left, part needs ~{estimate} s")
            continue
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one part failing must not lose the others
            import traceback

            record(name, error=repr(exc)[:500], traceback=traceback.format_exc()[-1500:])
            free()
    record("done", total_s=round(time.perf_counter() - T0, 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
