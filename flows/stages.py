"""Flow plumbing: each stage task configured once per run, its files published, its runs timed.

A stage task (`soundsight.tasks`) computes, caches and returns a `Manifest`. What happens around it
belongs to the run, not to the stage, and lives here:

- configuration: results stored under the runs folder (`results_dir`), the cache ignored for
  the stages the user forces (`configured`);
- publishing: the run folder's readable names (``segments.json``, ``scenes/scene_003.mp4`` ...)
  point at this run's files, all of them and only them, replaced as one set under a lock each time
  a stage finishes (`show_only`), so two runs of one song never leave names of both; the user's
  edits of editable files are taken in first (`adopt_edits`);
- timing: every task run's final state and seconds (the timings artifact) and one progress line
  per finished stage;
- work: ``on_work`` is called before the first stage call that will really run (not come from the
  cache), so a run can start what later stages need (the GPU workers) only when it has work to do.

A flow makes one `Stages` per run and calls each stage through it::

    stage = Stages(settings.output)
    loaded = stage(load_song)(song, ...)                      # run (or cached), then published
    script = stage(write_script, edits=check_script_edit)(...)
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.futures import PrefectFuture

from soundsight.cache import forget_unless_intact
from soundsight.errors import SoundsightError
from soundsight.media import exclusive_lock, sha256_file
from soundsight.schemas import Manifest
from soundsight.settings import STAGES, OutputSettings

progress = logging.getLogger("soundsight.progress")

EditCheck = Callable[[Manifest, str, Path], None]
"""``check(manifest, name, path)``: raises ValueError unless the user's edit of file `name` can be used."""


# --- one run's configuration -----------------------------------------------------------------------


def results_dir(runs_dir: str | Path) -> Path:
    """Where cached task results live: inside the runs folder.

    So each runs folder has its own cache, and a cache hit never points into another folder.
    """
    return Path(runs_dir).expanduser().resolve() / ".cache" / "results"


def configured(task: Task, output: OutputSettings) -> Task:
    """`task` with its result storage under ``output.runs_dir``, its cache ignored when its stage is forced."""
    options: dict[str, Any] = {"result_storage": results_dir(output.runs_dir)}
    if task.name in output.force:
        options["refresh_cache"] = True
    return task.with_options(**options)


def cached_result(task: Task, inputs: dict[str, Any], output: OutputSettings) -> Manifest | None:
    """What `task` called with `inputs` would return from the cache right now, checked; None if it would run.

    Lets a flow decide where work runs before starting anything expensive (a GPU cluster is not
    started for scenes that are all cached). None when the stage is forced, the key cannot be
    computed here (the checkpoint is only on the workers), or the record is missing or not intact.
    """
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore

    if task.name in output.force or task.cache_policy is None:
        return None
    try:
        key = task.cache_policy.compute_key(task_ctx=None, inputs=inputs, flow_parameters={})
    except Exception:  # noqa: BLE001 - e.g. the backend cannot be resolved in this process
        return None
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(results_dir(output.runs_dir))))
    if forget_unless_intact(store, key) or not store.exists(key):
        return None
    value = store.read(key).result
    return value if isinstance(value, Manifest) else None


def report_state(task: Task, task_run, state) -> None:
    """Task state hook: one line per finished stage or batch, 'Cached' or 'Completed'."""
    progress.info("%s: %s", task_run.name if task.name == "analyse-batch" else task.name, state.name)


@dataclass(frozen=True)
class Stage:
    """One stage task as this run calls it.

    task : the task configured for the run (submit it, or ask `cached_result` about it).
    edits : checks the user's edits of the result's editable files before they are taken in.
    """

    task: Task
    stages: Stages
    edits: EditCheck | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Manifest:
        """Run the task (or take its cached result) and publish what it returns."""
        if self.stages.on_work is not None:
            from prefect.utilities.callables import get_call_parameters

            if cached_result(self.task, get_call_parameters(self.task.fn, args, kwargs), self.stages.output) is None:
                self.stages.on_work, on_work = None, self.stages.on_work  # once: later stages skip the lookup
                on_work()
        return self.stages.publish(self.task(*args, **kwargs), self.edits)


