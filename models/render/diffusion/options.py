"""Pipeline options: how much of it sits on the GPU (with the out-of-memory ladder), and speed-ups."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from soundsight.settings import RenderSettings

__all__ = [
    "MemoryOptions",
    "SpeedOptions",
    "apply_speed_options",
    "compile_blocks",
    "memory_ladder",
    "next_cheaper",
    "quantize_fp8",
]


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
