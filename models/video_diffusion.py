"""Text-to-video clip renderers on diffusers: Wan 2.1 T2V and Mochi-1.

One `DiffusionClipRenderer` serves both families; a `ModelFamily` says what differs (pipeline
class, default checkpoint, native fps, frame rule, longest good clip, default resolution, VAE
dtype). No Prefect here.

- Checkpoints come from the Hugging Face cache or a local folder, never the network
  (``local_files_only``). A missing one raises `MissingCheckpointError` with the download command.
- ``backend_id`` = family, model id and revision: the snapshot's commit hash for a hub id, a
  content fingerprint for a local folder.
- The pipeline is built once per process and reused (module-level cache keyed by model,
  revision, dtype, device and options); `construction_counts()` tells tests and benchmarks how
  many were built. A Dask worker (one per GPU) therefore loads its model once.
- Out of GPU memory (`torch.OutOfMemoryError`): the scene is retried with the next cheaper
  setting of `memory_ladder` (model CPU offload, then tiled VAE decode), logged; the cached
  pipeline keeps the cheaper setting for later scenes on that worker.
- `render_scene` is the per-scene entry point for Dask/Prefect workers; `render_scenes` fans a
  list of scenes out over a Dask cluster (see `models.gpu_pool`), one scene per GPU at a time.

Clips are H.264 mp4 at the model's native fps with ``spec.frames_for(job.seconds)`` frames, at
the model's resolution (not the output's): the assembler retimes, scales and trims.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import subprocess
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.base import ClipInfo, RenderSpec, SceneJob
from soundsight.errors import MissingCheckpointError
from soundsight.media import atomic_path, ffmpeg_exe

log = logging.getLogger("soundsight.render")


# --------------------------------------------------------------------------------------------
# What each family is
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily:
    name: str
    pipeline_class: str  # attribute of `diffusers`
    vae_class: str
    default_model: str
    spec: RenderSpec
    default_size: tuple[int, int]  # (width, height), landscape
    max_sequence_length: int
    vae_fp32: bool  # decode in float32 whatever the transformer's dtype (Wan's recommendation)
    size_multiple: int = 16  # VAE spatial factor (8) x patch size (2)
    large_size: tuple[int, int] | None = None  # default for checkpoints marked `large_marker`
    large_marker: str = ""

    def size_for(self, model: str) -> tuple[int, int]:
        if self.large_size and self.large_marker and self.large_marker.lower() in model.lower():
            return self.large_size
        return self.default_size


WAN = ModelFamily(
    name="wan",
    pipeline_class="WanPipeline",
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    # 81 frames (4k+1) at 16 fps = 5.06 s is what Wan 2.1 was trained on.
    spec=RenderSpec(native_fps=16.0, frame_multiple=4, frame_offset=1, max_seconds=81 / 16),
    default_size=(832, 480),
    large_size=(1280, 720),  # the 14B checkpoint is made for 720p
    large_marker="14B",
    max_sequence_length=512,
    vae_fp32=True,
)

MOCHI = ModelFamily(
    name="mochi",
    pipeline_class="MochiPipeline",
    vae_class="AutoencoderKLMochi",
    default_model="genmo/mochi-1-preview",
    # 163 frames (6k+1) at 30 fps = 5.43 s.
    spec=RenderSpec(native_fps=30.0, frame_multiple=6, frame_offset=1, max_seconds=163 / 30),
    default_size=(848, 480),
    max_sequence_length=256,
    vae_fp32=False,
)

FAMILIES: dict[str, ModelFamily] = {"wan": WAN, "mochi": MOCHI}


def family_for(backend: str) -> ModelFamily:
    try:
        return FAMILIES[backend]
    except KeyError:
        raise ValueError(f"no text-to-video family '{backend}' (known: {', '.join(FAMILIES)})") from None


def spec_for(backend: str) -> RenderSpec:
    """The planner's view of a backend, without touching any checkpoint."""
    return family_for(backend).spec


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    model_id: str  # what the user named (hub id or folder)
    path: str  # local folder holding model_index.json
    revision: str  # snapshot commit hash, or "sha256:<fingerprint>" of a local folder


def _download_hint(model_id: str) -> str:
    return f"hf download {model_id}"


_FINGERPRINT_WHOLE = 16 << 20  # files up to this size are hashed whole
_FINGERPRINT_EDGE = 8 << 20  # larger ones: size + first and last 8 MiB


