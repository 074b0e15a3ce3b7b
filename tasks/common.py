"""What every stage task shares: persistence, the cache policy, progress reporting, forcing."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy

from soundsight.cache import StageCachePolicy, forget_unless_intact
from soundsight.errors import SoundsightError
from soundsight.media import sha256_file, write_json_atomic
from soundsight.schemas import Manifest
from soundsight.settings import OutputSettings

progress = logging.getLogger("soundsight.progress")


def report_state(task: Task, task_run, state) -> None:
    """Task state hook: one line per finished stage or batch, 'Cached' or 'Completed'."""
    progress.info("%s: %s", task_run.name if task.name == "analyse-batch" else task.name, state.name)


def may_heal(task: Task, task_run, state) -> bool:
    """Retry condition: whether a failure may heal.

    Anything but a `SoundsightError` may: its message is meant for the user, and it would fail the
    same way again.
    """
    try:
        state.result()
    except SoundsightError:
        return False
    except Exception:  # noqa: BLE001 - any other failure may be transient (a full disk, a lost worker)
        return True
    return True


def stage_options(
    stage: str,
    version: int,
    *,
    identity: Callable[[dict[str, Any]], str] | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 2.0,
) -> dict[str, Any]:
    """`@task(**stage_options(...))`: a cached, persisted, retryable stage.

    Results are small JSON manifests (paths + hashes); `persist_result` keeps them across
    processes so a second render, or a retried flow run, finds them. Only errors that may heal are
    retried: a `SoundsightError` (a missing checkpoint, a bad file) fails at once.
    """
    policy: CachePolicy = StageCachePolicy(stage=stage, version=version, identity=identity)
    return dict(
        name=stage,
        cache_policy=policy,
        persist_result=True,
        result_serializer="json",
        retries=retries,
        retry_delay_seconds=retry_delay_seconds,
        retry_condition_fn=may_heal,
    )


def results_dir(runs_dir: str | Path) -> Path:
    """Where cached task results live: inside the runs folder.

    So each runs folder has its own cache, and a cache hit never points into another folder.
    """
    return Path(runs_dir).expanduser().resolve() / ".cache" / "results"


def configured(task: Task, output: OutputSettings) -> Task:
    """The task configured for one run's runs folder and forced stages.

    The task with its result storage under `output.runs_dir`, and its cache ignored when the
    user asked to force its stage.
    """
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


def stage_folder(run_dir: str | Path, stage: str) -> Path:
    """The folder this task run writes into: ``run_dir/.stages/<stage>/<cache key digest>/``.

    Addressed by the running task's cache key, so runs with other settings never overwrite these
    files; a run forced to recompute rewrites its own folder. Created if missing.
    """
    from prefect.transactions import get_transaction

    transaction = get_transaction()
    key = transaction.key if transaction is not None and transaction.key else f"uncached-{uuid.uuid4().hex}"
    folder = Path(run_dir) / ".stages" / stage / key.rsplit("-", 1)[-1][:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def written(
    stage: str,
    run_dir: str | Path,
    files: dict[str, Path],
    links: dict[str, str] | None = None,
    **info: float | int | str,
) -> Manifest:
    """The manifest of the files a stage just wrote.

    Parameters
    ----------
    files : dict
        Logical name -> the file (inside `run_dir`).
    links : dict, optional
        Logical name -> the human-readable path (relative to `run_dir`) that `publish` points at it.
    info : scalars shown in reports and read by later stages.
    """
    run_dir = Path(run_dir)
    rel = {name: Path(path).relative_to(run_dir).as_posix() for name, path in files.items()}
    hashes = {name: sha256_file(run_dir / r) for name, r in rel.items()}
    stats = {name: ((run_dir / r).stat().st_size, (run_dir / r).stat().st_mtime_ns) for name, r in rel.items()}
    return Manifest(
        stage=stage, run_dir=str(run_dir), files=rel, hashes=hashes, stats=stats, links=links or {}, info=info
    )


def written_json(
    stage: str, run_dir: str | Path, name: str, data: Any, file: str = "", link: str = "", **info: float | int | str
) -> Manifest:
    """Write a stage's one JSON file into its `stage_folder` and return the manifest of it.

    Parameters
    ----------
    stage : str
        The stage, e.g. ``"segment"``.
    run_dir : str or pathlib.Path
        The run folder.
    name : str
        The file's logical name (`Manifest.files` key).
    data : pydantic model or JSON-able value
        What the file holds (`soundsight.media.write_json_atomic`).
    file : str, optional
        The file's name in the stage folder; default ``<name>.json``.
    link : str, optional
        Its human-readable path (relative to `run_dir`) that `publish` points at it; default `file`.
    info : scalars shown in reports and read by later stages.
    """
    file = file or f"{name}.json"
    folder = stage_folder(run_dir, stage)
    write_json_atomic(folder / file, data)
    return written(stage, run_dir, {name: folder / file}, links={name: link or file}, **info)


def publish(manifest: Manifest) -> Manifest:
    """Point the run folder's human-readable names (`Manifest.links`) at this manifest's files.

    Relative symbolic links, each replaced atomically, so ``segments.json`` always shows the
    segments of the last run that used this run folder, whichever settings it had. Returns
    `manifest`, so a flow can write ``segments = publish(stage(segment_song)(...))``.
    """
    for name, public in manifest.links.items():
        point(Path(manifest.run_dir) / public, manifest.path(name))
    return manifest


def point(link: Path, target: Path) -> None:
    """Make `link` a relative symbolic link to `target`, replacing whatever was there atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target, link.parent)
    if link.is_symlink() and os.readlink(link) == relative:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.link")
    os.symlink(relative, tmp)
    os.replace(tmp, link)


def unpublish_beyond(run_dir: str | Path, folder: str, pattern: str, keep: set[str]) -> None:
    """Remove human-readable links in ``run_dir/folder`` matching `pattern` but not in `keep`.

    Scenes a shorter script no longer has must not linger beside the current ones.
    """
    for link in (Path(run_dir) / folder).glob(pattern):
        if link.name not in keep and (link.is_symlink() or link.is_file()):
            link.unlink(missing_ok=True)


def adopt_edits(manifest: Manifest, check: Callable[[Manifest, str, Path], None]) -> Manifest:
    """The stage's result with the user's edits of its editable files taken in.

    An edit made through the run folder's readable name (the link, or a file an editor put in its
    place) is checked with ``check(manifest, name, path)`` (raising ValueError when it cannot be
    used) and then used: the manifest's hashes follow the edited content, so exactly what depends
    on it runs again. A cached result is never rewritten over an edit.

    Raises
    ------
    SoundsightError
        An edit that cannot be used, naming the file and the problem (delete the file to go back).
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
            raise SoundsightError(f"{readable}: your edit cannot be used ({first}); fix it, or delete the file") from e
        hashes[name] = digest
        adopted.append(manifest.links[name])
    if not adopted:
        return manifest
    logging.getLogger("soundsight").warning("using your edited %s", ", ".join(adopted))
    return manifest.model_copy(update={"hashes": hashes})
