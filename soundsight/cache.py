"""Cache-key rules, in one place, and the check every cache hit passes.

A stage's key is the sha256 of:
  stage name + stage version            (bump the version when a stage's output format changes)
  + the content hashes of its inputs     (a `Manifest` contributes `content_hash()` and the name
                                          of its run folder, never a full path)
  + the stage's settings group           (minus the fields settings.py marks `OPERATIONAL`:
                                          they cannot change the result)
  + the backend's identity               (model id and revision, or an algorithm version)

Never the flow-run id, never a full path, never the task's source code: rendering the same song
twice hits the cache for every task, and editing whitespace in a task does not invalidate it.

Every cache hit is a claim that the files it names are the ones the stage wrote.
`StageCachePolicy.compute_key` checks that claim before Prefect uses the record: every file is
hashed again and must have the sha256 recorded when it was written (`Manifest.problem`); a record
that fails is forgotten (logged with the reason) and the stage runs again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from soundsight.schemas import Manifest
from soundsight.settings import Operational

log = logging.getLogger("soundsight.cache")

# Call parameters that locate outputs rather than describe inputs.
LOCATION_PARAMETERS = frozenset({"run_dir", "runs_dir", "run_root", "run_name", "song_path", "audio_path"})


@cache
def operational_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` marked `soundsight.settings.OPERATIONAL` (they stay out of cache keys)."""
    return frozenset(
        name for name, field in model.model_fields.items() if any(isinstance(m, Operational) for m in field.metadata)
    )


def canonical(value: Any) -> Any:
    """A JSON-able, path-free, order-stable form of a task input."""
    if isinstance(value, Manifest):
        # The run folder's name: outputs land in the run folder, so another folder (a run_name)
        # must not reuse this one's records. Its name, not its path: a moved runs folder is fine.
        return {"manifest": value.stage, "content": value.content_hash(), "run": Path(value.run_dir).name}
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json")
        skip = operational_fields(type(value)) | LOCATION_PARAMETERS
        return {k: canonical(v) for k, v in sorted(data.items()) if k not in skip}
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items()) if k not in LOCATION_PARAMETERS}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Path):
        raise TypeError(f"a path ({value}) cannot be part of a cache key: pass its content hash instead")
    if isinstance(value, float):
        return round(value, 9)
    return value


def stage_key(stage: str, version: int, inputs: dict[str, Any], identity: str = "") -> str:
    """The cache key of a stage run: ``<stage>-v<version>-<sha256>`` of its canonical inputs."""
    payload = {
        "stage": stage,
        "version": version,
        "identity": identity,
        "inputs": {k: canonical(v) for k, v in sorted(inputs.items()) if k not in LOCATION_PARAMETERS},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return f"{stage}-v{version}-" + hashlib.sha256(blob.encode()).hexdigest()


def file_identity(path: str | Path) -> str:
    """Content hash of a file's bytes (used where a task's input is a user's file)."""
    from soundsight.media import sha256_file

    return sha256_file(Path(path))


try:  # Prefect is a dependency of the project, but keep the pure key rules importable without it.
    from prefect.cache_policies import CachePolicy
except ImportError:  # pragma: no cover
    CachePolicy = object  # type: ignore[misc,assignment]


@dataclass
class StageCachePolicy(CachePolicy):  # type: ignore[misc]
    """Prefect cache policy implementing the rules above for one stage.

    identity : called with the task's inputs; returns the backend identity string (model id +
        revision) and may read files (e.g. hash the user's song) - but never returns a path.
    """

    stage: str = ""
    version: int = 1
    identity: Callable[[dict[str, Any]], str] | None = None

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        """Prefect's hook: the key of this task run, its cached record checked (module docstring)."""
        key = stage_key(self.stage, self.version, inputs, self.identity(inputs) if self.identity else "")
        store = getattr(task_ctx, "result_store", None)
        if store is not None:
            forget_unless_intact(store, key)
        return key


def forget_unless_intact(store, key: str) -> str:
    """Delete the cached record `key` when its files are not what the stage wrote; returns why ('' if kept)."""
    try:
        value = store.read(key).result
    except Exception:  # noqa: BLE001 - no record yet, or an unreadable one: let Prefect decide
        return ""
    manifests = value if isinstance(value, list) else [value]
    problem = next((p for m in manifests if isinstance(m, Manifest) and (p := m.problem())), "")
    if not problem:
        return ""
    storage = store.result_storage
    basepath = getattr(storage, "basepath", None)
    if basepath is None:
        log.warning("cached %s is not intact (%s), but its storage cannot be pruned; force the stage", key, problem)
        return problem
    (Path(str(basepath)).expanduser() / key).unlink(missing_ok=True)
    for cached in list(getattr(store, "cache", {})):  # the store's in-memory copy, keyed by resolved path
        if str(cached).endswith(key):
            store.cache.pop(cached, None)
    log.warning("%s: not using the cached result: %s; recomputing", key.split("-v")[0], problem)
    return problem
