"""The music-video flow's two fan-outs: CLAP embedding batches, and scenes.

Both submit one task per unit of work to a task runner and wait for all of them, so a retried run
finds every finished unit cached and redoes only the rest. This is the one path the CLI,
deployments, tests and benchmarks take.

Scenes render where the backend needs them: the CPU animatic on threads; diffusion models on a
Dask cluster - a local one with one worker per GPU running two scenes at a time (two
single-threaded CPU workers without GPUs), or the scheduler at ``render.dask_address`` - where
each worker keeps its pipeline loaded and every scene claims a scene slot of a GPU worker. The
local cluster is started, and each worker's pipeline loaded, by `GpuWarmUp` as soon as the run
has work to do, while the CPU stages run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from prefect.task_runners import ThreadPoolTaskRunner

from soundsight.flows.report import track_progress
from soundsight.flows.stages import Stages, cached_result
from soundsight.schemas import Manifest
from soundsight.settings import AnalysisSettings, RenderSettings
from soundsight.tasks.analyse import analyse_song, embed_segment_batch, fans_out, segment_batches
from soundsight.tasks.render import (
    SceneInput,
    check_reference_edit,
    gpu_slot,
    make_reference,
    one_scene_per_gpu_slot,
    prepare_renderer,
    render_scene,
    renderer_backend,
    scene_settings,
    scene_task_runner,
    start_gpu_workers,
    uses_reference,
)

log = logging.getLogger("soundsight")


class GpuWarmUp:
    """The local GPU workers started, and each one's pipeline loaded, while the CPU stages run.

    A run creates one and hands `start` to its `Stages` as ``on_work``: the first stage that
    really runs (not a cache hit) starts, on a thread of its own, the local Dask cluster
    (`tasks.render.start_gpu_workers`, ~11 s) and submits `prepare_renderer` to each worker (the pipeline
    load, ~18 s for Wan 1.3B with UMT5-XXL). The render stage then connects to it (`address`) and
    releases it when the last scene is done (it closes while the video is assembled); a run whose
    scenes are all cached only closes it, and a fully cached rerun never starts it.
    With ``render.dask_address`` (long-lived workers keep their pipelines) or a backend without
    GPU workers it does nothing. A context manager: leaving it closes the cluster.

    Parameters
    ----------
    settings : RenderSettings
        The run's render settings (the first scenes' quality is ``settings.quality``).
    """

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        self.wanted = renderer_backend(settings).gpu_workers and not settings.dask_address
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closer: threading.Thread | None = None
        self._cluster = None
        self._client = None
        self._futures: list = []

    def __enter__(self) -> GpuWarmUp:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the cluster and the pipeline loads on a thread (once; any later call does nothing)."""
        with self._lock:
            if self.wanted and self._thread is None:
                self._thread = threading.Thread(target=self._start, name="soundsight-gpu-warm-up", daemon=True)
                self._thread.start()

    def _start(self) -> None:
        from distributed import Client

        t0 = time.perf_counter()
        try:
            self._cluster = start_gpu_workers()
            self._client = Client(self._cluster, set_as_default=False)  # not as default: the render stage has its own
            workers = list(self._client.scheduler_info(n_workers=-1)["workers"])
        except Exception as exc:  # noqa: BLE001 - the render stage starts the cluster itself and reports the error
            log.warning("could not start the GPU workers ahead of the render stage: %s", exc)
            return
        log.info("GPU workers started in %.1f s; loading their pipelines", time.perf_counter() - t0)
        resources = gpu_slot(self.settings) or None
        for address in workers:
            future = self._client.submit(
                prepare_renderer, self.settings, workers=[address], resources=resources, pure=False
            )
            future.add_done_callback(self._prepared)
            self._futures.append(future)

    @staticmethod
    def _prepared(future) -> None:
        if future.status == "error":  # the first scene meets the same error and reports it
            log.warning("loading a GPU worker's pipeline ahead of its first scene failed: %s", future.exception())

    def address(self) -> str:
        """The local cluster's scheduler address, starting it now if no stage did; '' when none was started."""
        self.start()
        thread = self._thread
        if thread is not None:
            thread.join()
        return self._cluster.scheduler_address if self._cluster is not None else ""

    def release(self) -> None:
        """Start closing the cluster on a thread of its own (the run needs it no more); `close` waits for that.

        Closing the workers takes seconds (a worker holding a GPU pipeline is killed after 4 s): the
        render stage releases them while the video is assembled.
        """
        with self._lock:
            self.wanted = False  # no start after this
            if self._closer is None:
                self._closer = threading.Thread(target=self._close, name="soundsight-gpu-release", daemon=True)
                self._closer.start()

    def close(self) -> None:
        """Close the cluster (waiting for a start under way); safe to call again."""
        self.release()
        self._closer.join()

    def _close(self) -> None:
        if self._thread is not None:
            self._thread.join()
        client, cluster, self._client, self._cluster, self._futures = self._client, self._cluster, None, None, []
        for resource in (client, cluster):
            if resource is not None:
                with contextlib.suppress(Exception):  # a worker already gone: nothing left to close
                    resource.close()


