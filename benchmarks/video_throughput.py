"""Wan 2.1 (1.3B) render-path throughput on GPUs, with random weights at real size.

Parts (each runs in its own process; `all` runs them in order and prints a summary):

  prepare   build the pipeline (real Wan2.1-1.3B transformer and VAE configs, a 2-layer
            text encoder of UMT5's width unless --text-encoder xxl) and save_pretrained it.
  forward   (b) ms per transformer denoising forward at 480x832, 81 frames, bf16, against the
            anchor 627.5 ms (one H100, diffusers defaults): attention backends, batched CFG,
            regional torch.compile; caching hooks (First Block Cache, Pyramid Attention
            Broadcast) timed over a whole denoising trajectory, with the change in the latents.
  oom       a real torch.OutOfMemoryError (GPU 0 capped by set_per_process_memory_fraction):
            the renderer steps down its memory ladder and still delivers the clip.

Whole scenes through the path users run (the CLI: Prefect flow, Dask fan-out, one worker per
GPU) are measured by benchmarks/gpu_end_to_end.py, not here.

Steps are few (--steps, default 4) so that everything fits in minutes; per-scene times scale
with steps, the pipeline load does not. --tiny runs the same code on CPU with tiny models.

  python benchmarks/video_throughput.py all --out OUTDIR [--gpus 1,2,4] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ANCHOR_MS = 627.5
PROMPT = "a red fox runs through a neon city at night, rain, cinematic, watercolor style"
NEGATIVE = "blurry, distorted faces, extra limbs, text, watermark, low quality, flicker"


def _settings(args, device: str = "auto"):
    from soundsight.settings import RenderSettings

    size = dict(model_width=64, model_height=64) if args.tiny else {}
    return RenderSettings(
        backend="wan",
        model=str(args.dir),
        dtype="float32" if args.tiny else "bfloat16",
        device=device,
        steps=args.steps,
        guidance_scale=5.0,
        negative_prompt=NEGATIVE,
        **size,
    )


def _jobs(n: int, seconds: float):
    from soundsight.models.base import SceneJob

    return [
        SceneJob(
            index=i,
            prompt=f"{PROMPT}, shot {i}",
            caption="",
            negative_prompt=NEGATIVE,
            seed=1000 + i,
            seconds=seconds,
            frames=int(seconds * 24),
            fps=24,
            width=1280,
            height=720,
        )
        for i in range(n)
    ]


def _seconds(args) -> float:
    return 0.5 if args.tiny else 81 / 16  # 81 frames at 16 fps


def _dump(path: Path | None, data: dict) -> None:
    print(json.dumps(data, indent=1, default=str), flush=True)
    if path:
        path.write_text(json.dumps(data, indent=1, default=str))


def _save_partial(args, res: dict) -> None:
    """Write what a part has so far, so a part cut off by its time limit still reports."""
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


def _env_info() -> dict:
    import torch

    info = {"torch": torch.__version__}
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except Exception:
        pass
    if torch.cuda.is_available():
        info["card"] = torch.cuda.get_device_name(0)
        info["gpus_visible"] = torch.cuda.device_count()
    return info


# ------------------------------------------------------------------------------------------------


def cmd_prepare(args) -> dict:
    import torch

    from benchmarks.gpu.wan_bench_lib import build_wan_pipeline, folder_gb

    if (Path(args.dir) / "model_index.json").is_file():
        return {"part": "prepare", "reused": str(args.dir), "folder_gb": folder_gb(args.dir), **_env_info()}
    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    pipe = build_wan_pipeline(args.tiny, args.text_encoder, device=device)
    t1 = time.perf_counter()
    pipe.save_pretrained(args.dir)
    t2 = time.perf_counter()
    params = {
        n: sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e9 for n in ("transformer", "text_encoder", "vae")
    }
    return {
        "part": "prepare",
        "build_s": t1 - t0,
        "save_s": t2 - t1,
        "folder_gb": folder_gb(args.dir),
        "params_billion": params,
        "text_encoder": "tiny" if args.tiny else args.text_encoder,
        **_env_info(),
    }


# ------------------------------------------------------------------------------------------------


def _timer(device: str):
    import torch

    def run(fn, warmup: int, reps: int) -> list[float]:
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(reps):
            if device.startswith("cuda"):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                torch.cuda.synchronize()
                out.append(a.elapsed_time(b))
            else:
                t = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t) * 1e3)
        return out

    return run


def _rel(a, b) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def cmd_forward(args) -> dict:
    import torch

    from soundsight.models.render import diffusion as vd

    device = "cpu" if args.tiny else "cuda"
    s = _settings(args, device)
    r = vd.make_renderer(s)
    pipe = vd.build_pipeline(vd.WAN, r.checkpoint, s.dtype, device, vd.MemoryOptions()).pipe
    tr = pipe.transformer
    dt = tr.dtype
    w, h = (64, 64) if args.tiny else (832, 480)
    frames = 9 if args.tiny else 81
    lat = (1, 16, (frames - 1) // 4 + 1, h // 8, w // 8)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(lat, generator=g).to(device, dt)
    enc = torch.randn(1, 512, tr.config.text_dim, generator=g).to(device, dt)
    t = torch.tensor([500.0], device=device)
    x2, enc2, t2 = torch.cat([x, x]), torch.cat([enc, enc.flip(1)]), t.repeat(2)
    timer = _timer(device)
    warm, reps = (1, 2) if args.tiny else (2, 5)
    res: dict = {
        "part": "forward",
        "latent_shape": list(lat),
        "tokens": lat[2] * lat[3] * lat[4] // 4,
        "anchor_ms": ANCHOR_MS,
        "rows": [],
        **_env_info(),
    }

    def fwd(xx=x, ee=enc, tt=t):
        with torch.no_grad():
            return tr(hidden_states=xx, timestep=tt, encoder_hidden_states=ee, return_dict=False)[0]

    ref = fwd()

    def row(name, ms_list, per=1, note="", out=None, extra=None):
        med = statistics.median(ms_list) / per
        d = {
            "variant": name,
            "ms_per_forward": round(med, 2),
            "vs_anchor": round(ANCHOR_MS / med, 3),
            "spread_ms": [round(min(ms_list) / per, 2), round(max(ms_list) / per, 2)],
            "note": note,
        }
        if out is not None:
            d["rel_diff_vs_default"] = _rel(out, ref)
        if extra:
            d.update(extra)
        res["rows"].append(d)
        _save_partial(args, res)
        print(f"[forward] {name:40s} {med:9.2f} ms  x{ANCHOR_MS / med:5.2f} vs anchor  {note}", flush=True)

    row("default (diffusers dispatch: native SDPA)", timer(fwd, warm, reps), out=ref)
    row("default, again (noise check)", timer(fwd, 1, reps))
    for be in ["_native_flash", "_native_cudnn", "_native_efficient", "flash", "_flash_3", "sage"]:
        try:
            tr.set_attention_backend(be)
            out = fwd()
            row(f"attention backend {be}", timer(fwd, warm, reps), out=out, note="exact up to rounding")
        except Exception as exc:  # backend not installed / not supported here
            res["rows"].append(
                {"variant": f"attention backend {be}", "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            )
            print(f"[forward] {be}: unavailable ({type(exc).__name__}: {str(exc)[:120]})", flush=True)
        finally:
            tr.set_attention_backend("native")
    out2 = fwd(x2, enc2, t2)
    row(
        "batched CFG (batch 2, per sample)",
        timer(lambda: fwd(x2, enc2, t2), warm, reps),
        per=2,
        out=out2[:1],
        note="cond+uncond in one call; needs a custom denoising loop",
    )

    # Caching hooks over a whole trajectory (they skip work between steps).
    steps = args.traj_steps

    def traj(n=steps):
        with torch.no_grad():
            return pipe(
                prompt=PROMPT,
                negative_prompt=NEGATIVE,
                height=h,
                width=w,
                num_frames=frames,
                num_inference_steps=n,
                guidance_scale=5.0,
                output_type="latent",
                generator=torch.Generator(device="cpu").manual_seed(1),
            ).frames

    lat_ref = None
    for name, cfg in [("none", None), ("fbc 0.05", ("fbc", 0.05)), ("fbc 0.10", ("fbc", 0.10)), ("pab", ("pab", 0))]:
        try:
            if cfg:
                vd.apply_speed_options(pipe, vd.SpeedOptions(transformer_cache=cfg[0], cache_threshold=cfg[1] or 0.05))
            traj(2)  # warm-up: text encoder, scheduler, the hooks' first pass
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            latents = traj()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            total = (time.perf_counter() - t0) * 1e3
            nfwd = 2 * steps
            if lat_ref is None:
                lat_ref = latents
            d = {
                "variant": f"trajectory {steps} steps + CFG, cache={name}",
                "ms_per_forward": round(total / nfwd, 2),
                "vs_anchor": round(ANCHOR_MS / (total / nfwd), 3),
                "trajectory_ms": round(total, 1),
                "rel_diff_latents_vs_none": _rel(latents, lat_ref),
            }
            res["rows"].append(d)
            _save_partial(args, res)
            print(
                f"[forward] trajectory cache={name:9s} {total / nfwd:9.2f} ms/forward  total {total / 1e3:.2f} s  "
                f"rel diff {d['rel_diff_latents_vs_none']:.4f}",
                flush=True,
            )
        except Exception as exc:
            res["rows"].append(
                {"variant": f"trajectory cache={name}", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            )
            print(f"[forward] trajectory cache={name}: {type(exc).__name__}: {exc}", flush=True)
        finally:
            if tr.is_cache_enabled:
                tr.disable_cache()

    if args.compile:
        try:
            t0 = time.perf_counter()
            tr.compile_repeated_blocks(fullgraph=True)
            out = fwd()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            ctime = time.perf_counter() - t0
            row(
                "regional torch.compile (repeated blocks)",
                timer(fwd, warm, reps),
                out=out,
                note=f"first call incl. compile {ctime:.1f} s",
                extra={"compile_s": round(ctime, 1)},
            )
        except Exception as exc:
            res["rows"].append({"variant": "torch.compile", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            print(f"[forward] compile failed: {type(exc).__name__}: {exc}", flush=True)
    return res


# ------------------------------------------------------------------------------------------------


def cmd_oom(args) -> dict:
    """A real out-of-memory error: cap this process's share of the card
    (torch.cuda.set_per_process_memory_fraction) and render one scene through our renderer."""
    import logging

    import torch

    from soundsight.models.render import diffusion as vd

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("soundsight.render").addHandler(Keep())
    logging.getLogger("soundsight.render").setLevel(logging.INFO)
    cap_gb = None
    if torch.cuda.is_available() and not args.tiny:
        torch.cuda.set_per_process_memory_fraction(args.mem_fraction, 0)
        cap_gb = args.mem_fraction * torch.cuda.get_device_properties(0).total_memory / 1e9
    s = _settings(args, "cpu" if args.tiny else "cuda")
    job = _jobs(1, _seconds(args))[0]
    out_dir = Path(args.work) / "oom"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        info = vd.make_renderer(s)(job, out_dir / "scene.mp4")
        ok = {"frames": info.frames, "size": [info.width, info.height]}
    except Exception as exc:
        ok = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    res = {
        "part": "oom",
        "cap_gb": cap_gb,
        "wall_s": time.perf_counter() - t0,
        "result": ok,
        "stats": vd.render_stats(),
        "log": records,
        "builds": vd.construction_counts(),
        **_env_info(),
    }
    if torch.cuda.is_available():
        res["max_allocated_gb"] = torch.cuda.max_memory_allocated(0) / 1e9
    for line in records:
        print(f"[oom] {line}", flush=True)
    return res


def _child(args, part: str, extra_env: dict | None = None, timeout: float = 600) -> dict | None:
    out_json = Path(args.out) / f"{part}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), part, "--json", str(out_json)] + _passthrough(args)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
    print(f"=== {part}: {' '.join(cmd[2:])}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout, cwd=str(ROOT))
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    print(f"=== {part}: rc={rc} in {time.perf_counter() - t0:.1f} s", flush=True)
    return json.loads(out_json.read_text()) if out_json.is_file() else None


def _passthrough(args) -> list[str]:
    a = [
        "--dir",
        str(args.dir),
        "--work",
        str(args.work),
        "--steps",
        str(args.steps),
        "--traj-steps",
        str(args.traj_steps),
        "--text-encoder",
        args.text_encoder,
        "--mem-fraction",
        str(args.mem_fraction),
    ]
    if args.tiny:
        a.append("--tiny")
    if args.compile:
        a.append("--compile")
    return a


def cmd_all(args) -> dict:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    first_gpu = {} if args.tiny else {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]}
    results = {}
    deadline = time.perf_counter() + args.budget
    for part in parts:
        left = deadline - time.perf_counter()
        if left < 20:
            print(f"=== {part}: skipped, budget spent", flush=True)
            continue
        env = first_gpu
        results[part] = _child(args, part, env, timeout=left)
    summary(results)
    return results


def summary(results: dict) -> None:
    print("\n======== summary ========")
    info = next((r for r in results.values() if r and "torch" in r), {})
    print(f"card: {info.get('card', 'cpu')}  torch {info.get('torch')}  diffusers {info.get('diffusers')}")
    if results.get("prepare"):
        p = results["prepare"]
        print(
            f"pipeline: {p.get('params_billion', 'reused')} B params, {p['folder_gb']:.2f} GB on disk, "
            f"text encoder {p.get('text_encoder', '?')}"
        )
    if results.get("forward"):
        for r in results["forward"]["rows"]:
            if "error" in r:
                print(f"  {r['variant']:55s} unavailable: {r['error'][:80]}")
            else:
                rd = r.get("rel_diff_vs_default", r.get("rel_diff_latents_vs_none"))
                extra = f" rel.diff {rd:.2e}" if rd is not None else ""
                print(
                    f"  {r['variant']:55s} {r['ms_per_forward']:9.2f} ms/forward  x{r['vs_anchor']:.2f} vs {ANCHOR_MS} ms{extra}"
                )
    if results.get("oom"):
        o = results["oom"]
        st = o["stats"][0] if o["stats"] else {}
        print(
            f"oom: cap {o['cap_gb']} GB -> {o['result']}; retries {st.get('oom_retries')}, final setting {st.get('memory')}, "
            f"{o['wall_s']:.1f} s, max allocated {o.get('max_allocated_gb')}"
        )
        for line in o["log"]:
            print(f"   log: {line[:200]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["all", "prepare", "forward", "oom"])
    ap.add_argument("--out", default="bench-out", help="folder for the JSON results (all)")
    ap.add_argument("--json", default=None, help="where one part writes its JSON")
    ap.add_argument("--dir", default="/tmp/wan-1.3b-random", help="pipeline folder (prepare writes it)")
    ap.add_argument("--work", default="/tmp/wan-bench-work", help="clips go here")
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per scene (CFG on: 2 forwards a step)")
    ap.add_argument("--traj-steps", type=int, default=8, help="steps of the cache-hook trajectories")
    ap.add_argument("--text-encoder", choices=["small", "xxl"], default="small")
    ap.add_argument("--compile", action="store_true", help="also time regional torch.compile")
    ap.add_argument("--tiny", action="store_true", help="tiny models on CPU (checks the code paths)")
    ap.add_argument("--parts", default="prepare,forward")
    ap.add_argument("--budget", type=float, default=560, help="seconds for `all`")
    ap.add_argument("--mem-fraction", type=float, default=0.12, help="oom: share of GPU 0 this process may use")
    args = ap.parse_args(argv)
    fn = {"all": cmd_all, "prepare": cmd_prepare, "forward": cmd_forward, "oom": cmd_oom}[args.part]
    res = fn(args)
    if args.part != "all":
        _dump(Path(args.json) if args.json else None, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