class Stages:
    """The stage tasks of one run: each configured once, its results published, its runs recorded.

    Parameters
    ----------
    output : OutputSettings
        The run's runs folder and forced stages.
    on_work : callable, optional
        Called once, with no arguments, before the first stage call (`Stage.__call__`) whose result
        is not in the cache: that stage, and so the run, has work to do. A task's own on_running
        hook would not do: Prefect 3 enters Running before it looks the cache up.
    """

    def __init__(self, output: OutputSettings, on_work: Callable[[], None] | None = None):
        self.output = output
        self.on_work = on_work
        self.runs: list[dict[str, Any]] = []  # appended from task threads: list.append is atomic
        self._tasks: dict[str, Task] = {}  # Task.with_options costs ~8 ms: once per stage, not per scene
        self.links: dict[str, Path] = {}  # this run's readable names (relative to its run folder) -> files

    def __call__(self, task: Task, edits: EditCheck | None = None) -> Stage:
        """`task` as this run calls it (`edits`: how to check the user's edits of its result)."""
        return Stage(self.task(task), self, edits)

    def task(self, task: Task) -> Task:
        """`task` configured for this run, recording its runs.

        Scenes may render in other processes (Dask workers), where a hook's record would stay:
        their runs are recorded from the flow's side, by `scene_finished`.
        """
        if task.name not in self._tasks:
            task = configured(task, self.output)
            if task.name != "render":
                task = task.with_options(
                    on_completion=[*task.on_completion_hooks, self._record, report_state],
                    on_failure=[*task.on_failure_hooks, self._record, report_state],
                )
            self._tasks[task.name] = task
        return self._tasks[task.name]

    def publish(self, manifest: Manifest, edits: EditCheck | None = None) -> Manifest:
        """`manifest` with the user's edits taken in (given `edits`), its readable names added to the run's.

        The run folder then shows this run's names, all of them and only them (`show_only`).
        """
        manifest = adopt_edits(manifest, edits) if edits is not None else manifest
        names = {public: manifest.path(name) for name, public in manifest.links.items()}
        self.show(Path(manifest.run_dir), names)
        return manifest

    def show(self, run_dir: Path, names: dict[str, Path]) -> None:
        """Add `names` (readable name relative to `run_dir` -> file) to this run's, and show the run's names."""
        self.links.update(names)
        show_only(run_dir, self.links)

    def published(self, future: PrefectFuture, edits: EditCheck | None = None) -> Manifest:
        """A submitted stage's result, published (`publish`)."""
        return self.publish(future.result(), edits)

    def _record(self, task: Task, task_run, state) -> None:
        seconds = task_run.total_run_time.total_seconds() if task_run.total_run_time else 0.0
        self.runs.append({"stage": task.name, "task_run": task_run.name, "state": state.name, "seconds": seconds,
                          "gpu seconds": 0.0})  # fmt: skip

    def scene_finished(self, name: str, state: str, clip: Manifest | None) -> None:
        """Record a scene's render and print its line (`name`: render-scene-NNN; `clip`: its manifest)."""
        fresh = clip is not None and state == "Completed"
        self.runs.append({
            "stage": "render", "task_run": name, "state": state,
            "seconds": float(clip.info.get("task_seconds", 0.0)) if fresh else 0.0,
            "gpu seconds": float(clip.info.get("gpu_seconds", 0.0)) if fresh else 0.0,
        })  # fmt: skip
        progress.info("%s: %s", name, state)

    def table(self) -> list[dict[str, Any]]:
        """One row per stage, in pipeline order: task runs, their states, seconds spent."""
        rows = []
        order = {name: i for i, name in enumerate(STAGES)}
        for stage in sorted({r["stage"] for r in self.runs}, key=lambda s: (order.get(s, 99), s)):
            runs = [r for r in self.runs if r["stage"] == stage]
            states: dict[str, int] = {}
            for r in runs:
                states[r["state"]] = states.get(r["state"], 0) + 1
            rows.append(
                {
                    "stage": stage,
                    "task runs": len(runs),
                    "states": ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
                    "seconds": round(sum(r["seconds"] for r in runs), 2),
                    "gpu seconds": round(sum(r["gpu seconds"] for r in runs), 2),
                }
            )
        rows.append(
            {
                "stage": "total",
                "task runs": len(self.runs),
                "states": "",
                "seconds": round(sum(r["seconds"] for r in self.runs), 2),
                "gpu seconds": round(sum(r["gpu seconds"] for r in self.runs), 2),
            }
        )
        scenes = sorted((r for r in self.runs if r["stage"] == "render"), key=lambda r: r["task_run"])
        rows += [{"stage": r["task_run"], "task runs": 1, "states": r["state"], "seconds": round(r["seconds"], 2),
                  "gpu seconds": round(r["gpu seconds"], 2)} for r in scenes]  # fmt: skip
        return rows


