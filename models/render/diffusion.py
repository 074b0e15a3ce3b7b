"""Text-to-video clip renderers on diffusers: Wan 2.1 / 2.2 / VACE and Mochi-1. No Prefect here.

One `DiffusionClipRenderer` serves every family; a `ModelFamily` says what differs (pipeline
class, default checkpoint, native fps, frame rule, longest good clip, default resolution, VAE
dtype, experts, draft LoRA). ``render.backend = "wan"`` covers the Wan families: which one a
checkpoint is comes from its ``model_index.json`` (`detect_family`). Rendering a scene, as
`DiffusionClipRenderer.__call__` runs it:

1. The scene's quality: ``final`` (the checkpoint as trained) or ``draft`` (a step/CFG-distilled
   LoRA fused into the transformer, ``draft_steps`` steps, no classifier-free guidance);
   ``final_scenes`` renders chosen scenes in final quality whatever ``quality`` says.
2. The pipeline for that quality: built once per process and reused (`pipeline_for`, keyed by
   checkpoint, revision, quality, dtype, device, memory and speed options), so a Dask worker
   (one per GPU) loads its model once; a worker holds one pipeline per device and a scene that
   needs another (other checkpoint or quality) replaces it. Checkpoints and LoRAs come from the
   Hugging Face cache or a local folder, never the network. On CUDA workers the transformer's
   repeated blocks are compiled once (``compile_mode = "auto"``).
3. The clip's geometry: ``spec.frames_for(job.seconds)`` frames at the model's native fps, at
   the model's resolution (not the output's: the assembler retimes, scales and trims).
4. Denoising with the scene's seed (and, for ``identity = "reference"``, the reference image
   through Wan VACE). Out of GPU memory (`torch.OutOfMemoryError`), the pipeline steps down
   `memory_ladder` (model CPU offload, then tiled VAE decode) and the call is retried; the
   cached pipeline keeps the cheaper setting for later scenes on that worker.
5. A video model drifts from the run's palette: with a visual bible and ``palette_strength > 0`` the
   frames are moved toward the bible's palette (`soundsight.models.render.palette.match_palette`)
   in memory, so the clip is encoded once.
6. The frames are encoded with the project's one H.264 encoder (`soundsight.media.FrameEncoder`).

``backend_id`` = family, checkpoint name and revision (`soundsight.models.hub`), plus the draft
LoRAs' names and revisions in draft quality and the reference image's content hash in reference
identity: what render cache keys depend on.
"""

from __future__ import annotations

import gc
import hashlib
import json
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

from soundsight.environment import environment_variable
from soundsight.errors import MissingCheckpointError
from soundsight.media import FrameEncoder
from soundsight.models.base import ClipInfo, RenderSpec, SceneJob
from soundsight.models.hub import Checkpoint, download_hint, resolve_checkpoint, resolve_device, torch_dtype
from soundsight.models.render.lora import LoraFile, resolve_loras
from soundsight.models.render.palette import match_palette
from soundsight.settings import RenderSettings