def folder_fingerprint(folder: Path) -> str:
    """Content fingerprint of a checkpoint folder: every file's relative path and size, small
    files hashed whole, large ones by their first and last 8 MiB (random weights differ there
    whenever they differ at all; hashing 30 GB of weights on every start would take minutes)."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and ".cache" not in q.parts):
        size = p.stat().st_size
        h.update(f"{p.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(p, "rb") as f:
            if size <= _FINGERPRINT_WHOLE:
                h.update(f.read())
            else:
                h.update(f.read(_FINGERPRINT_EDGE))
                f.seek(size - _FINGERPRINT_EDGE)
                h.update(f.read(_FINGERPRINT_EDGE))
    return h.hexdigest()


@lru_cache(maxsize=32)
def resolve_checkpoint(model: str) -> Checkpoint:
    """Find `model` locally: an existing folder, or a hub id in the Hugging Face cache.

    Never downloads. Raises `MissingCheckpointError` (with the download command) otherwise.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise MissingCheckpointError(
                model,
                hint=f"the folder has no model_index.json (not a diffusers pipeline); "
                f"fetch one with: hf download <hub id> --local-dir {folder}",
            )
        return Checkpoint(model_id=str(folder), path=str(folder.resolve()), revision="sha256:" + folder_fingerprint(folder))
    if model.startswith(("/", "./", "../", "~")) or model.count("/") != 1:
        raise MissingCheckpointError(model, hint=f"no such folder; or name a hub id and run: {_download_hint('<hub id>')}")
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(repo_id=model, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, OfflineModeIsEnabled, bad repo id ...
        raise MissingCheckpointError(model, hint=_download_hint(model)) from exc
    if not (snap / "model_index.json").is_file():
        raise MissingCheckpointError(model, hint=_download_hint(model) + " (the cached snapshot is incomplete)")
    return Checkpoint(model_id=model, path=str(snap), revision=snap.name)


# --------------------------------------------------------------------------------------------
# Options and the out-of-memory ladder
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryOptions:
    cpu_offload: bool = False  # enable_model_cpu_offload: one component on the GPU at a time
    vae_tiling: bool = False  # decode the video in overlapping tiles

    def describe(self) -> str:
        parts = [n for n, on in (("cpu_offload", self.cpu_offload), ("vae_tiling", self.vae_tiling)) if on]
        return "+".join(parts) or "plain"


def memory_ladder(start: MemoryOptions, device: str) -> list[MemoryOptions]:
    """`start` and then each cheaper setting to try after an out-of-memory error, in order:
    model CPU offload (skipped on a CPU device, where it means nothing), then VAE tiling."""
    steps = [start]
    cur = start
    if not str(device).startswith("cpu") and not cur.cpu_offload:
        cur = replace(cur, cpu_offload=True)
        steps.append(cur)
    if not cur.vae_tiling:
        cur = replace(cur, vae_tiling=True)
        steps.append(cur)
    return steps


def next_cheaper(current: MemoryOptions, device: str) -> MemoryOptions | None:
    ladder = memory_ladder(current, device)
    return ladder[1] if len(ladder) > 1 else None


@dataclass(frozen=True)
class SpeedOptions:
    """Optional speed-ups (see benchmarks/RESULTS_video.md for what each buys and costs).

    attention_backend : diffusers attention backend name ('' = default SDPA dispatch), e.g.
        '_native_cudnn', '_native_flash', 'flash' (needs flash-attn installed).
    transformer_cache : '' | 'fbc' (First Block Cache, threshold `cache_threshold`) |
        'pab' (Pyramid Attention Broadcast). Both reuse computation across steps: lossy.
    compile : regional torch.compile of the transformer's repeated blocks.
    """

    attention_backend: str = ""
    transformer_cache: str = ""
    cache_threshold: float = 0.05
    compile: bool = False


def apply_speed_options(pipe: Any, speed: SpeedOptions) -> None:
    tr = pipe.transformer
    if speed.attention_backend:
        tr.set_attention_backend(speed.attention_backend)
    if speed.transformer_cache == "fbc":
        from diffusers.hooks import FirstBlockCacheConfig

        tr.enable_cache(FirstBlockCacheConfig(threshold=speed.cache_threshold))
    elif speed.transformer_cache == "pab":
        from diffusers import PyramidAttentionBroadcastConfig

        tr.enable_cache(
            PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2,
                spatial_attention_timestep_skip_range=(100, 800),
                current_timestep_callback=lambda: pipe.current_timestep,
            )
        )
    elif speed.transformer_cache:
        raise ValueError(f"unknown transformer_cache '{speed.transformer_cache}' (use '', 'fbc' or 'pab')")
    if speed.compile:
        tr.compile_repeated_blocks(fullgraph=True)


