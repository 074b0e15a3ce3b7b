"""Text embeddings kept on disk and in memory, so a vocabulary is embedded once per checkpoint.

The vocabulary's sentences do not change between songs, but embedding them costs a text-encoder
pass per run. `cached_embeddings` keys an array by everything that determines it (the backend id
- model, revision, dtype - and the exact sentences) and keeps it as ``<cache_dir>/<kind>/<sha256>.npy``
with a readable ``.json`` beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from soundsight.environment import environment_variable
from soundsight.media import atomic_path

__all__ = ["cached_embeddings", "default_cache_dir", "embedding_cache_path", "forget_text_embeddings"]

CACHE_DIR = environment_variable(
    "SOUNDSIGHT_CACHE_DIR", "soundsight's cache folder: text embeddings, Whisper checkpoints converted to CTranslate2"
)
_MEMORY: dict[str, np.ndarray] = {}
_LOCK = threading.Lock()


def default_cache_dir() -> Path:
    """``$SOUNDSIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/soundsight`` (``~/.cache/soundsight``)."""
    if CACHE_DIR.get():
        return Path(CACHE_DIR.get()).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "soundsight"


def embedding_cache_path(kind: str, backend_id: str, sentences: list[str], cache_dir: str | Path | None = None) -> Path:
    """``<cache_dir>/<kind>/<sha256 of backend id and sentences>.npy``."""
    key = json.dumps({"backend_id": backend_id, "sentences": sentences})
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / kind / (hashlib.sha256(key.encode()).hexdigest() + ".npy")


def cached_embeddings(
    kind: str,
    backend_id: str,
    sentences: list[str],
    compute: Callable[[list[str]], np.ndarray],
    *,
    width: int,
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, bool]:
    """The embeddings of `sentences`, from memory, from disk, or from `compute` (then saved).

    Parameters
    ----------
    kind : str
        Sub-folder of the cache, e.g. ``clap-text``.
    backend_id : str
        Model, revision and dtype of the encoder: part of the key.
    sentences : list of str
        In order; part of the key.
    compute : callable
        ``compute(sentences) -> (len(sentences), width)`` array, called on a miss.
    width : int
        Embedding width: a file of another shape is recomputed and replaced.
    cache_dir : str or pathlib.Path, optional
        Default `default_cache_dir()`.

    Returns
    -------
    embeddings : numpy.ndarray
        ``(len(sentences), width)``.
    hit : bool
        Whether memory or disk held them.
    """
    path = embedding_cache_path(kind, backend_id, sentences, cache_dir)
    with _LOCK:
        if str(path) in _MEMORY:
            return _MEMORY[str(path)], True
    embeddings, hit = None, False
    try:
        embeddings = np.load(path, allow_pickle=False)
        hit = embeddings.shape == (len(sentences), width)
    except (OSError, ValueError):  # missing, truncated or not an array: recompute
        pass
    if not hit:
        embeddings = np.asarray(compute(sentences))
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"backend_id": backend_id, "sentences": sentences}, indent=1))
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, embeddings, allow_pickle=False)
    with _LOCK:
        _MEMORY[str(path)] = embeddings
    return embeddings, hit


def forget_text_embeddings() -> None:
    """Drop the in-memory copies (the files stay)."""
    with _LOCK:
        _MEMORY.clear()