__all__ = [
    "FAMILIES",
    "MOCHI",
    "WAN",
    "WAN22_A14B",
    "WAN22_TI2V",
    "WAN_VACE",
    "DiffusionClipRenderer",
    "MemoryOptions",
    "ModelFamily",
    "Quality",
    "SpeedOptions",
    "build_pipeline",
    "clear_pipeline_cache",
    "compile_blocks",
    "construction_counts",
    "detect_family",
    "family_for",
    "make_renderer",
    "memory_ladder",
    "next_cheaper",
    "render_stats",
    "resolve_pipeline_checkpoint",
    "scene_quality",
    "scene_settings",
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
    experts : int
        Transformers in the pipeline: 2 for Wan 2.2 A14B (``transformer`` for high noise,
        ``transformer_2`` for low noise, switched at ``boundary_ratio``).
    reference : bool
        Takes a reference image (``reference_images``): Wan VACE.
    draft_lora, large_draft_lora : str
        The public step/CFG-distilled LoRA(s) for draft quality (comma-separated: one per
        expert), for the small and the large (`large_marker`) checkpoint; empty: none known.
    draft_shift, large_draft_shift : float
        Flow-matching shift of the draft sampler (Euler), per LoRA's recipe.
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
    experts: int = 1
    reference: bool = False
    draft_lora: str = ""
    large_draft_lora: str = ""
    draft_shift: float = 5.0
    large_draft_shift: float = 5.0

    def is_large(self, model: str) -> bool:
        """True for checkpoints whose id contains `large_marker` (e.g. Wan 14B)."""
        return bool(self.large_marker) and self.large_marker.lower() in model.lower()

    def size_for(self, model: str) -> tuple[int, int]:
        """(width, height) in pixels for checkpoint `model`."""
        if self.large_size and self.is_large(model):
            return self.large_size
        return self.default_size

    def draft_for(self, model: str) -> tuple[str, float]:
        """The default draft LoRA spec(s) and sampler shift for checkpoint `model` ('' if none)."""
        if self.is_large(model) and self.large_draft_lora:
            return self.large_draft_lora, self.large_draft_shift
        return self.draft_lora, self.draft_shift


# Draft LoRAs (public, step- and CFG-distilled; 4 steps, guidance 1.0). Each fits one base only.
SELF_FORCING_1_3B = (
    "Kijai/WanVideo_comfy/LoRAs/Wan2_1_self_forcing_1_3B/Wan2_1_self_forcing_dmd_1_3B_lora_rank_32_fp16.safetensors"
)
LIGHTX2V_14B = (
    "lightx2v/Wan2.1-T2V-14B-StepDistill-CfgDistill-Lightx2v/loras/"
    "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"
)
LIGHTX2V_A14B = (
    "lightx2v/Wan2.2-Distill-Loras/wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step_1217.safetensors,"
    "lightx2v/Wan2.2-Distill-Loras/wan2.2_t2v_A14b_low_noise_lora_rank64_lightx2v_4step_1217.safetensors"
)

_WAN21_SPEC = RenderSpec(native_fps=16.0, frame_multiple=4, frame_offset=1, max_seconds=81 / 16)

WAN = ModelFamily(
    name="wan",
    pipeline_class="WanPipeline",
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    # 81 frames (4k+1) at 16 fps = 5.06 s is what Wan 2.1 was trained on.
    spec=_WAN21_SPEC,
    default_size=(832, 480),
    large_size=(1280, 720),  # the 14B checkpoint is made for 720p
    large_marker="14B",
    max_sequence_length=512,
    vae_fp32=True,
    draft_lora=SELF_FORCING_1_3B,
    draft_shift=8.0,
    large_draft_lora=LIGHTX2V_14B,
    large_draft_shift=5.0,
)

WAN22_TI2V = ModelFamily(
    name="wan2.2-ti2v",
    pipeline_class="WanPipeline",  # expand_timesteps=True, Wan 2.2 VAE (16x spatial, 48 channels)
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    # 121 frames (4k+1) at 24 fps = 5.04 s, 1280x704 (720p rounded to the 32-pixel grid).
    spec=RenderSpec(native_fps=24.0, frame_multiple=4, frame_offset=1, max_seconds=121 / 24),
    default_size=(1280, 704),
    size_multiple=32,  # VAE 16 x patch 2
    max_sequence_length=512,
    vae_fp32=True,
)

WAN22_A14B = ModelFamily(
    name="wan2.2-a14b",
    pipeline_class="WanPipeline",  # transformer + transformer_2, boundary_ratio 0.875
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    spec=_WAN21_SPEC,
    default_size=(1280, 720),
    max_sequence_length=512,
    vae_fp32=True,
    experts=2,
    draft_lora=LIGHTX2V_A14B,
    draft_shift=5.0,
)

# Wan 2.1 with VACE blocks beside its own: the same sizes, and the base model's draft LoRAs apply
# to the base blocks.
WAN_VACE = replace(
    WAN,
    name="wan-vace",
    pipeline_class="WanVACEPipeline",
    default_model="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
    reference=True,
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

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (WAN, WAN22_TI2V, WAN22_A14B, WAN_VACE, MOCHI)}
# render.backend -> the families it may mean (the first is its default).
BACKENDS: dict[str, tuple[ModelFamily, ...]] = {"wan": (WAN, WAN22_TI2V, WAN22_A14B, WAN_VACE), "mochi": (MOCHI,)}


def family_for(backend: str) -> ModelFamily:
    """The default family of render backend `backend` (``wan`` or ``mochi``), or a family by name.

    Raises
    ------
    ValueError
        Neither a backend nor a family name.
    """
    if backend in BACKENDS:
        return BACKENDS[backend][0]
    try:
        return FAMILIES[backend]
    except KeyError:
        raise ValueError(f"no text-to-video family '{backend}' (known: {', '.join(FAMILIES)})") from None


def _family_from_index(index: dict) -> ModelFamily | None:
    cls = index.get("_class_name", "")
    if cls == "WanVACEPipeline":
        return WAN_VACE
    if cls == "MochiPipeline":
        return MOCHI
    if cls == "WanPipeline":
        second = index.get("transformer_2")
        if isinstance(second, list) and second[0] is not None:
            return WAN22_A14B
        if index.get("expand_timesteps"):
            return WAN22_TI2V
        return WAN
    return None


def _family_from_name(model: str) -> ModelFamily | None:
    low = model.lower()
    for marker, family in (("vace", WAN_VACE), ("ti2v", WAN22_TI2V), ("a14b", WAN22_A14B), ("mochi", MOCHI)):
        if marker in low:
            return family
    return None


def detect_family(backend: str, model: str = "", folder: Path | None = None) -> ModelFamily:
    """Which family checkpoint `model` of render backend `backend` is.

    The pipeline folder's ``model_index.json`` decides (``WanVACEPipeline``; ``WanPipeline``
    with a ``transformer_2`` -> Wan 2.2 A14B, with ``expand_timesteps`` -> Wan 2.2 TI2V-5B; else
    Wan 2.1); without a folder, the id's name (``VACE``, ``TI2V``, ``A14B``); else the backend's
    default family.

    Parameters
    ----------
    backend : str
        ``wan`` or ``mochi`` (or a family name).
    model : str
        Checkpoint id or folder ('' = the backend's default).
    folder : pathlib.Path, optional
        The resolved pipeline folder; default: `model` when it is an existing folder.

    Returns
    -------
    ModelFamily

    Raises
    ------
    ValueError
        The checkpoint belongs to another backend's family, or the backend is unknown.
    """
    default = family_for(backend)
    allowed = BACKENDS.get(backend, (default,))
    folder = folder if folder is not None else (Path(model).expanduser() if model else None)
    found = None
    if folder is not None and (folder / "model_index.json").is_file():
        found = _family_from_index(json.loads((folder / "model_index.json").read_text()))
    if found is None and model:
        found = _family_from_name(model)
    found = found or default
    if found not in allowed:
        raise ValueError(f"checkpoint {model!r} is a {found.name} pipeline, not one of backend '{backend}'")
    return found


def spec_for(backend: str, model: str = "") -> RenderSpec:
    """The planner's view of a backend (and checkpoint, by its name or folder), without loading it."""
    return detect_family(backend, model).spec


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
# Quality: final or draft, per scene
# --------------------------------------------------------------------------------------------


def scene_quality(settings: RenderSettings, index: int) -> str:
    """``final`` or ``draft``: the quality scene `index` renders in (``final_scenes`` win)."""
    return "final" if settings.quality == "final" or index in settings.final_scenes else "draft"


def scene_settings(settings: RenderSettings, index: int) -> RenderSettings:
    """The render settings scene `index` needs, with its quality resolved and ``final_scenes`` dropped.

    Flows render (and key) each scene with these, so naming a scene in ``final_scenes``
    changes the cache key of that scene alone.
    """
    return settings.model_copy(update={"quality": scene_quality(settings, index), "final_scenes": []})


@dataclass(frozen=True)
class Quality:
    """How a pipeline samples: the checkpoint as trained, or with draft LoRAs fused in."""

    name: str = "final"  # or "draft"
    loras: tuple[LoraFile, ...] = ()
    shift: float = 0.0  # draft sampler's flow shift

    def key(self) -> str:
        """What distinguishes two pipelines of one checkpoint (part of the pipeline cache key)."""
        return "|".join([self.name, f"{self.shift:g}"] + [f"{lf.path}@{lf.revision}" for lf in self.loras])

    def describe(self) -> str:
        """``draft[name@revision,...]`` for backend ids; empty for final."""
        if self.name == "final":
            return ""
        return "draft[" + ",".join(f"{lf.name}@{lf.revision}" for lf in self.loras) + "]"


def draft_quality(family: ModelFamily, model: str, spec: str) -> Quality:
    """The draft `Quality` of `family` for checkpoint `model`: LoRA `spec`, or the family's default.

    Raises
    ------
    ValueError
        No draft LoRA is known for this family, or the count does not match its experts.
    MissingCheckpointError
        A LoRA file is not on this machine.
    """
    default, shift = family.draft_for(model)
    spec = spec or default
    if not spec:
        raise ValueError(
            f"no draft LoRA is known for {family.name}; set render.draft_lora to a step-distilled LoRA for it"
        )
    loras = resolve_loras(spec)
    if len(loras) not in (1, family.experts):
        raise ValueError(f"{family.name} has {family.experts} expert(s); draft_lora names {len(loras)} LoRAs")
    return Quality("draft", loras, shift if spec == default else 5.0)


def apply_quality(pipe: Any, quality: Quality) -> None:
    """Fuse the draft LoRAs into the transformer(s) and switch to the draft sampler.

    Each LoRA is loaded with diffusers' `load_lora_weights` from its local file, fused at scale
    1.0 and unloaded, leaving plain layers (as fast as the base model, and compilable). With two
    LoRAs, the second goes into ``transformer_2`` (Wan 2.2 A14B's low-noise expert); with one
    LoRA and two experts, into both.
    """
    if quality.name == "final":
        return
    from diffusers import FlowMatchEulerDiscreteScheduler

    experts = ["transformer"] + (["transformer_2"] if getattr(pipe, "transformer_2", None) is not None else [])
    loras = quality.loras if len(quality.loras) == len(experts) else quality.loras * len(experts)
    for i, (component, lora) in enumerate(zip(experts, loras)):
        kwargs = {"load_into_transformer_2": True} if component == "transformer_2" else {}
        pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=f"draft{i}", **kwargs)
    pipe.fuse_lora(components=experts, lora_scale=1.0)
    pipe.unload_lora_weights()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=quality.shift)


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
    compile : '' (eager) or the torch.compile mode of the regional compile of the
        transformer's repeated blocks ('default', 'max-autotune-no-cudagraphs', 'reduce-overhead').
    quantization : '' (the dtype as loaded) or 'fp8' (torchao FP8 weights and activations).
    """

    attention_backend: str = ""
    transformer_cache: str = ""
    cache_threshold: float = 0.05
    compile: str = ""
    quantization: str = ""

    @classmethod
    def of(cls, settings: RenderSettings, device: str = "cpu") -> SpeedOptions:
        """The speed options a run's render settings ask for on `device`.

        ``compile_mode = "auto"`` compiles (mode ``default``) on CUDA devices, or anywhere when
        the older ``compile`` flag is set; ``off`` never; a mode name always.
        """
        mode = settings.compile_mode
        if mode == "auto":
            mode = "default" if settings.compile or str(device).startswith("cuda") else ""
        elif mode == "off":
            mode = ""
        return cls(
            settings.attention_backend,
            settings.transformer_cache,
            settings.cache_threshold,
            mode,
            settings.quantization,
        )


def _experts(pipe: Any) -> list[Any]:
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


def quantize_fp8(module: Any) -> None:
    """FP8 (e4m3, per-row scales) weights and dynamic activations for `module`'s block linears (torchao).

    Raises
    ------
    ValueError
        Not on a CUDA GPU of compute capability 8.9 or newer.
    """
    import torch

    dev = next(module.parameters()).device
    if dev.type != "cuda" or torch.cuda.get_device_capability(dev) < (8, 9):
        raise ValueError("quantization='fp8' needs a CUDA GPU of compute capability 8.9+ (Ada, Hopper or newer)")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(
        module,
        Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn.startswith(("blocks.", "vace_blocks.")),
    )


def apply_speed_options(pipe: Any, speed: SpeedOptions) -> None:
    """Quantize, set the attention backend and caching hook, and compile `pipe`'s transformer(s)."""
    tr = pipe.transformer
    if speed.quantization == "fp8":
        for m in _experts(pipe):
            quantize_fp8(m)
    elif speed.quantization:
        raise ValueError(f"unknown quantization '{speed.quantization}' (use '' or 'fp8')")
    if speed.attention_backend:
        for m in _experts(pipe):
            m.set_attention_backend(speed.attention_backend)
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
        for m in _experts(pipe):
            compile_blocks(m, speed.compile)