# --------------------------------------------------------------------------------------------
# The per-process pipeline cache
# --------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    pipe: Any
    memory: MemoryOptions
    device: str
    lock: threading.Lock


_PIPELINES: dict[str, _Loaded] = {}
_CONSTRUCTIONS: Counter[str] = Counter()
_RENDERS: deque[dict] = deque(maxlen=1000)
_CACHE_LOCK = threading.Lock()


def construction_counts() -> dict[str, int]:
    """How many pipelines this process has built, per cache key (tests: via `client.run`)."""
    return dict(_CONSTRUCTIONS)


def render_stats() -> list[dict]:
    """One record per scene this process rendered (timings, memory setting, OOM retries)."""
    return list(_RENDERS)


def clear_pipeline_cache() -> None:
    """Drop every cached pipeline (and the counters) in this process."""
    with _CACHE_LOCK:
        _PIPELINES.clear()
        _CONSTRUCTIONS.clear()
        _RENDERS.clear()
    gc.collect()
    _empty_device_cache()


def _empty_device_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - torch missing or CUDA broken: nothing to free
        pass


def _torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def resolve_device(device: str) -> str:
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _apply_memory(pipe: Any, mem: MemoryOptions, device: str) -> None:
    if mem.cpu_offload and not device.startswith("cpu"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if mem.vae_tiling:
        pipe.vae.enable_tiling()


def load_pipeline(family: ModelFamily, ckpt: Checkpoint, dtype: str) -> Any:
    """Load a family's diffusers pipeline from a local folder (no network), on the CPU."""
    import diffusers

    pipe_cls = getattr(diffusers, family.pipeline_class)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype), "local_files_only": True}
    try:
        if family.vae_fp32 and dtype != "float32":
            vae_cls = getattr(diffusers, family.vae_class)
            kwargs["vae"] = vae_cls.from_pretrained(ckpt.path, subfolder="vae", dtype=_torch_dtype("float32"),
                                                    local_files_only=True)
        pipe = pipe_cls.from_pretrained(ckpt.path, **kwargs)
    except (OSError, EnvironmentError) as exc:  # files missing from a partial download
        raise MissingCheckpointError(ckpt.model_id, hint=_download_hint(ckpt.model_id) + f" ({exc})") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def place_pipeline(pipe: Any, memory: MemoryOptions, device: str) -> MemoryOptions:
    """Put `pipe` on `device` with `memory`; if even that runs out of GPU memory, step down
    `memory_ladder` (logged). Returns the setting that fitted."""
    import torch

    while True:
        try:
            _apply_memory(pipe, memory, device)
            return memory
        except torch.OutOfMemoryError as exc:
            cheaper = next_cheaper(memory, device)
            if cheaper is None:
                raise
            log.warning("out of memory placing the pipeline on %s with %s (%s); retrying with %s", device,
                        memory.describe(), str(exc).splitlines()[0][:160], cheaper.describe())
            del exc
        pipe.to("cpu")
        gc.collect()
        _empty_device_cache()
        memory = cheaper


def build_pipeline(family: ModelFamily, ckpt: Checkpoint, dtype: str, device: str, memory: MemoryOptions,
                   speed: SpeedOptions = SpeedOptions()) -> Any:
    """Load, place (with the out-of-memory ladder) and speed-tune a pipeline."""
    pipe = load_pipeline(family, ckpt, dtype)
    place_pipeline(pipe, memory, device)
    apply_speed_options(pipe, speed)
    return pipe


# --------------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------------


def _round_to(x: int, m: int) -> int:
    return max(m, int(round(x / m)) * m)


