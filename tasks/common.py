"""What every stage task shares: persistence, the cache policy, progress reporting, forcing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import CachePolicy

from soundsight.cache import StageCachePolicy
from soundsight.errors import SoundsightError
from soundsight.media import sha256_file
from soundsight.schemas import Manifest
from soundsight.settings import OutputSettings

progress = logging.getLogger("soundsight.progress")


def _report(task: Task, task_run, state) -> None:
    """Task state hook: one line per finished stage or scene, 'Cached' or 'Completed'."""
    progress.info("%s: %s", task_run.name if task.name in ("render", "analyse-batch") else task.name, state.name)


def may_heal(task: Task, task_run, state) -> bool:
    """Retry condition: whether a failure may heal.

    Retry condition: anything but a `SoundsightError`, whose message is meant for the user and
    which would fail the same way again.
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
        on_completion=[_report],
        on_failure=[_report],
    )


def results_dir(runs_dir: str | Path) -> Path:
    """Where cached task results live.

    Where cached task results live: inside the runs folder, so each runs folder has its own
    cache and a cache hit never points into another folder.
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


def written(stage: str, run_dir: str, files: dict[str, str], **info: float | int | str) -> Manifest:
    """The manifest of the files a stage just wrote.

    The manifest of the files (logical name -> path relative to `run_dir`) that a stage just
    wrote, with their content hashes.
    """
    hashes = {name: sha256_file(Path(run_dir) / rel) for name, rel in files.items()}
    return Manifest(stage=stage, run_dir=run_dir, files=files, hashes=hashes, info=info)
