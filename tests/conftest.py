"""Test session set-up.

One real Prefect server (SQLite, 127.0.0.1) serves the whole session (the `prefect_server`
fixture; modules that run flows mark themselves with
``pytestmark = pytest.mark.usefixtures("prefect_server")``). Prefect's ephemeral mode is switched
off for the session: a test that runs a flow without asking for the server fails at once instead
of quietly starting a server of its own.

The slow servers - Prefect's, and the two vLLM servers of tests/llm_fixtures.py and
tests/lalm_fixtures.py - start in the background as the session begins, when a collected test
needs them (a run of unit tests starts none), and a test waits only for what is not up yet. The
tests that need a vLLM server run last, so those start-ups (30-60 s each on 2 cores) overlap
everything before them.

The suite runs on pytest-xdist workers (pyproject's addopts). Each server above is still started
once per run: the first worker that needs it starts it and the others use it
(`tests.support.run_once`); the controller stops them at the end. The modules in
ONE_WORKER_GROUPS run on one worker each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from soundsight.media import exclusive_lock
from tests.support import (
    PREFECT_DATABASE,
    SHARED_DIR_ENV,
    copy_database,
    launch_prefect_server,
    run_once,
    shared_dir,
    stop_recorded_servers,
)

ROOT = Path(__file__).resolve().parent.parent
MUSIC = ROOT.parent / "shared" / "music"
_PLUGINS = ["llm_fixtures", "lalm_fixtures", "clap_fixtures", "video_fixtures", "deploy_fixtures", "robustness_report"]
pytest_plugins = [f"tests.{name}" for name in _PLUGINS if (Path(__file__).parent / f"{name}.py").exists()]
# fixture a test asks for -> the session fixture that starts its server without waiting for it
STARTED_EARLY = {"prefect_server": "prefect_process", "vllm_server": "vllm_process", "lalm_server": "lalm_process"}
MODEL_SERVERS = {"vllm_server", "lalm_server"}
# Under pytest-xdist the tests of these modules run on one worker (`pytest_xdist_make_scheduler`):
# the modules whose tests use the deployment stack (tests/deploy_fixtures.py's `stack`, which exists
# once), and test_robustness.py, whose module fixture starts every CLI run its collected tests read
# side by side (on two workers each would start them all).
STACK_MODULES = {"test_browser.py", "test_catalogue.py", "test_deployments.py"}
ONE_WORKER_GROUPS = {**dict.fromkeys(STACK_MODULES, "deployment-stack"), "test_robustness.py": "robustness-cli"}
PREFECT_START_TIMEOUT_S = 180
MIGRATED_DATABASE = pytest.StashKey[Path]()


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands tests out to pytest-xdist workers (and runs none itself)."""
    return config.getoption("dist", "no") != "no" and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.pop("PREFECT_API_URL", None)  # never a developer's own server by accident
    if _xdist_controller(config):
        # Before the workers start (xdist's own configure runs last): they inherit it.
        os.environ[SHARED_DIR_ENV] = tempfile.mkdtemp(prefix="soundsight-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller, once every worker is done: stop the servers they shared, remove their folder."""
    if _xdist_controller(config) and (shared := shared_dir()) is not None:
        stop_recorded_servers(shared)
        shutil.rmtree(shared, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need a vLLM server run last (otherwise in their usual order): the servers start
    when the session begins and are up by then."""
    items.sort(key=lambda item: bool(MODEL_SERVERS & set(item.fixturenames)))
    strays = [item.nodeid for item in items if "stack" in item.fixturenames and item.path.name not in STACK_MODULES]
    if strays:
        raise pytest.UsageError(f"tests on the deployment stack outside STACK_MODULES (conftest.py): {strays}")


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice; only with xdist installed
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's load scheduling, except that each group of ONE_WORKER_GROUPS goes to one worker,
    the groups first (xdist sends its largest units first). Each other test is its own unit.
    (xdist's ``--dist loadgroup`` would do this from marks, but it renames node ids in a way
    pytest 9.2 no longer honours.)
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupsOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ONE_WORKER_GROUPS.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1], nodeid)

    return GroupsOnOneWorker(config, log)


@pytest.fixture(scope="session", autouse=True)
def start_servers_early(request: pytest.FixtureRequest) -> None:
    """Start, without waiting, each slow server a collected test will need."""
    needed = set().union(*(item.fixturenames for item in request.session.items))
    for fixture, starter in STARTED_EARLY.items():
        if fixture in needed:
            request.getfixturevalue(starter)


@pytest.fixture(scope="session")
def prefect_process():
    """The session's Prefect server, started (not waited for), and its PREFECT_HOME; stopped with
    the session.

    (None, None) when TESTS_PREFECT_API_URL names a server a developer already runs.
    """
    if os.environ.get("TESTS_PREFECT_API_URL"):
        yield None, None
        return
    with run_once("prefect", launch_prefect_server, grace=20) as started:
        yield started


@pytest.fixture(scope="session")
def prefect_server(prefect_process, request):
    """The session's Prefect API URL, once the server answers.

    TESTS_PREFECT_API_URL reuses a server a developer already runs.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server, home = prefect_process
    if server is None:
        api = os.environ["TESTS_PREFECT_API_URL"]
    else:
        api = server.wait(PREFECT_START_TIMEOUT_S)
        # Its database as it came up - migrated, no runs yet - for `migrated_prefect_database`: taken
        # by the first process to see it up (under xdist, before any worker can have run a flow).
        as_started = home / "as-started.db"
        with exclusive_lock(home / "as-started.lock"):
            if not as_started.exists():
                copy_database(home / PREFECT_DATABASE, as_started)
        request.config.stash[MIGRATED_DATABASE] = as_started
    os.environ["PREFECT_API_URL"] = api  # for the CLIs, workers and Dask workers tests start
    with temporary_settings(updates={PREFECT_API_URL: api}):  # for flows run in this process
        yield api


@pytest.fixture(scope="session")
def migrated_prefect_database(prefect_server, request) -> Path | None:
    """A copy of the session server's SQLite database taken as the server came up: migrated, no
    runs. A Prefect server whose PREFECT_HOME starts with it (`tests.support.launch_prefect_server`,
    or a copy as PREFECT_HOME/prefect.db) skips the migrations, about 10 s of CPU - as every start
    after a user's first does. None when the session uses a developer's own server."""
    return request.config.stash.get(MIGRATED_DATABASE, None)


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
