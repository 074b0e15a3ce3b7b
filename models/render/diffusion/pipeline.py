"""Building a diffusers pipeline, and the per-process cache of built ones.

`load_pipeline` loads a family's pipeline from a local folder (the VAE that decodes the frames is
chosen there: the family's ``vae_class``, in float32 where the family asks); `build_pipeline`
places it (stepping down the memory ladder when even that runs out), fuses draft LoRAs and applies
the speed options. `cached_pipeline` keeps one built pipeline per device in this process, so a
Dask worker (one per GPU) loads its model once; a scene that needs another (other checkpoint,
quality or option) replaces it.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from soundsight.errors import MissingCheckpointError
from soundsight.models.hub import Checkpoint, download_hint, torch_dtype
from soundsight.models.render.diffusion import stats
from soundsight.models.render.diffusion.draft import Quality, apply_quality
from soundsight.models.render.diffusion.families import ModelFamily
from soundsight.models.render.diffusion.options import (
    MemoryOptions,
    SpeedOptions,
    apply_speed_options,
    next_cheaper,
)

__all__ = [
    "LoadedPipeline",
    "apply_memory",
    "build_pipeline",
    "cached_pipeline",
    "clear_pipeline_cache",
    "load_pipeline",
    "on_memory_ladder",
]

log = logging.getLogger("soundsight.render")
T = TypeVar("T")


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
    quality: Quality = Quality(),
) -> LoadedPipeline:
    """Load, place, draft-tune, quantize and compile a pipeline.

    Placing steps down the memory ladder when even that runs out; draft LoRAs are fused on the
    device, where fusing is fast.
    """
    pipe = load_pipeline(family, checkpoint, dtype)
    loaded = LoadedPipeline(pipe=pipe, memory=memory, device=device, lock=threading.Lock())
    on_memory_ladder(loaded, lambda: apply_memory(pipe, memory, device), f"placing {family.name}")
    apply_quality(pipe, quality)
    apply_speed_options(pipe, speed)
    return loaded


_PIPELINES: dict[str, LoadedPipeline] = {}
_CACHE_LOCK = threading.Lock()


def cached_pipeline(
    family: ModelFamily,
    checkpoint: Checkpoint,
    dtype: str,
    device: str,
    memory: MemoryOptions,
    speed: SpeedOptions,
    quality: Quality,
) -> LoadedPipeline:
    """The pipeline of this process for these arguments, built on first use (`build_pipeline`).

    A process keeps one pipeline per device: building another (another checkpoint, quality or
    option) on the same device first drops the one there. Each build is recorded
    (`stats.record_build`).
    """
    key = "|".join(
        [
            family.name,
            str(checkpoint.path),
            checkpoint.revision,
            quality.key(),
            dtype,
            device,
            memory.describe(),
            repr(asdict(speed)),
        ]
    )
    with _CACHE_LOCK:
        if key not in _PIPELINES:
            for other in [k for k, v in _PIPELINES.items() if v.device == device]:
                log.info("dropping the %s pipeline on %s for another", other.split("|")[0], device)
                del _PIPELINES[other]
            gc.collect()
            _empty_device_cache()
            t0 = time.perf_counter()
            _PIPELINES[key] = build_pipeline(family, checkpoint, dtype, device, memory, speed, quality)
            built_s = time.perf_counter() - t0
            stats.record_build({"key": key, "quality": quality.name, "pid": os.getpid(), "build_s": built_s})
            log.info(
                "built %s %s pipeline %s on %s (%s) in %.1f s",
                quality.name,
                family.name,
                checkpoint.model_id,
                device,
                _PIPELINES[key].memory.describe(),
                built_s,
            )
        return _PIPELINES[key]


def clear_pipeline_cache() -> None:
    """Drop every cached pipeline (and the build and scene records) in this process."""
    with _CACHE_LOCK:
        _PIPELINES.clear()
        stats.clear()
    gc.collect()
    _empty_device_cache()
