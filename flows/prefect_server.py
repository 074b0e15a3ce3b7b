"""The CLI's temporary Prefect server: started when no server is running, never outliving the CLI.

Prefect's own ephemeral server runs in the CLI's process group, so a Ctrl-C in the terminal kills
it before the flow can report its state (the CLI then hangs, retrying), and a ``kill -9`` of the
CLI leaves it running. This one runs in its own session (a terminal's Ctrl-C does not reach it),
is stopped when the CLI exits, and asks the kernel to end it when its parent dies
(``PR_SET_PDEATHSIG``), so even a killed CLI leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator

PR_SET_PDEATHSIG = 1


def server_healthy(api_url: str, timeout: float = 0.5) -> bool:
    """Whether a Prefect server answers at `api_url` within `timeout` seconds."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - refused, timed out, not HTTP: not a healthy server
        return False


def http_status(url: str, data: bytes | None = None, auth: str = "", timeout: float = 10.0) -> int:
    """The HTTP status a request to `url` gets; an error status is returned, not raised.

    Parameters
    ----------
    url : str
        What to ask.
    data : bytes, optional
        A JSON body; with one the request is a POST, else a GET.
    auth : str
        ``user:password`` for HTTP basic auth (a Prefect server's auth string); empty: none.
    timeout : float
        Longest wait, seconds.

    Returns
    -------
    int
        E.g. 200, or 401 from a server that wants other credentials.

    Raises
    ------
    OSError
        No answer at all (``urllib.error.URLError``: refused, timed out).
    """
    import base64
    import urllib.error

    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def server_usable(api_url: str, timeout: float = 1.0) -> bool:
    """Whether the Prefect API at `api_url` answers this client (with PREFECT_API_AUTH_STRING if set).

    A server that is healthy but refuses us (it wants an auth string we do not have) is not usable.
    """
    auth = os.environ.get("PREFECT_API_AUTH_STRING", "")
    try:
        return http_status(api_url.rstrip("/") + "/admin/version", auth=auth, timeout=timeout) == 200
    except Exception:  # noqa: BLE001 - refused, timed out: not for us
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGTERM me when my parent dies (Linux), and not if it is gone already."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def temporary_server(
    startup_timeout: float = 120.0, while_starting: Callable[[str], object] | None = None
) -> Iterator[str]:
    """A Prefect server (SQLite in PREFECT_HOME, no UI) on a free port of 127.0.0.1; yields its API URL.

    Parameters
    ----------
    startup_timeout : float
        Longest wait for the server to answer, seconds.
    while_starting : callable, optional
        Called with the API URL as soon as the server process is started, before waiting for it:
        work that overlaps the server's start-up (the CLI imports the flow meanwhile).

    Raises
    ------
    RuntimeError
        It did not become healthy within `startup_timeout` seconds (or exited).
    """
    port = _free_port()
    env = dict(os.environ, PREFECT_UI_ENABLED="0", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    parent = os.getpid()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the server writes to it for its whole life
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        start_new_session=True, preexec_fn=lambda: _die_with_parent(parent),
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        if while_starting is not None:
            while_starting(api)
        deadline = time.monotonic() + startup_timeout
        while not server_healthy(api, timeout=1.0):
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError(f"the temporary Prefect server exited: {err[-1] if err else proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the temporary Prefect server did not start within {startup_timeout:.0f} s")
            time.sleep(0.3)
        yield api
    finally:
        flush_run_logs()
        stop(proc)
        log.close()


def flush_run_logs(timeout: float = 3.0) -> None:
    """Send the run logs Prefect still holds to the server, waiting at most `timeout` seconds.

    Prefect ships logs from a background worker that drains at interpreter exit; with a temporary
    server that is after the server has gone, and every run ended with "Error logging to API".
    """
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):  # the logs are a courtesy: never fail a finished run over them
        APILogWorker.drain_all(timeout=timeout)
