"""Test-only fault injection for the processes tests start (a Prefect worker's flow-run process, a CLI).

Nothing of this is in the product: a test puts this folder on the process's PYTHONPATH (a
deployment run's job variables) and sets TESTS_FAULT:

    fail:K   scene K raises `InjectedFault` in the flow run's first attempt (not retried: it is
             a SoundsightError), so the run fails and a retry of the run succeeds
    kill:K   the flow-run process SIGKILLs itself as scene K starts, in the first attempt, as the
             OOM killer or a lost machine would
    stall:K  scene K hangs in the first attempt (until the test kills the whole "host")

and, optionally, TESTS_HEARTBEAT_SECONDS=N: the flow run's heartbeats come every N
seconds, below Prefect's minimum of 30 (PREFECT_FLOWS_HEARTBEAT_FREQUENCY refuses less), so a
test of the crash automation waits three short periods instead of three long ones.

Each module is patched as soon as it is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import signal
import sys
import time

FAULT = os.environ.get("TESTS_FAULT", "")
HEARTBEAT_SECONDS = os.environ.get("TESTS_HEARTBEAT_SECONDS", "")


def _first_attempt() -> bool:
    from prefect.runtime import flow_run

    return int(flow_run.run_count or 1) <= 1


def _inject_fault(module) -> None:
    from soundsight.errors import SoundsightError

    class InjectedFault(SoundsightError):
        """The fault a test asked for."""

    kind, _, scene = FAULT.partition(":")
    original = module.AnimaticRenderer.__call__

    def faulty_call(self, job, out_path):
        if job.index == int(scene) and _first_attempt():
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "stall":
                time.sleep(3600)
            raise InjectedFault(f"fault injected into scene {job.index} (TESTS_FAULT={FAULT}); retry the run")
        return original(self, job, out_path)

    module.AnimaticRenderer.__call__ = faulty_call


def _beat_faster(module) -> None:
    """prefect.flow_engine: heartbeats every HEARTBEAT_SECONDS (its floor and the setting, bypassed)."""
    seconds = int(HEARTBEAT_SECONDS)
    module.MINIMUM_HEARTBEAT_INTERVAL = seconds
    module.BaseFlowRunEngine.heartbeat_seconds = property(lambda self: seconds)


PATCHES = {}  # module name -> what to do to it once it is imported
if FAULT:
    PATCHES["soundsight.models.render.animatic"] = _inject_fault
if HEARTBEAT_SECONDS:
    PATCHES["prefect.flow_engine"] = _beat_faster


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        execute, patch = spec.loader.exec_module, PATCHES[name]

        def exec_then_patch(module):
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


if PATCHES:
    sys.meta_path.insert(0, _PatchOnImport())
