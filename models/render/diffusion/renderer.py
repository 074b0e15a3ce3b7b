"""`DiffusionClipRenderer`: one scene in, one clip out, for every diffusers family.

The steps of rendering a scene are numbered in `DiffusionClipRenderer.generate` and `__call__`
(see the package docstring).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundsight.media import FrameEncoder
from soundsight.models.base import ClipInfo, SceneJob
from soundsight.models.hub import resolve_device
from soundsight.models.render.diffusion import stats
from soundsight.models.render.diffusion.draft import Quality, draft_quality
from soundsight.models.render.diffusion.families import (
    BACKEND_FAMILIES,
    WAN_VACE,
    detect_family,
    family_for,
    resolve_pipeline_checkpoint,
)
from soundsight.models.render.diffusion.options import MemoryOptions, SpeedOptions
from soundsight.models.render.diffusion.pipeline import LoadedPipeline, cached_pipeline, on_memory_ladder
from soundsight.models.render.palette import match_palette
from soundsight.models.render.quality import scene_quality
from soundsight.settings import RenderSettings

__all__ = ["DiffusionClipRenderer", "Reference", "make_renderer", "write_clip"]

log = logging.getLogger("soundsight.render")


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
        if settings.identity == "reference":  # the backend's family that takes a reference image (Wan VACE)
            default = next((f for f in BACKEND_FAMILIES.get(settings.backend, ()) if f.reference), default)
        self.settings = settings
        self.checkpoint = resolve_pipeline_checkpoint(settings.model or default.default_model, default.default_model)
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

        A process keeps one pipeline per device (`cached_pipeline`): building another (another
        checkpoint, quality or option) on the same device first drops the one there.
        """
        speed = SpeedOptions.of(self.settings, device)
        return cached_pipeline(self.family, self.checkpoint, self.settings.dtype, device, self.memory, speed, quality)

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
                output_type="np",  # the pipeline's VAE decodes the latents (chosen in `pipeline.load_pipeline`)
                **extra,
            )

        with loaded.lock:
            t0 = time.perf_counter()
            out, oom_retries = on_memory_ladder(loaded, denoise, f"scene {job.index}")
            render_s = time.perf_counter() - t0
        video = np.asarray(out.frames[0])  # (F, H, W, 3) floats in [0, 1]
        if video.shape[0] != n_frames:
            raise RuntimeError(f"{self.name} returned {video.shape[0]} frames, asked for {n_frames}")
        record = {
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
        return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), record

    def __call__(self, job: SceneJob, out_path: Path) -> ClipInfo:
        """Render `job` into the MP4 `out_path` (written atomically); see the package docstring."""
        t0 = time.perf_counter()
        frames, record = self.generate(job)
        # 5. Toward the run's palette before the one encode (a decode and a second encode cost ~2 s a clip).
        palette: dict[str, float] = {}
        if job.bible is not None and self.settings.palette_strength > 0:
            frames, match = match_palette(frames, job.bible.palette, self.settings.palette_strength)
            palette = match.info()
        # 6. One H.264 encoder for every clip.
        f, h, w, _ = frames.shape
        write_clip(frames, Path(out_path), self.spec.native_fps)
        record["total_s"] = time.perf_counter() - t0
        stats.record_scene(record)
        log.info(
            "scene %d: %d frames %dx%d in %.1f s (%s, %s)",
            job.index,
            f,
            w,
            h,
            record["total_s"],
            record["quality"],
            record["memory"],
        )
        return ClipInfo(path=Path(out_path), frames=f, fps=self.spec.native_fps, width=w, height=h, palette=palette)


def make_renderer(settings: RenderSettings) -> DiffusionClipRenderer:
    """The renderer for `settings.backend` in ('wan', 'mochi')."""
    return DiffusionClipRenderer(settings)


def write_clip(frames: np.ndarray, out_path: Path, fps: float) -> None:
    """Encode `frames` (F, H, W, 3) uint8 at `fps` frames per second into the MP4 `out_path` (atomically).

    The project's one H.264 encoder (`soundsight.media.FrameEncoder`), frame by frame.
    """
    f, h, w, _ = frames.shape
    with FrameEncoder(out_path, width=w, height=h, fps=fps, frames=f) as encoder:
        for frame in frames:
            encoder.write(frame)
