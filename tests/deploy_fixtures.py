"""Deployment fixtures: soundsight's real deployments on the session's Prefect server, served by a
real process worker (`prefect worker start --pool ... --type process`), plus a static web server
for the runs folder (SOUNDSIGHT_MEDIA_URL) so preview images and video links resolve.

Everything is deployed the way README says (`python -m soundsight.deployments.deploy`, which reads
deployments/prefect.yaml), with the workers' env (small renders, the session's runs folder) so the
UI form's defaults match what workers use.
Helpers below read states, task runs and artifacts back from the server, polling until final.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.support import free_port, stop_process_group, task_states, task_states_now  # noqa: F401 - re-exported

ROOT = Path(__file__).resolve().parent.parent
POOL = "soundsight-test"
RENDER_SONG, NIGHTLY = "render-song/render-song", "render-catalogue/nightly-catalogue"
SONG_CUTS = {  # name -> (track, start s, seconds): short excerpts keep every run to a few seconds of rendering
    "a": ("celtic.ogg", 0, 20),
    "b": ("celtic.ogg", 20, 20),
    "c": ("celtic.ogg", 40, 20),
    "d": ("digital_pursuit.ogg", 60, 16),
    "e": ("digital_pursuit.ogg", 100, 16),
}
HEARTBEAT_SECONDS = 30  # Prefect's minimum: a lost host's run is marked Crashed after 3 missed
# The lost-host test's heartbeat (below Prefect's minimum, see tests/faults/sitecustomize.py): three
# missed take 30 s instead of 90 s. Proactive automations need a window of at least 10 s.
FAST_HEARTBEAT_SECONDS = 10


class Worker:
    """A real `prefect worker start --type process`; `kill()` SIGKILLs it like a lost machine."""

    def __init__(self, pool: str, env: dict[str, str], logs: Path, args: tuple[str, ...] = ()):
        self.pool, self.env, self.logs, self.args = pool, env, logs, args
        self.proc: subprocess.Popen | None = None
        self.started = 0

    @property
    def name(self) -> str:
        return f"{self.pool}-worker-{self.started}"

    def start(self, timeout: float = 90.0) -> None:
        from prefect.client.orchestration import get_client

        self.started += 1
        log = open(self.logs / f"{self.name}.log", "w")  # noqa: SIM115 - the worker owns it while it runs
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                self.pool,
                "--type",
                "process",
                "--name",
                self.name,
                *self.args,
            ],
            env=self.env,
            cwd=self.logs,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
                workers = client.read_workers_for_work_pool(self.pool)
                if any(w.name == self.name and w.status.value == "ONLINE" for w in workers):
                    return
                time.sleep(0.5)
        raise TimeoutError(f"worker {self.name} not online after {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # the worker process alone, SIGKILL: no goodbye, no state reports
        self.proc.wait(timeout=10)

    def kill_host(self) -> None:
        """SIGKILL the worker and every flow-run process it started, as a machine that loses power:
        nobody is left to report anything."""
        assert self.proc is not None
        for pid in descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        path = self.logs / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@dataclass
class Stack:
    api_url: str
    ui_url: str
    pool: str
    runs: Path
    media_url: str
    catalogue: Path
    worker: Worker
    songs: dict[str, Path] = field(default_factory=dict)

    def settings(self, **render: Any) -> dict[str, Any]:
        """A `settings` parameter: small renders into the session's runs folder."""
        return {"render": {"width": 320, "height": 180, **render}, "output": {"runs_dir": str(self.runs)}}


@pytest.fixture(scope="session")
def excerpts(music, tmp_path_factory) -> dict[str, Path]:
    from soundsight.media import ffmpeg_exe

    folder = tmp_path_factory.mktemp("songs")
    songs = {}
    for name, (track, start, seconds) in SONG_CUTS.items():
        songs[name] = folder / f"{Path(track).stem}-{name}.wav"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", str(start), "-t", str(seconds), "-i", str(music / track),
                        "-map_metadata", "-1", "-ac", "2", "-ar", "44100", str(songs[name])], check=True)  # fmt: skip
    return songs


