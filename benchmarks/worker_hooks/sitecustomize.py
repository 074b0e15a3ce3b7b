"""Benchmark-only code for the processes a benchmark starts (CLI, Prefect workers, flow runs, Dask workers).

Nothing of this is in the product: a benchmark puts this folder on the PYTHONPATH of the processes
it starts (every child process inherits it) and sets

    BENCH_SIMULATED_GPU_SECONDS=S  the render backend ``simulated-gpu`` joins `soundsight.backends.RENDERERS`
                                   (`simulated_gpu`: the animatic after a sleep of S seconds per scene);
                                   benchmarks/catalogue.py
    BENCH_RENDER_STATS=FILE        every process appends one JSON line to FILE per diffusion pipeline build
                                   (``{"event": "build", "quality", "pid", "build_s", "key"}``) and per scene
                                   (``{"event": "scene", "index", "render_s", "total_s", "pid", ...}``), the
                                   records of `soundsight.models.render.diffusion.stats`; benchmarks/gpu_end_to_end.py

Python imports ``sitecustomize`` at start-up; the stats module is patched as soon as it is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys

SIMULATED_GPU_SECONDS = "BENCH_SIMULATED_GPU_SECONDS"
RENDER_STATS = "BENCH_RENDER_STATS"
STATS_MODULE = "soundsight.models.render.diffusion.stats"


def _register_simulated_gpu() -> None:
    from soundsight.backends import RENDERERS

    RENDERERS["simulated-gpu"] = "simulated_gpu:BACKEND"  # this folder is on sys.path


def _log_records(module, path: str) -> None:
    """Make `module`'s record_build and record_scene also append each record to the file `path`."""

    def appending(record_fn, event: str):
        def record(rec: dict) -> None:
            record_fn(rec)
            with open(path, "a") as f:  # one short write per line: lines from several workers do not mix
                f.write(json.dumps({"event": event, **rec}) + "\n")

        return record

    module.record_build = appending(module.record_build, "build")
    module.record_scene = appending(module.record_scene, "scene")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        execute = spec.loader.exec_module

        def exec_then_patch(module):
            execute(module)
            self.patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


if os.environ.get(SIMULATED_GPU_SECONDS):
    _register_simulated_gpu()
if os.environ.get(RENDER_STATS):
    sys.meta_path.insert(0, _PatchOnImport(STATS_MODULE, lambda m: _log_records(m, os.environ[RENDER_STATS])))
