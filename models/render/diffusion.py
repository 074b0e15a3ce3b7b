"""Text-to-video clip renderers on diffusers: Wan 2.1 T2V and Mochi-1. No Prefect here.

One `DiffusionClipRenderer` serves both families; a `ModelFamily` says what differs (pipeline
class, default checkpoint, native fps, frame rule, longest good clip, default resolution, VAE
dtype). Rendering a scene, as `DiffusionClipRenderer.__call__` runs it:

1. The pipeline: built once per process and reused (`pipeline_for`, keyed by checkpoint,
   revision, dtype, device, memory and speed options), so a Dask worker (one per GPU) loads its
   model once. Checkpoints come from the Hugging Face cache or a local folder, never the network.
2. The clip's geometry: ``spec.frames_for(job.seconds)`` frames at the model's native fps, at
   the model's resolution (not the output's: the assembler retimes, scales and trims).
3. Denoising with the scene's seed. Out of GPU memory (`torch.OutOfMemoryError`), the pipeline
   steps down `memory_ladder` (model CPU offload, then tiled VAE decode) and the call is retried;
   the cached pipeline keeps the cheaper setting for later scenes on that worker.
4. The frames are encoded with the project's one H.264 encoder (`soundsight.media.FrameEncoder`).

``backend_id`` = family, checkpoint name and revision (`soundsight.models.hub`): what render cache
keys depend on.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from soundsight.models.base import ClipInfo, RenderSpec, SceneJob
from soundsight.models.hub import Checkpoint, download_hint, resolve_checkpoint, resolve_device, torch_dtype

from soundsight.errors import MissingCheckpointError
from soundsight.media import FrameEncoder
from soundsight.settings import RenderSettings

__all__ = [
    "FAMILIES",
    "MOCHI",
    "WAN",
    "DiffusionClipRenderer",
    "MemoryOptions",
    "ModelFamily",
    "SpeedOptions",
    "build_pipeline",
    "clear_pipeline_cache",
    "construction_counts",
    "family_for",
    "make_renderer",
    "memory_ladder",
    "next_cheaper",
    "render_stats",
    "resolve_pipeline_checkpoint",
    "spec_for",
]

log = logging.getLogger("soundsight.render")
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# What each family is
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily:
    """What differs between text-to-video families.

    Attributes
    ----------
    pipeline_class, vae_class : str
        Attribute names in `diffusers`.
    spec : RenderSpec
        Native fps, valid frame counts and longest good clip (seconds).
    default_size : tuple of int
        (width, height) the model renders at, pixels, landscape.
    max_sequence_length : int
        Text tokens the pipeline encodes.
    vae_fp32 : bool
        Decode in float32 whatever the transformer's dtype (Wan's recommendation).
    size_multiple : int
        Width and height must be multiples of this (VAE spatial factor x patch size).
    large_size, large_marker : optional
        Default size for checkpoints whose id contains `large_marker` (Wan 14B: 720p).
    """

    name: str
    pipeline_class: str
    vae_class: str
    default_model: str
    spec: RenderSpec
    default_size: tuple[int, int]
    max_sequence_length: int
    vae_fp32: bool
    size_multiple: int = 16
    large_size: tuple[int, int] | None = None
    large_marker: str = ""

    def size_for(self, model: str) -> tuple[int, int]:
        """(width, height) in pixels for checkpoint `model`."""
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
    """The family of render backend `backend` (``wan`` or ``mochi``); ValueError otherwise."""
    try:
        return FAMILIES[backend]
    except KeyError:
        raise ValueError(f"no text-to-video family '{backend}' (known: {', '.join(FAMILIES)})") from None


def spec_for(backend: str) -> RenderSpec:
    """The planner's view of a backend, without touching any checkpoint."""
    return family_for(backend).spec


def _check_pipeline_folder(model_id: str, folder: Path, hint: str) -> None:
    if not (folder / "model_index.json").is_file():
        raise MissingCheckpointError(
            model_id,
            f"the folder {folder} has no model_index.json (not a diffusers pipeline); "
            f"fetch one with: hf download <hub id> --local-dir {folder}",
        )


def resolve_pipeline_checkpoint(model: str) -> Checkpoint:
    """Find a diffusers pipeline folder (``model_index.json``) or hub id locally; never downloads.

    Raises
    ------
    MissingCheckpointError
        With the download command.
    """
    return resolve_checkpoint(model, check=_check_pipeline_folder)


# --------------------------------------------------------------------------------------------
# Options: memory (with the out-of-memory ladder) and speed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryOptions:
    """How much of the pipeline sits on the GPU."""

    cpu_offload: bool = False  # enable_model_cpu_offload: one component on the GPU at a time
    vae_tiling: bool = False  # decode the video in overlapping tiles

    def describe(self) -> str:
        """``plain``, ``cpu_offload``, ``vae_tiling`` or ``cpu_offload+vae_tiling``."""
        parts = [n for n, on in (("cpu_offload", self.cpu_offload), ("vae_tiling", self.vae_tiling)) if on]
        return "+".join(parts) or "plain"


