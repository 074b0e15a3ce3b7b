"""Helpers the tests share: the real servers they start, and reading media back."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundsight.media import exclusive_lock

# What the tests' vLLM CPU servers run with: offline, no telemetry, a small KV cache.
VLLM_CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the default would reserve a large share of RAM
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(pid: int, grace: float = 15.0, exited: Callable[[], bool] | None = None) -> None:
    """SIGTERM the process group `pid` leads (started with ``start_new_session=True``), wait up to
    `grace` seconds for the leader to exit (`exited`; by default read from /proc, so any process
    can stop a group it did not start), then SIGKILL whatever of the group is left."""
    exited = exited or (lambda: not _alive(pid))
    if not exited():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not exited() and time.monotonic() < deadline:
            time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the leader may be gone while its children live on


def stop_process_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """`stop_group` for a process this one started, which it then reaps."""
    stop_group(proc.pid, grace, lambda: proc.poll() is not None)
    proc.wait(timeout=10)


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail early when `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if answers(url):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


def prefect_answers(api: str) -> bool:
    """Whether the Prefect server whose API URL is `api` answers its health check right now."""
    return answers(api + "/health")


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


@dataclass
class StartedServer:
    """A server process started in its own process group and not waited for: session fixtures
    start the slow ones (Prefect, vLLM) when the session begins and wait only when a test needs
    them, so their start-up overlaps the tests before.

    `process` is None in the pytest-xdist workers that did not start it (`run_once`): they know
    it by its `pid`.
    """

    name: str
    process: subprocess.Popen | None
    url: str  # what the fixture hands out
    log_path: Path
    ready: Callable[[str], bool]  # whether the server at `url` answers yet: a module-level function
    pid: int = 0

    def __post_init__(self) -> None:
        if self.process is not None:
            self.pid = self.process.pid

    def exit_code(self) -> int | str | None:
        """None while it runs; its exit code (or "exited" when another process started it)."""
        if self.process is not None:
            return self.process.poll()
        return None if _alive(self.pid) else "exited"

    def wait(self, timeout: float) -> str:
        """Block until it serves, then return `url`; fail the test with its log when it exits or hangs."""
        import pytest

        deadline = time.monotonic() + timeout
        while not self.ready(self.url):
            if (code := self.exit_code()) is not None:
                pytest.fail(f"{self.name} exited with code {code} while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not serve {self.url} within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        return self.url

    def stop(self, grace: float = 15.0) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace)
        else:
            stop_group(self.pid, grace)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- one of each expensive thing per test run, also across pytest-xdist workers ---------------------
#
# Under pytest-xdist (pyproject's addopts) the controller makes one folder and names it in
# SHARED_DIR_ENV before its workers start; they inherit it. The first worker that needs a server or
# a built model makes it there, under a file lock, and records it; the others wait on the lock and
# use the record. The controller stops the recorded servers and removes the folder when the run
# ends (conftest.py). Without xdist (`-n 0`) nothing is shared and each fixture cleans up itself.

SHARED_DIR_ENV = "TESTS_SHARED_DIR"


def shared_dir() -> Path | None:
    """The run's shared folder under pytest-xdist, else None."""
    value = os.environ.get(SHARED_DIR_ENV)
    return Path(value) if value else None


def build_once(key: str, local_folder: Callable[[], Path], build: Callable[[Path], Path]) -> Path:
    """``build(folder)`` once per test run and its result (a path); under xdist the first worker
    builds in the shared folder and the others reuse it. `local_folder` makes the folder otherwise
    (a session fixture's ``tmp_path_factory.mktemp``)."""
    shared = shared_dir()
    if shared is None:
        return build(local_folder())
    record = shared / f"{key}.built"
    with exclusive_lock(shared / f"{key}.lock"):
        if not record.exists():
            folder = shared / key
            folder.mkdir()
            record.write_text(str(build(folder)))
        return Path(record.read_text())


@contextlib.contextmanager
def run_once(
    key: str, start: Callable[[Path], StartedServer], grace: float = 15.0
) -> Iterator[tuple[StartedServer, Path]]:
    """A server started once per test run (``start(folder)``, not waited for), and its folder.

    Without xdist it runs in a temporary folder and is stopped, and the folder removed, when the
    ``with`` block ends. Under xdist the first worker starts it and records its pid, URL, log and
    readiness check (by import name); the others get a `StartedServer` for that record; the
    controller stops it when the whole run ends (`stop_recorded_servers`).
    """
    shared = shared_dir()
    if shared is None:
        folder = Path(tempfile.mkdtemp(prefix=f"soundsight-{key}-"))
        server = start(folder)
        try:
            yield server, folder
        finally:
            server.stop(grace)
            shutil.rmtree(folder, ignore_errors=True)
        return
    folder = shared / key
    record = shared / f"{key}.server.json"
    with exclusive_lock(shared / f"{key}.lock"):
        if not record.exists():
            folder.mkdir()
            started = start(folder)
            ready = f"{started.ready.__module__}:{started.ready.__qualname__}"
            fields = {"name": started.name, "url": started.url, "log_path": str(started.log_path), "ready": ready}
            record.write_text(json.dumps({**fields, "pid": started.pid, "grace": grace}))
        fields = json.loads(record.read_text())
    module, name = fields["ready"].split(":")
    ready = getattr(importlib.import_module(module), name)
    yield StartedServer(fields["name"], None, fields["url"], Path(fields["log_path"]), ready, fields["pid"]), folder


