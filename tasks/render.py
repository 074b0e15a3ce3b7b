"""Stage 5: one clip per scene -> scenes/scene_NNN.mp4, fanned out across workers.

`plan_scenes` turns the script and segments into self-contained `SceneInput`s; `render_scene`
renders one. A scene's cache key depends only on what that scene shows (its prompt, its slice of
the audio, the render settings, the renderer's identity), so editing one scene's sentence
re-renders that scene alone.

The renderer is the ``render.backend`` entry of `soundsight.backends.RENDERERS`, a
`RendererBackend`: its frame rules, its `ClipRenderer`, whether its scenes go to GPU workers or
threads, whether it takes a reference image. Nothing here knows a backend by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import task
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from soundsight.cache import file_identity
from soundsight.errors import SoundsightError
from soundsight.media import atomic_path
from soundsight.models import registry
from soundsight.models.base import ClipRenderer, RendererBackend, RenderSpec, SceneJob
from soundsight.models.render.quality import scene_settings  # noqa: F401 - the flows use it from here
from soundsight.models.script.bible import reference_prompt, scene_prompt
from soundsight.schemas import Analysis, Manifest, SceneScript, Segmentation, VisualBible
from soundsight.settings import RenderSettings
from soundsight.tasks.common import stage_folder, stage_options, written


class SceneInput(BaseModel):
    """Everything needed to render one scene; only `run_dir` and `audio_path` locate files (never part of a key)."""

    index: int
    prompt: str
    caption: str
    seed: int
    start: float
    end: float
    frames: int
    song_hash: str
    palette_hint: str
    bible: VisualBible | None = Field(None, description="The run's visual identity (its content enters the key).")
    beat_times: tuple[float, ...] = Field((), description="Beats inside the scene, seconds from its start.")
    run_dir: str
    audio_path: str = Field(
        description="The analysis audio (mono, from the load stage) the scene's slice is read from."
    )


def scene_seed(run_seed: int, index: int) -> int:
    """A reproducible per-scene seed: the same run seed and scene index give the same clip."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{index}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def renderer_backend(settings: RenderSettings) -> RendererBackend:
    """The ``render.backend`` object (`soundsight.backends.RENDERERS`): everything below asks it, never its name."""
    return registry.load("renderer", settings.backend)


def renderer_spec(settings: RenderSettings) -> RenderSpec:
    """The active renderer's frame rules and longest clip, without loading any model."""
    return renderer_backend(settings).spec(settings)


def make_renderer(settings: RenderSettings) -> ClipRenderer:
    """The renderer, reused within a worker process (diffusion pipelines are cached per process)."""
    return renderer_backend(settings).make(settings)


def check_renderer(settings: RenderSettings) -> None:
    """Fail before any cluster starts when the renderer's checkpoint is not on this machine.

    Raises
    ------
    MissingCheckpointError
        One line naming the checkpoint and the command that downloads it. GPU workers behind
        ``render.dask_address`` hold their own checkpoints and are checked by their first scene.
    SoundsightError
        A tls:// scheduler, and no certificate for this client in Dask's configuration.
    """
    if renderer_backend(settings).gpu_workers and settings.dask_address:
        from soundsight.models.render import gpu_pool

        if problem := gpu_pool.tls_problem(settings.dask_address):
            raise SoundsightError(f"render.dask_address {problem}")
        return
    # The reference image is drawn later, by the reference stage: check the checkpoint alone.
    make_renderer(settings if settings.reference else settings.model_copy(update={"identity": "text"}))


def renderer_identity(inputs: dict[str, Any]) -> str:
    """Model id + revision, resolved where the task runs (the GPU worker holds the checkpoint)."""
    return make_renderer(inputs["settings"]).backend_id


def scene_task_runner(settings: RenderSettings) -> TaskRunner:
    """Threads for a CPU renderer; Dask for one on GPU workers (see the module docstring)."""
    if not renderer_backend(settings).gpu_workers:
        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    from soundsight.models.render import gpu_pool

    return DaskTaskRunner(**gpu_pool.task_runner_kwargs(settings))


def one_scene_per_gpu(settings: RenderSettings) -> contextlib.AbstractContextManager:
    """Claim one GPU per scene where the workers have GPUs.

    A context in which submitted scenes each claim one GPU worker resource (none on CPU
    clusters, where a GPU claim could never be met).
    """
    if not renderer_backend(settings).gpu_workers:
        return contextlib.nullcontext()
    from soundsight.models.render import gpu_pool

    if not (settings.dask_address or gpu_pool.visible_gpus()):
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})