def memory_ladder(start: MemoryOptions, device: str) -> list[MemoryOptions]:
    """The memory settings to try, cheapest last.

    `start` and then each cheaper setting to try after an out-of-memory error, in order:
    model CPU offload (skipped on a CPU device, where it means nothing), then VAE tiling.
    """
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
    """The step after `current` on `memory_ladder`, or None at its end."""
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

    @classmethod
    def of(cls, settings: RenderSettings) -> SpeedOptions:
        """The speed options a run's render settings ask for."""
        return cls(settings.attention_backend, settings.transformer_cache, settings.cache_threshold, settings.compile)


def apply_speed_options(pipe: Any, speed: SpeedOptions) -> None:
    """Set the attention backend, caching hook and compilation of `pipe`'s transformer."""
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
# Building a pipeline, and the per-process cache of built ones
# --------------------------------------------------------------------------------------------


@dataclass
class LoadedPipeline:
    """A built pipeline, where it runs, and the memory setting it runs with now."""

    pipe: Any
    memory: MemoryOptions
    device: str
    lock: threading.Lock


def _empty_device_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - torch missing or CUDA broken: nothing to free
        pass


def apply_memory(pipe: Any, memory: MemoryOptions, device: str, was: MemoryOptions | None = None) -> None:
    """Put `pipe` on `device` as `memory` says (`was`: the setting it has now, if any)."""
    if memory.cpu_offload and not device.startswith("cpu"):
        if was is None or not was.cpu_offload:
            pipe.to("cpu")  # offloading moves each component in when it runs
            pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if memory.vae_tiling:
        pipe.vae.enable_tiling()


def on_memory_ladder(loaded: LoadedPipeline, action: Callable[[], T], what: str) -> tuple[T, int]:
    """Run `action`, stepping down the memory ladder on out-of-memory errors.

    Run `action`; after each out-of-GPU-memory error, step `loaded` down `memory_ladder` and
    run it again. Returns its result and how many steps down were taken.
    """
    import torch

    steps = 0
    while True:
        try:
            return action(), steps
        except torch.OutOfMemoryError as exc:
            cheaper = next_cheaper(loaded.memory, loaded.device)
            if cheaper is None:
                raise
            log.warning(
                "%s: out of memory on %s with %s (%s); retrying with %s",
                what,
                loaded.device,
                loaded.memory.describe(),
                str(exc).splitlines()[0][:160],
                cheaper.describe(),
            )
            del exc  # drop the traceback's references to GPU tensors before freeing memory
        gc.collect()
        _empty_device_cache()
        apply_memory(loaded.pipe, cheaper, loaded.device, was=loaded.memory)
        loaded.memory = cheaper
        steps += 1


def load_pipeline(family: ModelFamily, checkpoint: Checkpoint, dtype: str) -> Any:
    """Load a family's diffusers pipeline from a local folder (no network), on the CPU."""
    import diffusers

    pipe_cls = getattr(diffusers, family.pipeline_class)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "local_files_only": True}
    try:
        if family.vae_fp32 and dtype != "float32":
            vae_cls = getattr(diffusers, family.vae_class)
            kwargs["vae"] = vae_cls.from_pretrained(
                checkpoint.path, subfolder="vae", dtype=torch_dtype("float32"), local_files_only=True
            )
        pipe = pipe_cls.from_pretrained(checkpoint.path, **kwargs)
    except OSError as exc:  # files missing from a partial download
        hint = download_hint(checkpoint.model_id) + f" ({exc})"
        raise MissingCheckpointError(checkpoint.model_id, hint) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_pipeline(
    family: ModelFamily,
    checkpoint: Checkpoint,
    dtype: str,
    device: str,
    memory: MemoryOptions,
    speed: SpeedOptions = SpeedOptions(),
) -> LoadedPipeline:
    """Load, place (stepping down the memory ladder when even that runs out) and speed-tune a pipeline."""
    pipe = load_pipeline(family, checkpoint, dtype)
    loaded = LoadedPipeline(pipe=pipe, memory=memory, device=device, lock=threading.Lock())
    on_memory_ladder(loaded, lambda: apply_memory(pipe, memory, device), f"placing {family.name}")
    apply_speed_options(pipe, speed)
    return loaded


_PIPELINES: dict[str, LoadedPipeline] = {}
_CONSTRUCTIONS: Counter[str] = Counter()
_RENDERS: deque[dict] = deque(maxlen=1000)
_CACHE_LOCK = threading.Lock()


def construction_counts() -> dict[str, int]:
    """How many pipelines this process has built, per cache key."""
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


# --------------------------------------------------------------------------------------------
# The renderer
# --------------------------------------------------------------------------------------------


def _round_to(x: int, m: int) -> int:
    return max(m, int(round(x / m)) * m)