def analyse(stage: Stages, song: Manifest, segments: Manifest, settings: AnalysisSettings) -> Manifest:
    """The analyse stage, fanned out per batch of segments for CLAP.

    One task; with CLAP, first one embedding task per batch of segments (on the flow's workers,
    each keeping the model loaded), then one labelling task.
    """
    embeddings = None
    if fans_out(settings):
        batches = [
            stage.task(embed_segment_batch).submit(song, segments, first, last, settings)
            for first, last in segment_batches(segments, settings)
        ]
        embeddings = [stage.published(batch) for batch in batches]
    return stage(analyse_song)(song, segments, settings, embeddings)


def render(
    stage: Stages,
    song: Manifest,
    script: Manifest,
    scenes: list[SceneInput],
    settings: RenderSettings,
    warm: GpuWarmUp | None = None,
) -> list[Manifest]:
    """The render stage: one task per scene, fanned out.

    First, for ``identity = "reference"``, the reference image every scene is conditioned on. Work
    whose result is already cached (and intact) is collected on threads; only the rest goes to
    `scene_task_runner` - on the cluster `warm` started (and whose pipelines it loaded) while the
    CPU stages ran, else a cluster started now - so a fully cached rerun starts no GPU cluster.
    Each scene's line (Completed / Cached) and its timings are recorded here, in the flow's
    process, wherever the scene ran. Returns the clips in scene order once every scene has
    finished (or raises the first failure).
    """
    with contextlib.ExitStack() as runners:
        threads = runners.enter_context(ThreadPoolTaskRunner(max_workers=2))
        runner = None

        def where(task, inputs):
            nonlocal runner
            if cached_result(task, inputs, stage.output) is not None:
                return threads
            if runner is None:
                runner = runners.enter_context(scene_task_runner(settings, warm.address() if warm else ""))
            return runner

        if uses_reference(settings):
            made, inputs = stage.task(make_reference), {"song": song, "script": script, "settings": settings}
            with one_scene_per_gpu_slot(settings):
                reference = stage.published(where(made, inputs).submit(made, inputs), edits=check_reference_edit)
            settings = settings.model_copy(update={"reference": str(reference.path("reference"))})

        # Each scene with its own quality (draft, or final for `final_scenes`); final ones go last,
        # so a worker switches pipelines once.
        task = stage.task(render_scene)
        per_scene = {s.index: scene_settings(settings, s.index) for s in scenes}
        order = sorted(scenes, key=lambda s: per_scene[s.index].quality == "final" and settings.quality == "draft")
        futures = {}
        for scene in order:
            inputs = {"scene": scene, "settings": per_scene[scene.index]}
            pool = where(task, inputs)
            with one_scene_per_gpu_slot(settings) if pool is not threads else contextlib.nullcontext():
                futures[scene.index] = pool.submit(task, inputs)
        names = {f.task_run_id: f"render-scene-{index:03d}" for index, f in futures.items()}

        def finished(future) -> None:
            clip = future.result(raise_on_failure=False) if future.state.is_completed() else None
            stage.scene_finished(
                names[future.task_run_id], future.state.name, clip if isinstance(clip, Manifest) else None
            )

        if runner is None and warm is not None:
            warm.release()  # every scene was cached: the GPU workers started for nothing
        ordered = [futures[s.index] for s in scenes]
        track_progress(song, ordered, on_finished=finished)
        clips = [stage.published(future) for future in ordered]
    if warm is not None:
        warm.release()  # closes while the video is assembled
    return clips
