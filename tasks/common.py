"""What every stage task shares: persistence, the cache policy, retries, its folder and manifest.

What a run does around its stages (configuring them for the run, publishing readable names,
timings) is the flow's: `soundsight.flows.stages`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy

from soundsight.cache import StageCachePolicy
from soundsight.errors import SoundsightError
from soundsight.media import sha256_file, write_json_atomic
from soundsight.schemas import Manifest


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
        Logical name -> the human-readable path (relative to `run_dir`) that the flow points at it
        (`soundsight.flows.stages.publish`).
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
        Its human-readable path (relative to `run_dir`) that the flow points at it; default `file`.
    info : scalars shown in reports and read by later stages.
    """
    file = file or f"{name}.json"
    folder = stage_folder(run_dir, stage)
    write_json_atomic(folder / file, data)
    return written(stage, run_dir, {name: folder / file}, links={name: link or file}, **info)