def plan_scenes(
    song: Manifest, segments: Manifest, script: Manifest, analysis: Manifest | None, settings: RenderSettings
) -> list[SceneInput]:
    """One `SceneInput` per segment: the scene sentence in the run's visual identity (`scene_prompt`).

    The bible comes from the script stage (the user's edit of bible.json included); a script
    without one (an older run) ends each prompt with its style sentence. `analysis` is None when
    pipeline 2 ran without labels: the renderer's default palette then.
    """
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    scenes = SceneScript.model_validate_json(script.path("script").read_text())
    bible = VisualBible.model_validate_json(script.path("bible").read_text()) if "bible" in script.files else None
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text()) if analysis is not None else None
    palette = labels.visual["visual_style"].label if labels is not None else ""
    return [
        SceneInput(
            index=seg.index,
            prompt=scene_prompt(scene.description, bible) if bible else f"{scene.description} {scenes.style}.".strip(),
            bible=bible,
            beat_times=tuple(round(b - seg.start, 4) for b in seg.beats),
            caption=scene.description,
            seed=scene_seed(settings.seed, seg.index),
            start=seg.start,
            end=seg.end,
            frames=seg.frames,
            song_hash=segmentation.song_hash,
            palette_hint=palette,
            run_dir=song.run_dir,
            audio_path=str(song.path("audio")),
        )
        for seg, scene in zip(segmentation.segments, scenes.scenes)
    ]


def uses_reference(settings: RenderSettings) -> bool:
    """Whether scenes are conditioned on the run's reference image (``identity = "reference"``)."""
    return settings.identity == "reference" and renderer_backend(settings).takes_reference


def reference_identity(inputs: dict[str, Any]) -> str:
    """A user's image: its bytes; else the video model that draws the reference from the bible."""
    settings: RenderSettings = inputs["settings"]
    if settings.reference:
        return f"given={file_identity(settings.reference)}"
    return "drawn-by=" + make_renderer(settings.model_copy(update={"identity": "text", "reference": ""})).backend_id


def check_reference_edit(reference: Manifest, name: str, path: Path) -> None:
    """Raise ValueError unless an edited reference.png is an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError("it is not an image") from e


@task(**stage_options("reference", 1, identity=reference_identity))
def make_reference(song: Manifest, script: Manifest, settings: RenderSettings) -> Manifest:
    """reference.png: the character reference every scene is conditioned on (``identity = "reference"``).

    The user's image (``render.reference``) when given, else one frame the run's own video model
    draws from the bible's character sheet (`reference_prompt`). Editable: a changed reference.png
    re-renders every scene.
    """
    from PIL import Image

    folder = stage_folder(song.run_dir, "reference")
    out = folder / "reference.png"
    if settings.reference:
        with Image.open(Path(settings.reference).expanduser()) as im, atomic_path(out) as tmp:
            im.convert("RGB").save(tmp, format="PNG")
    else:
        bible = VisualBible.model_validate_json(script.path("bible").read_text())
        text_only = settings.model_copy(update={"identity": "text", "reference": ""})
        job = SceneJob(index=0, prompt=reference_prompt(bible), caption="", negative_prompt=settings.negative_prompt,
                       seed=scene_seed(settings.seed, -1), seconds=0.0, frames=1, fps=settings.fps,
                       width=settings.width, height=settings.height)  # fmt: skip
        image = renderer_backend(settings).draw_reference(text_only, job)
        with atomic_path(out) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    manifest = written("reference", song.run_dir, {"reference": out}, links={"reference": "reference.png"})
    return manifest.model_copy(update={"editable": ["reference"]})


@task(
    **stage_options("render", 3, identity=renderer_identity, retries=2, retry_delay_seconds=5),
    task_run_name="render-scene-{scene.index:03d}",
)
def render_scene(scene: SceneInput, settings: RenderSettings) -> Manifest:
    """Render one scene -> scenes/scene_NNN.mp4 (its slice of the analysis audio drives the animatic)."""
    started = time.perf_counter()
    name = f"scene_{scene.index:03d}.mp4"
    out = stage_folder(scene.run_dir, "render") / name
    info = sf.info(scene.audio_path)
    start, stop = int(round(scene.start * info.samplerate)), int(round(scene.end * info.samplerate))
    audio, sr = sf.read(scene.audio_path, start=start, stop=stop, dtype="float32")
    job = SceneJob(
        index=scene.index,
        prompt=scene.prompt,
        caption=scene.caption,
        negative_prompt=settings.negative_prompt,
        seed=scene.seed,
        seconds=scene.end - scene.start,
        frames=scene.frames,
        fps=settings.fps,
        width=settings.width,
        height=settings.height,
        audio=np.asarray(audio),
        sample_rate=sr,
        palette_hint=scene.palette_hint,
        bible=scene.bible,
        beat_times=scene.beat_times,
        start_seconds=scene.start,
    )
    backend = renderer_backend(settings)
    clip = backend.make(settings)(job, out)
    costs = backend.costs()  # how often this worker process built a pipeline: once, if all is well
    return written(
        "render",
        scene.run_dir,
        {"clip": out},
        links={"clip": f"scenes/{name}"},
        index=scene.index,
        frames=clip.frames,
        fps=clip.fps,
        width=clip.width,
        height=clip.height,
        worker_pid=os.getpid(),
        pipelines_built_in_worker=costs.pipelines_built,
        task_seconds=round(time.perf_counter() - started, 3),
        gpu_seconds=round(costs.gpu_seconds, 3),
        **clip.palette,  # a video model's palette match (the animatic draws in the palette already)
    )
