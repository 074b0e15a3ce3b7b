"""Text-to-video clip renderers on diffusers: Wan 2.1 / 2.2 / VACE and Mochi-1. No Prefect here.

The entry point is `make_renderer(settings)`; the ``wan`` and ``mochi`` render backends
(`WAN_BACKEND`, `MOCHI_BACKEND`: `soundsight.backends.RENDERERS`) wrap it. One module per job:

- `families`: what each family is (`ModelFamily`: pipeline class, default checkpoint, native fps,
  frame rule, longest good clip, default resolution, VAE dtype, experts, draft LoRA), which family
  a checkpoint is (``render.backend = "wan"`` covers the Wan families: the checkpoint's
  ``model_index.json`` says which, `detect_family`), and where its checkpoint lies;
- `draft`: draft quality (a step/CFG-distilled LoRA fused into the transformer);
- `options`: memory options with the out-of-memory ladder, and speed options (compile, FP8, ...);
- `pipeline`: loading and building a pipeline (the VAE that decodes is chosen there), and the
  per-process cache of built ones;
- `renderer`: `DiffusionClipRenderer`, one scene into one clip (the clip is encoded in `write_clip`);
- `stats`: this process's record of pipeline builds and scenes;
- `backend`: the render backends.

Rendering a scene, as `DiffusionClipRenderer.__call__` runs it:

1. The scene's quality: ``final`` (the checkpoint as trained) or ``draft`` (a step/CFG-distilled
   LoRA fused into the transformer, ``draft_steps`` steps, no classifier-free guidance);
   ``final_scenes`` renders chosen scenes in final quality whatever ``quality`` says
   (`soundsight.models.render.quality.scene_quality`).
2. The pipeline for that quality: built once per process and reused (`cached_pipeline`, keyed by
   checkpoint, revision, quality, dtype, device, memory and speed options), so a Dask worker
   (one per GPU) loads its model once; a worker holds one pipeline per device and a scene that
   needs another (other checkpoint or quality) replaces it. Checkpoints and LoRAs come from the
   Hugging Face cache or a local folder, never the network. On CUDA workers the transformer's
   repeated blocks are compiled once (``compile_mode = "auto"``).
3. The clip's geometry: ``spec.frames_for(job.seconds)`` frames at the model's native fps, at
   the model's resolution (not the output's: the assembler retimes, scales and trims).
4. Denoising with the scene's seed (and, for ``identity = "reference"``, the reference image
   through Wan VACE), then the pipeline's VAE decode. Out of GPU memory
   (`torch.OutOfMemoryError`), the pipeline steps down `memory_ladder` (model CPU offload, then
   tiled VAE decode) and the call is retried; the cached pipeline keeps the cheaper setting for
   later scenes on that worker.
5. A video model drifts from the run's palette: with a visual bible and ``palette_strength > 0`` the
   frames are moved toward the bible's palette (`soundsight.models.render.palette.match_palette`)
   in memory, so the clip is encoded once.
6. The frames are encoded with the project's one H.264 encoder (`write_clip`:
   `soundsight.media.FrameEncoder`).

``backend_id`` = family, checkpoint name and revision (`soundsight.models.hub`), plus the draft
LoRAs' names and revisions in draft quality and the reference image's content hash in reference
identity: what render cache keys depend on.
"""

from soundsight.models.render.diffusion.backend import MOCHI_BACKEND, WAN_BACKEND, DiffusionBackend
from soundsight.models.render.diffusion.draft import Quality, apply_quality, draft_quality
from soundsight.models.render.diffusion.families import (
    BACKEND_FAMILIES,
    FAMILIES,
    LIGHTX2V_14B,
    LIGHTX2V_A14B,
    MOCHI,
    SELF_FORCING_1_3B,
    WAN,
    WAN22_A14B,
    WAN22_TI2V,
    WAN_VACE,
    ModelFamily,
    detect_family,
    family_for,
    resolve_pipeline_checkpoint,
    spec_for,
)
from soundsight.models.render.diffusion.options import (
    MemoryOptions,
    SpeedOptions,
    apply_speed_options,
    compile_blocks,
    memory_ladder,
    next_cheaper,
    quantize_fp8,
)
from soundsight.models.render.diffusion.pipeline import (
    LoadedPipeline,
    build_pipeline,
    cached_pipeline,
    clear_pipeline_cache,
    load_pipeline,
)
from soundsight.models.render.diffusion.renderer import DiffusionClipRenderer, make_renderer, write_clip
from soundsight.models.render.diffusion.stats import construction_counts, pipeline_builds, render_stats
from soundsight.models.render.quality import scene_quality, scene_settings

__all__ = [
    "BACKEND_FAMILIES",
    "FAMILIES",
    "LIGHTX2V_14B",
    "LIGHTX2V_A14B",
    "MOCHI",
    "MOCHI_BACKEND",
    "SELF_FORCING_1_3B",
    "WAN",
    "WAN22_A14B",
    "WAN22_TI2V",
    "WAN_BACKEND",
    "WAN_VACE",
    "DiffusionBackend",
    "DiffusionClipRenderer",
    "LoadedPipeline",
    "MemoryOptions",
    "ModelFamily",
    "Quality",
    "SpeedOptions",
    "apply_quality",
    "apply_speed_options",
    "build_pipeline",
    "cached_pipeline",
    "clear_pipeline_cache",
    "compile_blocks",
    "construction_counts",
    "detect_family",
    "draft_quality",
    "family_for",
    "load_pipeline",
    "make_renderer",
    "memory_ladder",
    "next_cheaper",
    "pipeline_builds",
    "quantize_fp8",
    "render_stats",
    "resolve_pipeline_checkpoint",
    "scene_quality",
    "scene_settings",
    "spec_for",
    "write_clip",
]