# --- the run folder's readable names ---------------------------------------------------------------


def show_only(run_dir: Path, links: dict[str, Path]) -> None:
    """Make the run folder's readable names exactly `links` (name relative to `run_dir` -> file).

    Each name becomes a relative symbolic link to its file (replaced atomically); every other link
    into ``.stages`` is removed, so the folder never shows one run's ``segments.json`` beside another
    run's ``video.mp4``, scenes a shorter script no longer has, or another pipeline's ``story.txt``.
    Runs of one song publish under a lock on the run folder, one whole set at a time: the folder
    shows the names of whichever run published last, as far as that run has got.
    """
    with run_folder_lock(run_dir):
        for public, target in links.items():
            point(run_dir / public, target)
        for link in stage_links(run_dir):
            if link.relative_to(run_dir).as_posix() not in links:
                link.unlink(missing_ok=True)


@contextlib.contextmanager
def run_folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's publishing lock (an advisory lock the kernel releases if the holder dies)."""
    lock = Path(run_dir) / ".stages" / ".links.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock):
        yield


def stage_links(run_dir: Path) -> Iterator[Path]:
    """The run folder's readable names: symbolic links into ``.stages`` (hidden folders skipped)."""
    for folder, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not name.startswith(".") and path.is_symlink() and ".stages" in Path(os.readlink(path)).parts:
                yield path


def point(link: Path, target: Path) -> None:
    """Make `link` a relative symbolic link to `target`, replacing whatever was there atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target, link.parent)
    if link.is_symlink() and os.readlink(link) == relative:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.link")
    os.symlink(relative, tmp)
    os.replace(tmp, link)


def adopt_edits(manifest: Manifest, check: EditCheck) -> Manifest:
    """The stage's result with the user's edits of its editable files taken in.

    An edit made through the run folder's readable name (the link, or a file an editor put in its
    place) is checked with ``check(manifest, name, path)`` (raising ValueError when it cannot be
    used) and then used: the manifest's hashes follow the edited content, so exactly what depends
    on it runs again. A cached result is never rewritten over an edit.

    Raises
    ------
    SoundsightError
        An edit that cannot be used, naming the problem and the file that holds it (the stage's own
        file, which the run folder's link points at): fixed, it is used; deleted, the stage writes
        it afresh.
    """
    hashes, adopted = dict(manifest.hashes), []
    for name in manifest.editable:
        stage_file, readable = manifest.path(name), Path(manifest.run_dir) / manifest.links[name]
        if readable.is_file() and not readable.is_symlink():  # an editor replaced the link with its file
            stage_file.write_bytes(readable.read_bytes())
            point(readable, stage_file)
        digest = sha256_file(stage_file)
        if digest == manifest.hashes[name]:
            continue
        try:
            check(manifest, name, stage_file)
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise SoundsightError(
                f"{stage_file}: your edit of {manifest.links[name]} cannot be used ({first}); fix this file, "
                "or delete it to start over"  # the file itself: deleting the run folder's link would not help
            ) from e
        hashes[name] = digest
        adopted.append(manifest.links[name])
    if not adopted:
        return manifest
    logging.getLogger("soundsight").warning("using your edited %s", ", ".join(adopted))
    return manifest.model_copy(update={"hashes": hashes})