@pytest.fixture(scope="session")
def stack(prefect_server, excerpts, tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    runs = root / "runs"
    runs.mkdir()
    api = os.environ["PREFECT_API_URL"]
    port = free_port()
    media = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    media_url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        SOUNDSIGHT_OUTPUT__RUNS_DIR=str(runs),
        SOUNDSIGHT_RENDER__WIDTH="320",
        SOUNDSIGHT_RENDER__HEIGHT="180",
        SOUNDSIGHT_MEDIA_URL=media_url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
    )
    worker = Worker(POOL, env, root)
    try:
        catalogue = root / "catalogue.toml"
        deployed = subprocess.run(
            [
                sys.executable,
                "-m",
                "soundsight.deployments.deploy",
                "--pool",
                POOL,
                "--catalogue",
                str(catalogue),
                "--timezone",
                "Europe/Paris",
                "--heartbeat-seconds",
                str(HEARTBEAT_SECONDS),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        worker.start()
        yield Stack(
            api_url=api,
            ui_url=api.removesuffix("/").removesuffix("/api"),
            pool=POOL,
            runs=runs,
            media_url=media_url,
            catalogue=catalogue,
            worker=worker,
            songs=excerpts,
        )
    finally:
        worker.stop()
        stop_process_group(media, grace=5)


# --- reading runs back from the server -------------------------------------------------------------


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` in the process tree."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def fault(spec: str, heartbeat_seconds: int | None = None) -> dict[str, Any]:
    """Job variables that inject a fault into the flow-run process (tests/faults/sitecustomize.py).

    The deployment's automatic retry (PREFECT_FLOWS_DEFAULT_RETRIES) is switched off for these runs:
    they test what the UI's Retry does once a run has failed for good. `heartbeat_seconds` makes
    the run's heartbeats that often (see `fast_heartbeats`)."""
    env = {
        "TESTS_FAULT": spec,
        "PYTHONPATH": str(ROOT / "tests" / "faults"),
        "PREFECT_FLOWS_DEFAULT_RETRIES": "0",
    }
    if heartbeat_seconds is not None:
        env["TESTS_HEARTBEAT_SECONDS"] = str(heartbeat_seconds)
    return {"env": env}


@pytest.fixture
def fast_heartbeats(stack) -> int:
    """For one test: the crash automation set for FAST_HEARTBEAT_SECONDS (three missed: 30 s, not
    90 s); runs started with ``fault(..., heartbeat_seconds=FAST_HEARTBEAT_SECONDS)`` beat that often.

    The automation is the product's own (`ensure_crash_automation`), only with a shorter period; it
    is set back to the deployments' HEARTBEAT_SECONDS afterwards, as other runs beat every 30 s.
    """
    from soundsight.deployments.deploy import ensure_crash_automation

    ensure_crash_automation(FAST_HEARTBEAT_SECONDS)
    try:
        yield FAST_HEARTBEAT_SECONDS
    finally:
        ensure_crash_automation(HEARTBEAT_SECONDS)


def trigger(deployment: str, parameters: dict[str, Any] | None = None, job_variables: dict | None = None) -> UUID:
    """Create a run of `deployment` over the API (what the UI's Run button does); returns its id."""
    from prefect.deployments import run_deployment

    return run_deployment(deployment, parameters=parameters or {}, job_variables=job_variables, timeout=0).id


def wait_final(flow_run_id: UUID, after: datetime | None = None, timeout: float = 240.0):
    """The flow run once it reaches a final state (one recorded after `after`, when given)."""
    deadline = time.monotonic() + timeout
    with client() as c:
        while True:
            run = c.read_flow_run(flow_run_id)
            state = run.state
            if state and state.is_final() and (after is None or state.timestamp > after):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"flow run {flow_run_id} still {state.name if state else None} after {timeout:.0f} s"
                )
            time.sleep(0.5)


def wait_heartbeat(flow_run_id: UUID, timeout: float = 120.0) -> None:
    """Return once the server has recorded a heartbeat of the flow run (the crash automation's
    window starts with one)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    wanted = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )
    deadline = time.monotonic() + timeout
    with client() as c:
        while not c.read_events(filter=wanted, limit=1).events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no heartbeat of flow run {flow_run_id} after {timeout:.0f} s")
            time.sleep(0.5)


def wait_task_states(flow_run_id: UUID, ready: Callable[[dict[str, str]], bool], timeout: float = 240.0) -> None:
    """Return once the flow run's task states (as `task_states` names them) satisfy `ready`."""
    deadline = time.monotonic() + timeout
    while not ready(states := task_states_now(flow_run_id)[0]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"flow run {flow_run_id}: task states still {states} after {timeout:.0f} s")
        time.sleep(0.5)


def retry_like_the_ui(flow_run_id: UUID) -> datetime:
    """What the UI's Retry button sends: the run goes back to Scheduled (AwaitingRetry), forced;
    a worker picks it up again under the same flow-run id. Returns the new state's time."""
    from prefect.client.schemas.objects import State, StateType

    with client() as c:
        result = c.set_flow_run_state(
            flow_run_id, State(type=StateType.SCHEDULED, name="AwaitingRetry", message="Retry from the UI"), force=True
        )
    assert result.state is not None and result.state.name == "AwaitingRetry", result
    return result.state.timestamp


def child_runs(flow_run_id: UUID) -> dict[str, Any]:
    """Subflow runs of a flow run, by run name."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with client() as c:
        runs = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
    return {r.name: r for r in runs}


def artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The flow run's artifacts by the last part of their key ('script', 'preview', ...); the
    newest wins when a retried run made one per attempt."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client() as c:
        found = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    out: dict[str, Any] = {}
    for artifact in sorted(found, key=lambda a: a.created):
        if artifact.key:  # (results Prefect records itself have none)
            out[artifact.key.rsplit("-", 1)[-1]] = artifact
    return out


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def save_test_artifact(path: Path) -> Path:
    """Copy a screenshot (or any file) into ROOT/.test-artifacts/ (git-ignored) for humans."""
    out = ROOT / ".test-artifacts"
    out.mkdir(exist_ok=True)
    return Path(shutil.copy2(path, out / path.name))