class DiffusionClipRenderer:
    """`ClipRenderer` for a diffusers text-to-video family.

    Cheap to create and to pickle: the pipeline lives in the process-wide cache and is built on
    the first scene.

    Parameters
    ----------
    settings : RenderSettings
        The run's render group; ``backend`` picks the family, ``model`` the checkpoint (empty:
        the family's default).

    Raises
    ------
    MissingCheckpointError
        The checkpoint is not on this machine.
    ValueError
        An unknown backend.
    """

    def __init__(self, settings: RenderSettings):
        self.family = family_for(settings.backend)
        self.name = self.family.name
        self.spec = self.family.spec
        self.settings = settings
        self.checkpoint = resolve_pipeline_checkpoint(settings.model or self.family.default_model)
        self.backend_id = f"{self.family.name}:{self.checkpoint.name}@{self.checkpoint.revision}"
        self.memory = MemoryOptions(cpu_offload=settings.cpu_offload, vae_tiling=settings.vae_tiling)
        self.speed = SpeedOptions.of(settings)

    def size_for(self, job: SceneJob) -> tuple[int, int]:
        """(width, height) the model renders at, pixels.

        (width, height) the model renders at, pixels: `model_width/model_height` when set, else
        the family's default, turned to portrait for portrait output.
        """
        m = self.family.size_multiple
        w, h = self.settings.model_width, self.settings.model_height
        if w and h:
            return _round_to(w, m), _round_to(h, m)
        w, h = self.family.size_for(self.checkpoint.model_id)
        return (h, w) if job.height > job.width else (w, h)

    def pipeline_for(self, device: str) -> LoadedPipeline:
        """The pipeline of this process for these settings on `device`, built on first use."""
        key = "|".join(
            [
                self.family.name,
                str(self.checkpoint.path),
                self.checkpoint.revision,
                self.settings.dtype,
                device,
                self.memory.describe(),
                repr(asdict(self.speed)),
            ]
        )
        with _CACHE_LOCK:
            if key not in _PIPELINES:
                t0 = time.perf_counter()
                _PIPELINES[key] = build_pipeline(
                    self.family, self.checkpoint, self.settings.dtype, device, self.memory, self.speed
                )
                _CONSTRUCTIONS[key] += 1
                log.info(
                    "built %s pipeline %s on %s (%s) in %.1f s",
                    self.name,
                    self.checkpoint.model_id,
                    device,
                    _PIPELINES[key].memory.describe(),
                    time.perf_counter() - t0,
                )
            return _PIPELINES[key]

    def pipeline(self) -> Any:
        """The diffusers pipeline this process renders with (built on first use)."""
        return self.pipeline_for(resolve_device(self.settings.device)).pipe

    def generate(self, job: SceneJob) -> tuple[np.ndarray, dict]:
        """Frames (F, H, W, 3) uint8 for `job`, and a stats record (timings, memory, OOM retries)."""
        import torch

        # 1. The pipeline, and 2. the clip's geometry.
        loaded = self.pipeline_for(resolve_device(self.settings.device))
        n_frames = self.spec.frames_for(job.seconds)
        if job.seconds > self.spec.max_seconds + 1e-6:
            log.warning(
                "scene %d lasts %.2f s, longer than %s renders well (%.2f s); rendering %d frames anyway",
                job.index,
                job.seconds,
                self.name,
                self.spec.max_seconds,
                n_frames,
            )
        width, height = self.size_for(job)

        # 3. Denoise with the scene's seed, stepping down the memory ladder when the GPU runs out.
        def denoise():
            return loaded.pipe(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt or self.settings.negative_prompt,
                height=height,
                width=width,
                num_frames=n_frames,
                num_inference_steps=self.settings.steps,
                guidance_scale=self.settings.guidance_scale,
                generator=torch.Generator(device="cpu").manual_seed(job.seed),
                max_sequence_length=self.family.max_sequence_length,
                output_type="np",
            )

        with loaded.lock:
            t0 = time.perf_counter()
            out, oom_retries = on_memory_ladder(loaded, denoise, f"scene {job.index}")
            render_s = time.perf_counter() - t0
        video = np.asarray(out.frames[0])  # (F, H, W, 3) floats in [0, 1]
        if video.shape[0] != n_frames:
            raise RuntimeError(f"{self.name} returned {video.shape[0]} frames, asked for {n_frames}")
        stats = {
            "index": job.index,
            "frames": n_frames,
            "width": width,
            "height": height,
            "pid": os.getpid(),
            "oom_retries": oom_retries,
            "render_s": render_s,
            "memory": loaded.memory.describe(),
        }
        return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), stats

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        """Render `job` into the MP4 `out_path` (written atomically); see the module docstring."""
        t0 = time.perf_counter()
        frames, stats = self.generate(job)
        # 4. One H.264 encoder for every clip.
        f, h, w, _ = frames.shape
        with FrameEncoder(Path(out_path), width=w, height=h, fps=self.spec.native_fps, frames=f) as encoder:
            for frame in frames:
                encoder.write(frame)
        stats["total_s"] = time.perf_counter() - t0
        _RENDERS.append(stats)
        log.info("scene %d: %d frames %dx%d in %.1f s (%s)", job.index, f, w, h, stats["total_s"], stats["memory"])
        return ClipInfo(path=Path(out_path), frames=f, fps=self.spec.native_fps, width=w, height=h)


def make_renderer(settings: RenderSettings) -> DiffusionClipRenderer:
    """The renderer for `settings.backend` in ('wan', 'mochi')."""
    return DiffusionClipRenderer(settings)