def stop_recorded_servers(shared: Path) -> None:
    """Stop every server `run_once` recorded in `shared` (the xdist controller, as the run ends)."""
    for record in shared.glob("*.server.json"):
        fields = json.loads(record.read_text())
        stop_group(fields["pid"], fields["grace"])


def launch(
    name: str,
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    url: str,
    ready: Callable[[str], bool],
    niceness: int = 0,
) -> StartedServer:
    """Start `command` in its own process group (teardown stops its children too), output to `log_path`.

    `ready(url)` tells whether it answers yet (a module-level function, so `run_once` can name it).

    `niceness` > 0 lowers its CPU priority (and its children's): a server needed only later then
    starts on the CPU time the tests leave over instead of slowing them.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
        )
    return StartedServer(name, process, url, log_path, ready)


PREFECT_DATABASE = "prefect.db"  # a Prefect server's SQLite database, in its PREFECT_HOME


def copy_database(source: Path, target: Path) -> Path:
    """A consistent copy of SQLite database `source` (a running server's too) at `target`."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target


def launch_prefect_server(
    home: Path, extra_env: dict[str, str] | None = None, database: Path | None = None
) -> StartedServer:
    """A real Prefect server (SQLite in `home`) on a free port, not waited for; `url` is its API URL.

    `database`: a migrated database to start from (conftest's `migrated_prefect_database`): the
    server then skips Prefect's migrations, about 10 s of CPU.
    """
    if database is not None:
        copy_database(database, home / PREFECT_DATABASE)
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_SERVER_LEVEL="WARNING",
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
        **(extra_env or {}),
    )
    env.pop("PREFECT_API_URL", None)
    api = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return launch("the Prefect server", command, env, home / "server.log", api, prefect_answers)


def start_prefect_server(
    home: Path, extra_env: dict[str, str] | None = None, database: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """A real Prefect server (SQLite in `home`, starting from `database` if given) on a free port;
    returns the process and its API URL."""
    server = launch_prefect_server(home, extra_env, database)
    wait_healthy(server.url + "/health", 180, server.process)
    return server.process, server.url


def probe(ffprobe: str, path: Path) -> dict:
    """ffprobe's streams (with decoded frame counts) and format of a media file."""
    out = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames,duration,r_frame_rate:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def gray_frames(path: Path, w: int = 32, h: int = 18) -> np.ndarray:
    """Every frame of a video as a small grayscale array (frames, h, w), int16."""
    from soundsight.media import ffmpeg_exe

    raw = subprocess.run(
        [
            ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-vf",
            f"scale={w}:{h}",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w).astype(np.int16)


def stage_name(task_run_name: str) -> str:
    """'render-scene-003' stays; 'load-9f2' (Prefect's random suffix) becomes 'load'."""
    return (
        task_run_name
        if task_run_name.startswith(("render-scene-", "analyse-batch-"))
        else re.sub(r"-[0-9a-f]{3}$", "", task_run_name)
    )


def task_states_now(flow_run_id, attempt: int = 1) -> tuple[dict[str, str], bool]:
    """Stage/scene -> state name of one attempt of a flow run as the server has it now, and whether
    every one of those task runs is final."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    runs = [r for r in runs if r.flow_run_run_count == attempt]
    states = {stage_name(r.name): r.state.name if r.state else "?" for r in runs}
    return states, bool(runs) and all(r.state and r.state.is_final() for r in runs)


def task_states(
    flow_run_id, attempt: int = 1, final: bool = True, timeout: float = 60.0, expect: tuple[str, ...] = ()
) -> dict[str, str]:
    """Stage/scene -> state name of one attempt (the flow run's run_count) of a flow run.

    The server records task states from events, asynchronously: poll until the stages in `expect`
    are there and every task run is final (final=True), or until the set has not changed for 3 s
    (final=False: a killed attempt's task runs stay Running forever).
    """
    deadline = time.monotonic() + timeout
    last: dict[str, str] | None = None
    stable_since = time.monotonic()
    while True:
        states, all_final = task_states_now(flow_run_id, attempt)
        if states != last:
            last, stable_since = states, time.monotonic()
        present = set(expect) <= set(states)
        if present and final and all_final:
            return states
        if states and not final and time.monotonic() - stable_since > 3.0:
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def render(song: Path, runs_dir: Path, **groups) -> tuple[Path, dict[str, str]]:
    """Render `song` in this process; returns the run folder's video.mp4 and the states of the run's tasks.

    The flow returns its own video (in its stage folder); after one render at a time the run
    folder's readable names are that run's, which this checks.
    """
    from soundsight.flows.music_video import render_song
    from soundsight.settings import Settings

    settings = Settings.model_validate({"output": {"runs_dir": str(runs_dir)}, **groups})
    state = render_song(str(song), settings, return_state=True)
    assert state.is_completed(), state
    own = Path(state.result())
    shown = next(p for p in own.parents if p.name == ".stages").parent / "video.mp4"
    assert shown.resolve() == own.resolve(), (shown, own)
    return shown, task_states(state.state_details.flow_run_id, expect=("assemble",))
