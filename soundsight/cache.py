"""Cache-key rules, in one place.

A stage's key is the sha256 of:
  stage name + stage version            (bump the version when a stage's output format changes)
  + the content hashes of its inputs     (a `Manifest` contributes `content_hash()`, never its paths)
  + the stage's settings group           (minus fields that cannot change the result)
  + the backend's identity               (model id and revision, or an algorithm version)

Never the flow-run id, never a file path, never the task's source code: rendering the same song
twice hits the cache for every task, and editing whitespace in a task does not invalidate it.

`StageCachePolicy.compute_key` also forgets a cached record whose files were deleted since
(for local result storage), so Prefect recomputes instead of returning a manifest of ghosts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from soundsight.schemas import Manifest

log = logging.getLogger("soundsight.cache")

# Settings fields that steer *how* a stage runs but cannot change what it produces.
OPERATIONAL_FIELDS = frozenset(
    {"dask_address", "device", "timeout_seconds", "llm_api_key", "clap_batch_size", "clap_segments_per_task", "force"}
)
# Call parameters that locate outputs rather than describe inputs.
LOCATION_PARAMETERS = frozenset({"run_dir", "runs_dir", "run_root", "run_name", "song_path"})


def canonical(value: Any) -> Any:
    """A JSON-able, path-free, order-stable form of a task input."""
    if isinstance(value, Manifest):
        return {"manifest": value.stage, "content": value.content_hash()}
    if isinstance(value, BaseModel):
        data = value.model_dump(mode="json")
        return {
            k: canonical(v)
            for k, v in sorted(data.items())
            if k not in OPERATIONAL_FIELDS and k not in LOCATION_PARAMETERS
        }
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
        """Prefect's hook: the key of this task run (see the module docstring)."""
        key = stage_key(self.stage, self.version, inputs, self.identity(inputs) if self.identity else "")
        store = getattr(task_ctx, "result_store", None)
        if store is not None:
            _forget_if_files_missing(store, key)
        return key


def _forget_if_files_missing(store, key: str) -> None:
    """Delete a cached record whose manifest points at files that no longer exist."""
    try:
        value = store.read(key).result
    except Exception:  # no record yet, or an unreadable one: let Prefect decide
        return
    manifests = value if isinstance(value, list) else [value]
    if all(not isinstance(m, Manifest) or m.files_exist() for m in manifests):
        return
    storage = store.result_storage
    basepath = getattr(storage, "basepath", None)
    if basepath is None:
        log.warning("cached %s points at missing files, but its storage cannot be pruned; use force", key)
        return
    record = Path(str(basepath)).expanduser() / key
    record.unlink(missing_ok=True)
    for cached in list(getattr(store, "cache", {})):  # the store's in-memory copy, keyed by resolved path
        if str(cached).endswith(key):
            store.cache.pop(cached, None)
    log.info("cached %s pointed at deleted files: recomputing", key)