def compile_blocks(model: Any, mode: str = "default") -> None:
    """Regional `torch.compile` of `model`'s repeated blocks (compiled once, reused by every block).

    diffusers' `compile_repeated_blocks` (full graphs) where the model names its repeated
    blocks (Wan, Wan VACE); else each module of its ``transformer_blocks`` (Mochi).
    """
    kwargs = {} if mode == "default" else {"mode": mode}
    if getattr(model, "_repeated_blocks", None):
        model.compile_repeated_blocks(fullgraph=True, **kwargs)
        return
    for block in getattr(model, "transformer_blocks", None) or []:
        block.compile(**kwargs)


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
_CONSTRUCTIONS: Counter[str] = Counter()
_RENDERS: deque[dict] = deque(maxlen=1000)
_CACHE_LOCK = threading.Lock()


STATS_FILE = environment_variable(
    "SOUNDSIGHT_RENDER_STATS", "a file: each worker appends a JSON line per build and scene"
)


def _append_stats(record: dict) -> None:
    """Append `record` to the JSON-lines file named by $SOUNDSIGHT_RENDER_STATS, if set (benchmarks)."""
    path = STATS_FILE.get()
    if path:
        with open(path, "a") as f:  # one short write per line: lines from several workers do not mix
            f.write(json.dumps(record) + "\n")


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


