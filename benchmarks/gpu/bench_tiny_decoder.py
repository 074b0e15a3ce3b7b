"""The draft's tiny decoder (TAEHV) vs Wan's VAE: FLOPs of one 480x832x81 clip, and time per clip.

    python benchmarks/gpu/bench_tiny_decoder.py --cuda --out decoders.json   # GPU: 480x832x81, both decoders
    python benchmarks/gpu/bench_tiny_decoder.py [--frames 81 --height 96 --width 160]   # FLOPs + CPU time

FLOPs: torch.utils.flop_counter on meta tensors (no compute), convs/matmuls only (what dominates
both decoders). CPU: median of --reps decodes of the same random latents, after one warm-up, with
torch's default threads on this box. Models: the real-size TAEHV decoder (taew2_1 shapes), the
real-size Wan 2.1 VAE (``AutoencoderKLWan()`` defaults, float32, as the renderer loads it) and the
test suite's tiny random VAE (tests/video_fixtures.py), all random weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from soundsight.models.render.diffusion import tiny_decoder as td


def random_decoder(config: td.TinyDecoderConfig = td.TAE_CONFIGS["taew2_1"], seed: int = 0) -> td.TinyVideoDecoder:
    """The real-size decoder with random weights (speed does not depend on their values)."""
    torch.manual_seed(seed)
    return td.TinyVideoDecoder(config).eval().requires_grad_(False)


def wan_vae(tiny: bool):
    from diffusers import AutoencoderKLWan

    if tiny:
        return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                temperal_downsample=[False, True, True])  # fmt: skip
    return AutoencoderKLWan()


def vae_decode(vae, z):
    vae.clear_cache() if hasattr(vae, "clear_cache") else None
    return vae.decode(z, return_dict=False)[0]


def tae_decode(model, z):
    return model(z.transpose(1, 2))


def flops(frames: int, h: int, w: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    t = (frames - 1) // 4 + 1
    out = {}
    with torch.device("meta"):
        z = torch.randn(1, 16, t, h // 8, w // 8)
        for name, model, fn in (
            ("taehv_decoder", td.TinyVideoDecoder(), tae_decode),
            ("wan_vae", wan_vae(False), vae_decode),
        ):
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                y = fn(model, z)
            out[name] = {"tflop": round(counter.get_total_flops() / 1e12, 3), "out_shape": list(y.shape)}
    return out


def cpu_time(frames: int, h: int, w: int, reps: int) -> dict:
    t = (frames - 1) // 4 + 1
    z = torch.randn(1, 16, t, h // 8, w // 8, generator=torch.Generator().manual_seed(0))
    rows = {}
    for name, model, fn in (
        ("taehv_decoder (real size, 9.8 M params)", random_decoder(), tae_decode),
        ("wan_vae (real size, 127 M params)", wan_vae(False).eval(), vae_decode),
        ("wan_vae (tests' tiny random)", wan_vae(True).eval(), vae_decode),
    ):
        times = []
        with torch.no_grad():
            for i in range(reps + 1):
                t0 = time.perf_counter()
                y = fn(model, z)
                if i:
                    times.append(time.perf_counter() - t0)
        frames_out = y.shape[1] if "taehv" in name else y.shape[2]
        rows[name] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(x, 3) for x in times],
                      "frames_out": int(frames_out)}  # fmt: skip
    return rows


def gpu_time(reps: int = 5) -> dict:
    """On CUDA, 480x832x81: TAEHV decoder (fp16 as the renderer runs it, bf16; one pass and the renderer's
    chunks) vs Wan's VAE (float32, as the renderer loads it)."""
    t = 21
    z = torch.randn(1, 16, t, 60, 104, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    rows = {}

    def timed(fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            fn()  # warm-up (cuDNN autotune)
            times = []
            for _ in range(reps):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                torch.cuda.synchronize()
                times.append(a.elapsed_time(b) / 1e3)
        return {
            "median_s": round(statistics.median(times), 4),
            "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
        }

    for dtype in (torch.float16, torch.bfloat16):
        model = random_decoder().to("cuda", dtype)
        for chunk in (td.DECODE_CHUNK, 0):
            run = lambda m=model, c=chunk: (td.decode_latents(m, z, chunk=c) * 255 + 0.5).to(torch.uint8).cpu()  # noqa: E731
            rows[f"taehv {str(dtype)[6:]} chunk={chunk}"] = timed(run)
    vae = wan_vae(False).to("cuda").eval()
    rows["wan_vae float32"] = timed(lambda: vae_decode(vae, z).cpu())
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cuda", action="store_true", help="time both decoders on the GPU at 480x832x81")
    args = ap.parse_args()
    if args.cuda:
        report = {"gpu": torch.cuda.get_device_name(), "decode_480x832x81": gpu_time()}
        print(json.dumps(report, indent=1))
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
        return 0
    report = {"flops_480x832x81": flops(81, 480, 832), "threads": torch.get_num_threads()}
    print(json.dumps(report["flops_480x832x81"]), flush=True)
    report[f"cpu_{args.height}x{args.width}x{args.frames}"] = cpu_time(args.frames, args.height, args.width, args.reps)
    f = report["flops_480x832x81"]
    report["flop_ratio_vae_over_tae"] = round(f["wan_vae"]["tflop"] / f["taehv_decoder"]["tflop"], 1)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