class DiffusionClipRenderer:
    """`ClipRenderer` for a diffusers text-to-video family. Cheap to create and to pickle: the
    pipeline lives in the process-wide cache and is loaded on the first scene."""

    def __init__(self, settings: Any, *, backend: str | None = None):
        self.family = family_for(backend or settings.backend)
        self.name = self.family.name
        self.spec = self.family.spec
        self.settings = settings
        self.checkpoint = resolve_checkpoint(settings.model or self.family.default_model)
        self.backend_id = f"{self.family.name}:{self.checkpoint.model_id}@{self.checkpoint.revision}"
        self.memory = MemoryOptions(cpu_offload=bool(settings.cpu_offload), vae_tiling=bool(settings.vae_tiling))
        self.speed = SpeedOptions(
            attention_backend=getattr(settings, "attention_backend", "") or "",
            transformer_cache=getattr(settings, "transformer_cache", "") or "",
            cache_threshold=float(getattr(settings, "cache_threshold", 0.05)),
            compile=bool(getattr(settings, "compile", False)),
        )

    # -- geometry ---------------------------------------------------------------------------
    def size_for(self, job: SceneJob) -> tuple[int, int]:
        """(width, height) the model renders at: `model_width/model_height` from settings when
        set, else the family's default, turned to portrait for portrait output."""
        m = self.family.size_multiple
        w = int(getattr(self.settings, "model_width", 0) or 0)
        h = int(getattr(self.settings, "model_height", 0) or 0)
        if w and h:
            return _round_to(w, m), _round_to(h, m)
        w, h = self.family.size_for(self.checkpoint.model_id)
        if job.height > job.width:
            w, h = h, w
        return w, h

    # -- the cached pipeline ----------------------------------------------------------------
    def cache_key(self, device: str) -> str:
        return "|".join(
            [self.family.name, self.checkpoint.path, self.checkpoint.revision, self.settings.dtype, device,
             self.memory.describe(), repr(asdict(self.speed))]
        )

    def _loaded(self) -> _Loaded:
        device = resolve_device(self.settings.device)
        key = self.cache_key(device)
        with _CACHE_LOCK:
            entry = _PIPELINES.get(key)
            if entry is None:
                t0 = time.perf_counter()
                pipe = load_pipeline(self.family, self.checkpoint, self.settings.dtype)
                memory = place_pipeline(pipe, self.memory, device)
                apply_speed_options(pipe, self.speed)
                entry = _PIPELINES[key] = _Loaded(pipe=pipe, memory=memory, device=device, lock=threading.Lock())
                _CONSTRUCTIONS[key] += 1
                log.info("built %s pipeline %s on %s (%s) in %.1f s", self.name, self.checkpoint.model_id, device,
                         memory.describe(), time.perf_counter() - t0)
        return entry

    def pipeline(self) -> Any:
        """This process's cached diffusers pipeline for these settings (built on first use)."""
        return self._loaded().pipe

    # -- one scene --------------------------------------------------------------------------
    def generate(self, job: SceneJob) -> tuple[np.ndarray, dict]:
        """Frames (F, H, W, 3) uint8 for `job`, with the OOM ladder; plus a stats record."""
        import torch

        n_frames = self.spec.frames_for(job.seconds)
        if job.seconds > self.spec.max_seconds + 1e-6:
            log.warning("scene %d lasts %.2f s, longer than %s renders well (%.2f s); rendering %d frames anyway",
                        job.index, job.seconds, self.name, self.spec.max_seconds, n_frames)
        width, height = self.size_for(job)
        entry = self._loaded()
        stats = {"index": job.index, "frames": n_frames, "width": width, "height": height, "pid": os.getpid(),
                 "oom_retries": 0}
        with entry.lock:
            t0 = time.perf_counter()
            while True:
                try:
                    out = entry.pipe(
                        prompt=job.prompt,
                        negative_prompt=job.negative_prompt or self.settings.negative_prompt,
                        height=height,
                        width=width,
                        num_frames=n_frames,
                        num_inference_steps=int(self.settings.steps),
                        guidance_scale=float(self.settings.guidance_scale),
                        generator=torch.Generator(device="cpu").manual_seed(int(job.seed)),
                        max_sequence_length=self.family.max_sequence_length,
                        output_type="np",
                    )
                    break
                except torch.OutOfMemoryError as exc:
                    cheaper = next_cheaper(entry.memory, entry.device)
                    if cheaper is None:
                        raise
                    log.warning("scene %d: out of memory on %s with %s (%s); retrying with %s", job.index,
                                entry.device, entry.memory.describe(), str(exc).splitlines()[0][:160],
                                cheaper.describe())
                    del exc
                    out = None
                gc.collect()
                _empty_device_cache()
                _apply_memory(entry.pipe, cheaper, entry.device)
                entry.memory = cheaper
                stats["oom_retries"] += 1
            stats["render_s"] = time.perf_counter() - t0
        stats["memory"] = entry.memory.describe()
        video = np.asarray(out.frames[0])  # (F, H, W, 3) floats in [0, 1]
        if video.shape[0] != n_frames:
            raise RuntimeError(f"{self.name} returned {video.shape[0]} frames, asked for {n_frames}")
        frames = (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return frames, stats

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        t0 = time.perf_counter()
        frames, stats = self.generate(job)
        write_mp4(frames, self.spec.native_fps, Path(out_path))
        stats["total_s"] = time.perf_counter() - t0
        _RENDERS.append(stats)
        log.info("scene %d: %d frames %dx%d in %.1f s (%s)", job.index, frames.shape[0], frames.shape[2],
                 frames.shape[1], stats["total_s"], stats["memory"])
        return ClipInfo(path=Path(out_path), frames=int(frames.shape[0]), fps=self.spec.native_fps,
                        width=int(frames.shape[2]), height=int(frames.shape[1]))


def write_mp4(frames: np.ndarray, fps: float, out_path: Path, crf: int = 16) -> None:
    """(F, H, W, 3) uint8 -> H.264 mp4 (yuv420p), written atomically. One output frame per input."""
    f, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {w}x{h}")
    with atomic_path(out_path) as tmp:
        cmd = [
            ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "pipe:0",
            "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", str(tmp),
        ]  # fmt: skip
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed while writing {out_path}: {proc.stderr.decode(errors='replace')[-600:]}")


# --------------------------------------------------------------------------------------------
# Entry points for workers and the fan-out
# --------------------------------------------------------------------------------------------


def make_renderer(settings: Any) -> DiffusionClipRenderer:
    """The renderer for `settings.backend` in ('wan', 'mochi')."""
    return DiffusionClipRenderer(settings)


def describe_backend(settings: Any) -> dict:
    """backend_id and spec of `settings`' renderer, resolved where this runs (on a worker, via
    ``client.submit(describe_backend, settings).result()``, when only the workers hold the
    checkpoints). Raises MissingCheckpointError like the renderer."""
    r = make_renderer(settings)
    return {"backend_id": r.backend_id, "spec": r.spec, "name": r.name}


def render_scene(settings: Any, job: SceneJob, out_path: str | Path) -> ClipInfo:
    """Render one scene in this process, reusing this process's pipeline. This is what a Dask
    (or Prefect-on-Dask) task runs on a GPU worker."""
    return make_renderer(settings)(job, Path(out_path))


def render_scenes(settings: Any, jobs: Sequence[SceneJob], out_paths: Sequence[str | Path], *,
                  client: Any = None, **cluster_kwargs: Any) -> list[ClipInfo]:
    """Render `jobs` to `out_paths` across a Dask cluster, one scene per GPU at a time.

    client : an existing `distributed.Client`; else one is made from `settings.dask_address`
        (a running scheduler) or a local cluster from `models.gpu_pool.make_cluster` (one worker
        per visible GPU, or 2 single-threaded CPU workers), closed again on return.
    The checkpoint is resolved first (here for a local cluster, before any worker starts; on a
    worker for a given client or scheduler address), so a missing one fails before rendering.
    Out paths must be on storage the workers see at the same path.
    """
    if len(jobs) != len(out_paths):
        raise ValueError("jobs and out_paths differ in length")
    remote = client is not None or bool(getattr(settings, "dask_address", ""))
    if not remote:
        make_renderer(settings)  # fail fast: MissingCheckpointError, bad backend
    from models import gpu_pool

    with gpu_pool.client_for(settings, client=client, **cluster_kwargs) as c:
        resources = gpu_pool.task_resources(c)
        if remote:
            c.submit(describe_backend, settings, resources=resources, pure=False).result()
        run = uuid.uuid4().hex[:8]
        futures = [
            c.submit(render_scene, settings, job, str(path), key=f"render-scene-{job.index}-{run}",
                     resources=resources, pure=False)
            for job, path in zip(jobs, out_paths)
        ]
        try:
            return c.gather(futures)
        except BaseException:
            c.cancel(futures)
            raise