@dataclass(frozen=True)
class Reference:
    """The reference image of ``identity = "reference"``: where it lies and its content hash."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: str) -> Reference:
        """Read `path`'s bytes for the hash (FileNotFoundError if there is none)."""
        p = Path(path).expanduser()
        if not path or not p.is_file():
            raise FileNotFoundError(f"identity='reference' needs render.reference to be an image file, not {path!r}")
        return cls(p.resolve(), hashlib.sha256(p.read_bytes()).hexdigest())

    def image(self) -> Any:
        """The image as an RGB PIL image."""
        from PIL import Image

        with Image.open(self.path) as im:
            return im.convert("RGB")


class DiffusionClipRenderer:
    """`ClipRenderer` for a diffusers text-to-video family.

    Cheap to create and to pickle: the pipeline lives in the process-wide cache and is built on
    the first scene.

    Parameters
    ----------
    settings : RenderSettings
        The run's render group; ``backend`` and ``model`` pick the family and checkpoint
        (empty model: the family's default, Wan VACE 1.3B for ``identity = "reference"``);
        ``quality``/``final_scenes`` the quality per scene; ``identity``/``reference`` the
        reference image.

    Raises
    ------
    MissingCheckpointError
        The checkpoint (or, in draft quality, a draft LoRA) is not on this machine.
    FileNotFoundError
        ``identity = "reference"`` without a reference image.
    ValueError
        An unknown backend, a reference identity on a checkpoint that takes no reference, or a
        draft quality with no known LoRA.
    """

    def __init__(self, settings: RenderSettings):
        default = family_for(settings.backend)
        if settings.identity == "reference" and settings.backend == "wan":
            default = WAN_VACE
        self.settings = settings
        self.checkpoint = resolve_pipeline_checkpoint(settings.model or default.default_model)
        self.family = detect_family(settings.backend, self.checkpoint.model_id, self.checkpoint.path)
        self.name = self.family.name
        self.spec = self.family.spec
        self.reference = None
        if settings.identity == "reference":
            if not self.family.reference:
                raise ValueError(
                    f"identity='reference' needs a checkpoint that takes a reference image (Wan VACE, e.g. "
                    f"{WAN_VACE.default_model}); {self.checkpoint.name} is {self.family.name}"
                )
            self.reference = Reference.of(settings.reference)
        self.draft = None
        if settings.quality == "draft":
            self.draft = draft_quality(self.family, self.checkpoint.model_id, settings.draft_lora)
        parts = [f"{self.family.name}:{self.checkpoint.name}@{self.checkpoint.revision}"]
        parts += [self.draft.describe()] if self.draft else []
        parts += [f"ref:sha256:{self.reference.sha256}"] if self.reference else []
        self.backend_id = "+".join(parts)
        self.memory = MemoryOptions(cpu_offload=settings.cpu_offload, vae_tiling=settings.vae_tiling)

    def quality_for(self, job: SceneJob) -> Quality:
        """The `Quality` scene `job` renders in (``final_scenes`` win over ``quality``)."""
        if self.draft is None or scene_quality(self.settings, job.index) == "final":
            return Quality()
        return self.draft

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

    def pipeline_for(self, device: str, quality: Quality = Quality()) -> LoadedPipeline:
        """The pipeline of this process for these settings and `quality` on `device`, built on first use.

        A process keeps one pipeline per device: building another (another checkpoint, quality
        or option) on the same device first drops the one there.
        """
        speed = SpeedOptions.of(self.settings, device)
        key = "|".join(
            [
                self.family.name,
                str(self.checkpoint.path),
                self.checkpoint.revision,
                quality.key(),
                self.settings.dtype,
                device,
                self.memory.describe(),
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
                _PIPELINES[key] = build_pipeline(
                    self.family, self.checkpoint, self.settings.dtype, device, self.memory, speed, quality
                )
                _CONSTRUCTIONS[key] += 1
                built_s = time.perf_counter() - t0
                _append_stats({"event": "build", "quality": quality.name, "pid": os.getpid(), "build_s": built_s})
                log.info(
                    "built %s %s pipeline %s on %s (%s) in %.1f s",
                    quality.name,
                    self.name,
                    self.checkpoint.model_id,
                    device,
                    _PIPELINES[key].memory.describe(),
                    built_s,
                )
            return _PIPELINES[key]

    def pipeline(self, quality: str = "final") -> Any:
        """The diffusers pipeline this process renders `quality` scenes with (built on first use)."""
        q = self.draft if quality == "draft" and self.draft else Quality()
        return self.pipeline_for(resolve_device(self.settings.device), q).pipe

    def generate(self, job: SceneJob) -> tuple[np.ndarray, dict]:
        """Frames (F, H, W, 3) uint8 for `job`, and a stats record (timings, memory, OOM retries)."""
        import torch

        # 1. The scene's quality, and 2. its pipeline.
        quality = self.quality_for(job)
        loaded = self.pipeline_for(resolve_device(self.settings.device), quality)
        draft = quality.name == "draft"

        # 3. The clip's geometry.
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

        # 4. Denoise with the scene's seed, stepping down the memory ladder when the GPU runs out.
        #    Draft: few steps, guidance 1.0 (the pipelines then skip the unconditional pass).
        extra = {"reference_images": [self.reference.image()]} if self.reference else {}

        def denoise():
            return loaded.pipe(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt or self.settings.negative_prompt,
                height=height,
                width=width,
                num_frames=n_frames,
                num_inference_steps=self.settings.draft_steps if draft else self.settings.steps,
                guidance_scale=1.0 if draft else self.settings.guidance_scale,
                generator=torch.Generator(device="cpu").manual_seed(job.seed),
                max_sequence_length=self.family.max_sequence_length,
                output_type="np",
                **extra,
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
            "quality": quality.name,
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
        # 5. Toward the run's palette before the one encode (a decode and a second encode cost ~2 s a clip).
        palette: dict[str, float] = {}
        if job.bible is not None and self.settings.palette_strength > 0:
            frames, match = match_palette(frames, job.bible.palette, self.settings.palette_strength)
            palette = match.info()
        # 6. One H.264 encoder for every clip.
        f, h, w, _ = frames.shape
        with FrameEncoder(Path(out_path), width=w, height=h, fps=self.spec.native_fps, frames=f) as encoder:
            for frame in frames:
                encoder.write(frame)
        stats["total_s"] = time.perf_counter() - t0
        _RENDERS.append(stats)
        _append_stats({"event": "scene", **stats})
        log.info(
            "scene %d: %d frames %dx%d in %.1f s (%s, %s)",
            job.index,
            f,
            w,
            h,
            stats["total_s"],
            stats["quality"],
            stats["memory"],
        )
        return ClipInfo(path=Path(out_path), frames=f, fps=self.spec.native_fps, width=w, height=h, palette=palette)


def make_renderer(settings: RenderSettings) -> DiffusionClipRenderer:
    """The renderer for `settings.backend` in ('wan', 'mochi')."""
    return DiffusionClipRenderer(settings)
