"""Test session set-up: one real Prefect server (SQLite, 127.0.0.1) for the whole session.

It starts in `pytest_configure`, before any test module imports Prefect, so every flow in the
session - in-process or in a subprocess CLI - talks to it through PREFECT_API_URL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
MUSIC = ROOT.parent / "shared" / "music"
_PLUGINS = ["llm_fixtures", "clap_fixtures", "video_fixtures", "deploy_fixtures"]
pytest_plugins = [f"tests.{name}" for name in _PLUGINS if (Path(__file__).parent / f"{name}.py").exists()]

_server: subprocess.Popen | None = None
_server_home: str | None = None


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f} s")


def pytest_configure(config: pytest.Config) -> None:
    global _server, _server_home
    if os.environ.get("SOUNDSIGHT_TEST_PREFECT_API_URL"):  # reuse one a developer already runs
        os.environ["PREFECT_API_URL"] = os.environ["SOUNDSIGHT_TEST_PREFECT_API_URL"]
        return
    _server_home = tempfile.mkdtemp(prefix="soundsight-prefect-")
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=_server_home, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_SERVER_LEVEL="WARNING", PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")
    env.pop("PREFECT_API_URL", None)
    log = open(Path(_server_home) / "server.log", "w")
    _server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    wait_healthy(api + "/health", 180, _server)
    os.environ["PREFECT_API_URL"] = api
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        stop_process_group(_server, grace=20)
    if _server_home:
        shutil.rmtree(_server_home, ignore_errors=True)


@pytest.fixture(scope="session")
def music() -> Path:
    if not MUSIC.is_dir():
        pytest.fail(f"{MUSIC} is missing: the tests use the project's shared music folder")
    return MUSIC


@pytest.fixture(scope="session")
def ffprobe() -> str:
    exe = shutil.which("ffprobe")
    if exe is None:
        pytest.fail("ffprobe is not installed (install.sh installs Debian's ffmpeg)")
    return exe
