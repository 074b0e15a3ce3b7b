"""Stage 5: one clip per scene -> scenes/scene_NNN.mp4, fanned out across workers.

`plan_scenes` turns the script and segments into self-contained `SceneInput`s; `render_scene`
renders one. A scene's cache key depends only on what that scene shows (its prompt, its slice of
the audio, the render settings, the renderer's identity), so editing one scene's sentence
re-renders that scene alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import task
from pydantic import BaseModel

from models.base import ClipRenderer, RenderSpec, SceneJob
from soundsight.schemas import Analysis, Manifest, SceneScript, Segmentation
from soundsight.settings import RenderSettings
from tasks.common import stage_options, written


class InjectedFault(RuntimeError):
    """Raised by the fault-injection setting; never retried by the task itself."""


class SceneInput(BaseModel):
    """Everything needed to render one scene, and nothing that locates files but `run_dir`."""

    index: int
    prompt: str
    caption: str
    seed: int
    start: float
    end: float
    frames: int
    song_hash: str
    palette_hint: str
    run_dir: str


def scene_seed(run_seed: int, index: int) -> int:
    """A reproducible per-scene seed: the same run seed and scene index give the same clip."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{index}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def renderer_spec(settings: RenderSettings) -> RenderSpec:
    """The active renderer's frame rules and longest clip, without loading any model."""
    if settings.backend == "animatic":
        return RenderSpec(native_fps=float(settings.fps))
    from models.video_diffusion import spec_for

    return spec_for(settings.backend)


def make_renderer(settings: RenderSettings) -> ClipRenderer:
    """The renderer, reused within a worker process (diffusion pipelines are cached per process)."""
    if settings.backend == "animatic":
        from models.animatic import AnimaticRenderer

        return AnimaticRenderer(settings.fps)
    from models.video_diffusion import make_renderer as make_diffusion_renderer

    return make_diffusion_renderer(settings)


def renderer_identity(inputs: dict[str, Any]) -> str:
    """Model id + revision, resolved where the task runs (the GPU worker holds the checkpoint)."""
    settings: RenderSettings = inputs["settings"]
    if settings.backend == "animatic":
        from models.animatic import RENDERER_ID

        return RENDERER_ID
    return make_renderer(settings).backend_id


def scene_task_runner(settings: RenderSettings):
    """Where scenes render: threads for the CPU animatic; Dask for diffusion models - a local
    cluster with one worker per GPU (two CPU workers without GPUs), or `settings.dask_address`."""
    if settings.backend == "animatic":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    from models import gpu_pool

    return DaskTaskRunner(**gpu_pool.task_runner_kwargs(settings))


def one_scene_per_gpu(settings: RenderSettings):
    """A context in which submitted scenes each claim one GPU worker resource (none on CPU clusters,
    where a GPU claim could never be met)."""
    import contextlib

    if settings.backend == "animatic":
        return contextlib.nullcontext()
    from models import gpu_pool

    if not (settings.dask_address or gpu_pool.visible_gpus()):
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})


def plan_scenes(song: Manifest, segments: Manifest, script: Manifest, analysis: Manifest, settings: RenderSettings) -> list[SceneInput]:
    """One `SceneInput` per segment: the scene sentence plus the run's style guidelines."""
    segmentation = Segmentation.model_validate_json(segments.path("segments").read_text())
    scenes = SceneScript.model_validate_json(script.path("script").read_text())
    labels = Analysis.model_validate_json(analysis.path("analysis").read_text())
    palette = labels.visual["visual_style"].label
    return [
        SceneInput(
            index=seg.index,
            prompt=f"{scene.description} {scenes.style}.".strip(),
            caption=scene.description,
            seed=scene_seed(settings.seed, seg.index),
            start=seg.start,
            end=seg.end,
            frames=seg.frames,
            song_hash=segmentation.song_hash,
            palette_hint=palette,
            run_dir=song.run_dir,
        )
        for seg, scene in zip(segmentation.segments, scenes.scenes)
    ]


def _not_injected(task, task_run, state) -> bool:
    try:
        state.result()
    except InjectedFault:
        return False
    except Exception:
        return True
    return True


@task(
    **stage_options("render", 1, identity=renderer_identity, retries=2, retry_delay_seconds=5),
    task_run_name="render-scene-{scene.index:03d}",
    retry_condition_fn=_not_injected,
)
def render_scene(scene: SceneInput, settings: RenderSettings) -> Manifest:
    run_dir = Path(scene.run_dir)
    out = run_dir / "scenes" / f"scene_{scene.index:03d}.mp4"
    if settings.fail_scene == scene.index:
        marker = run_dir / "scenes" / f".injected_fault_{scene.index:03d}"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            raise InjectedFault(f"fault injected into scene {scene.index} (render.fail_scene); retry the run")
    kill_if_injected(scene)

    info = sf.info(run_dir / "audio.wav")
    start, stop = int(round(scene.start * info.samplerate)), int(round(scene.end * info.samplerate))
    audio, sr = sf.read(run_dir / "audio.wav", start=start, stop=stop, dtype="float32")
    job = SceneJob(
        index=scene.index, prompt=scene.prompt, caption=scene.caption, negative_prompt=settings.negative_prompt,
        seed=scene.seed, seconds=scene.end - scene.start, frames=scene.frames, fps=settings.fps,
        width=settings.width, height=settings.height, audio=np.asarray(audio), sample_rate=sr,
        palette_hint=scene.palette_hint,
    )  # fmt: skip
    clip = make_renderer(settings)(job, out)
    rel = str(out.relative_to(run_dir))
    builds = 0
    if settings.backend != "animatic":  # how often this worker process built a pipeline: once, if all is well
        from models.video_diffusion import construction_counts

        builds = sum(construction_counts().values())
    return written("render", scene.run_dir, {"clip": rel}, index=scene.index, frames=clip.frames, fps=clip.fps,
                   width=clip.width, height=clip.height, worker_pid=os.getpid(), pipelines_built_in_worker=builds)


# --- fault injection: a process killed mid-render (tests of resuming a crashed run) ----------------

KILL_SCENE_ENV = "SOUNDSIGHT_FAULT_KILL_SCENE"


def kill_if_injected(scene: SceneInput) -> None:
    """SOUNDSIGHT_FAULT_KILL_SCENE=k: the first time scene k renders, SIGKILL this process - the
    flow-run process a worker started - as an OOM killer or a lost machine would. Scenes already
    rendered keep their cached results; retrying the run renders the rest. Off when unset."""
    import os
    import signal

    value = os.environ.get(KILL_SCENE_ENV, "").strip()
    if not value.lstrip("-").isdigit() or int(value) != scene.index:
        return
    marker = Path(scene.run_dir) / "scenes" / f".injected_kill_{scene.index:03d}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)
