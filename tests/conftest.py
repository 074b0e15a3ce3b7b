"""Test session set-up.

One real Prefect server (SQLite, 127.0.0.1) serves the whole session, started the first time a
test asks for it (the `prefect_server` fixture; modules that run flows mark themselves with
``pytestmark = pytest.mark.usefixtures("prefect_server")``), so a pure unit test never waits for
it. Prefect's ephemeral mode is switched off for the session: a test that runs a flow without
asking for the server fails at once instead of quietly starting a server of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import start_prefect_server, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
MUSIC = ROOT.parent / "shared" / "music"
_PLUGINS = ["llm_fixtures", "lalm_fixtures", "clap_fixtures", "video_fixtures", "deploy_fixtures", "robustness_report"]
pytest_plugins = [f"tests.{name}" for name in _PLUGINS if (Path(__file__).parent / f"{name}.py").exists()]


def pytest_configure(config: pytest.Config) -> None:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("PREFECT_API_URL", None)  # never a developer's own server by accident


@pytest.fixture(scope="session")
def prefect_server():
    """The session's Prefect API URL; the server starts on first use and stops with the session.

    TESTS_PREFECT_API_URL reuses a server a developer already runs.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    reuse = os.environ.get("TESTS_PREFECT_API_URL")
    home = None if reuse else tempfile.mkdtemp(prefix="soundsight-prefect-")
    proc, api = (None, reuse) if reuse else start_prefect_server(Path(home))
    os.environ["PREFECT_API_URL"] = api  # for the CLIs, workers and Dask workers tests start
    with temporary_settings(updates={PREFECT_API_URL: api}):  # for flows run in this process
        yield api
    if proc is not None:
        stop_process_group(proc, grace=20)
    if home:
        shutil.rmtree(home, ignore_errors=True)


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
