"""Checkpoints, devices and dtypes: how every model backend finds what it runs on. No Prefect here.

soundsight never downloads weights. A backend names a checkpoint as a Hugging Face hub id
(looked up in the local cache with ``local_files_only=True``) or as a folder, and
`resolve_checkpoint` returns where it lies and which revision it is - the revision enters the
backend's identity, so a different checkpoint never reuses another's cached results.

Revisions follow one rule for every backend: a hub snapshot's commit hash, or
``sha256:<fingerprint>`` of a local folder (`folder_fingerprint`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from soundsight.errors import MissingCheckpointError, SoundsightError

if TYPE_CHECKING:
    import torch

__all__ = [
    "Checkpoint",
    "LoadedModels",
    "checkpoint_available",
    "download_hint",
    "file_fingerprint_update",
    "folder_fingerprint",
    "load_pretrained",
    "looks_like_path",
    "resolve_checkpoint",
    "resolve_device",
    "torch_dtype",
]

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint found on this machine.

    Attributes
    ----------
    model_id : str
        What the user named: a hub id (``org/name``) or a folder.
    path : pathlib.Path
        The folder ``from_pretrained`` reads (for a hub id, its snapshot in the HF cache).
    revision : str
        The snapshot's commit hash, or ``sha256:<fingerprint>`` of a local folder.
    source : {"hub-cache", "local"}
        Where it was found.
    """

    model_id: str
    path: Path
    revision: str
    source: Literal["hub-cache", "local"]

    @property
    def name(self) -> str:
        """The hub id, or a local folder's name: what backend ids show (never where a folder lies)."""
        return self.model_id if self.source == "hub-cache" else Path(self.model_id).name


def download_hint(model_id: str) -> str:
    """The shell command that puts hub id `model_id` into the local Hugging Face cache."""
    return f"hf download {model_id}  (huggingface_hub < 1.0: huggingface-cli download {model_id})"


def looks_like_path(model_id: str) -> bool:
    """True when `model_id` can only be a folder: it starts like a path or has more than one '/'.

    Hub ids are ``name`` or ``org/name``.
    """
    return (
        model_id.startswith(("/", "./", "../", "~", "\\"))
        or model_id.count("/") > 1
        or (os.sep != "/" and os.sep in model_id)
    )


_FINGERPRINT_WHOLE = 16 << 20  # files up to this size are hashed whole
_FINGERPRINT_EDGE = 8 << 20  # larger ones: size + their first and last 8 MiB
_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINT_LOCK = threading.Lock()


def folder_fingerprint(folder: str | Path) -> str:
    """Content fingerprint (sha256 hex) of a checkpoint folder.

    Covers every file's relative path and size; files up to 16 MiB are hashed whole, larger ones
    by their first and last 8 MiB (weights that differ at all differ there; hashing 30 GB of
    weights on every start would take minutes). Memoised per process by every file's size and
    modification time, so an edited folder is fingerprinted again and an unchanged one costs a
    directory walk.

    Parameters
    ----------
    folder : str or pathlib.Path
        The checkpoint folder.

    Returns
    -------
    str
        64 hex digits.
    """
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts)
    stamp = (
        str(folder),
        tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files),
    )
    with _FINGERPRINT_LOCK:
        if stamp in _FINGERPRINTS:
            return _FINGERPRINTS[stamp]
    h = hashlib.sha256()
    for p, (rel, size, _) in zip(files, stamp[1]):
        h.update(f"{rel}\0{size}\0".encode())
        file_fingerprint_update(h, p, size)
    with _FINGERPRINT_LOCK:
        _FINGERPRINTS[stamp] = h.hexdigest()
    return _FINGERPRINTS[stamp]


def file_fingerprint_update(h: hashlib._Hash, path: str | Path, size: int) -> None:
    """Feed one file's content into `h` by the fingerprint rule.

    Files up to 16 MiB go in whole, larger ones by their first and last 8 MiB.

    Parameters
    ----------
    h : hashlib hash object
        Updated in place.
    path : str or pathlib.Path
        The file.
    size : int
        Its size, bytes.
    """
    with open(path, "rb") as f:
        if size <= _FINGERPRINT_WHOLE:
            h.update(f.read())
        else:
            h.update(f.read(_FINGERPRINT_EDGE))
            f.seek(size - _FINGERPRINT_EDGE)
            h.update(f.read(_FINGERPRINT_EDGE))


CheckFolder = Callable[[str, Path, str], None]

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def require_transformers_files(model_id: str, folder: Path, hint: str, also: tuple[str, ...] = ()) -> None:
    """Raise unless `folder` holds a transformers checkpoint's weights, processor config and tokenizer.

    Parameters
    ----------
    model_id, hint : str
        For the message: what the user named, and how to get it.
    folder : pathlib.Path
        The checkpoint folder.
    also : tuple of str
        Further files the backend needs (e.g. ``generation_config.json``).

    Raises
    ------
    MissingCheckpointError
        Naming every missing piece (a partial download).
    """
    names = {p.name for p in folder.iterdir()}
    present = {
        "weights": any(n in names for n in WEIGHT_FILES),
        "preprocessor_config.json": bool(names & {"preprocessor_config.json", "processor_config.json"}),
        "tokenizer": "tokenizer.json" in names or {"vocab.json", "merges.txt"} <= names,
        **{name: name in names for name in also},
    }
    missing = [what for what, ok in present.items() if not ok]
    if missing:
        raise MissingCheckpointError(model_id, f"{hint}  [incomplete: missing {', '.join(missing)} in {folder}]")


def resolve_checkpoint(
    model_id: str, *, check: CheckFolder | None = None, hint: str = "", example_hub_id: str = "ORG/MODEL"
) -> Checkpoint:
    """Find `model_id` on this machine, never touching the network.

    An existing folder is used as it is; anything else that could be a hub id is looked up in the
    local Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``) with ``local_files_only=True``.

    Parameters
    ----------
    model_id : str
        Hub id or folder.
    check : callable, optional
        ``check(model_id, folder, hint)`` raises when the folder is not a usable checkpoint of
        the backend's kind (e.g. no ``model_index.json`` for a diffusers pipeline).
    hint : str, optional
        How to get the checkpoint, for error messages; default `download_hint(model_id)`.
    example_hub_id : str, optional
        The backend's usual checkpoint, named in the message for a missing folder.

    Returns
    -------
    Checkpoint

    Raises
    ------
    MissingCheckpointError
        Not on this machine; the message names `model_id` and the download command.
    """
    model_id = str(model_id)
    hint = hint or download_hint(model_id)
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        if check is not None:
            check(model_id, folder, hint)
        snapshot_commit = folder.parent.name == "snapshots" and _is_commit(folder.name)
        revision = folder.name if snapshot_commit else "sha256:" + folder_fingerprint(folder)
        return Checkpoint(model_id, folder.resolve(), revision, "local")
    if folder.exists():
        raise MissingCheckpointError(model_id, "give a checkpoint folder or a hub id", problem="a file, not a folder")
    if looks_like_path(model_id):
        raise MissingCheckpointError(
            model_id,
            f"download one into it with: hf download {example_hub_id} --local-dir {model_id}",
            problem="no such folder",
        )
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(model_id, local_files_only=True))
    except ImportError:
        raise MissingCheckpointError(model_id, "pip install 'soundsight[models]' && " + hint) from None
    except (OSError, ValueError):  # LocalEntryNotFoundError, OfflineModeIsEnabled, HFValidationError
        raise MissingCheckpointError(model_id, hint) from None
    if check is not None:
        check(model_id, snapshot, hint + " (the cached snapshot is incomplete)")
    return Checkpoint(model_id, snapshot, snapshot.name, "hub-cache")


def _is_commit(name: str) -> bool:
    return len(name) == 40 and all(c in "0123456789abcdef" for c in name)


def checkpoint_available(resolve: Callable[[str], Checkpoint], model_id: str) -> bool:
    """True when torch and transformers are installed and ``resolve(model_id)`` finds the checkpoint.

    Never touches the network and never loads weights.

    Parameters
    ----------
    resolve : callable
        The backend's resolver (e.g. ``resolve_clap_checkpoint``); raises a `SoundsightError` when
        the checkpoint is missing, incomplete or of the wrong kind.
    model_id : str
        Hub id or folder.

    Returns
    -------
    bool
    """
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        return False
    try:
        resolve(model_id)
    except SoundsightError:
        return False
    return True


def resolve_device(device: str | None = "auto") -> str:
    """The torch device to run on.

    Parameters
    ----------
    device : str
        ``"auto"`` (or empty): ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else
        (``"cpu"``, ``"cuda:1"``, ...) is returned as given.

    Returns
    -------
    str
    """
    if device not in (None, "", "auto"):
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str | None, device: str = "cpu") -> torch.dtype:
    """The torch dtype for `name`.

    Parameters
    ----------
    name : {"auto", "float32", "float16", "bfloat16"} or None
        ``"auto"``/None: float16 on CUDA devices, float32 elsewhere.
    device : str
        Resolved device, for ``"auto"``.

    Returns
    -------
    torch.dtype

    Raises
    ------
    ValueError
        An unknown name.
    """
    import torch

    if name in (None, "", "auto"):
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or 'auto', not {name!r}")
    return getattr(torch, name)


Model = TypeVar("Model")


class LoadedModels(Generic[Model]):
    """Models loaded in this process, one per (model id, revision, dtype, device), shared by threads.

    Concurrent callers of one key wait for its single load instead of reading the weights twice.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str, str], Model] = {}
        self._lock = threading.Lock()

    def get(
        self,
        checkpoint: Checkpoint,
        device: str,
        dtype: torch.dtype,
        load: Callable[[Checkpoint, str, torch.dtype], Model],
    ) -> Model:
        """The model for this key; the first call loads it with ``load(checkpoint, device, dtype)``."""
        key = (checkpoint.model_id, checkpoint.revision, str(dtype), device)
        with self._lock:
            if key not in self._models:
                self._models[key] = load(checkpoint, device, dtype)
            return self._models[key]

    def load(
        self,
        checkpoint: Checkpoint,
        device: str | None,
        dtype: str | None,
        load: Callable[[Checkpoint, str, torch.dtype], Model],
    ) -> Model:
        """`get` after resolving `device` (`resolve_device`) and the dtype named `dtype` (`torch_dtype`).

        Parameters
        ----------
        checkpoint : Checkpoint
            What to load.
        device : str or None
            ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
        dtype : {"auto", "float32", "float16", "bfloat16"} or None
            ``auto``/None: float16 on CUDA, float32 elsewhere.
        load : callable
            As for `get`.

        Returns
        -------
        Model
            Shared by every caller in this process.
        """
        device = resolve_device(device)
        return self.get(checkpoint, device, torch_dtype(dtype, device), load)

    def clear(self) -> None:
        """Forget every loaded model."""
        with self._lock:
            self._models.clear()


def load_pretrained(model_class: Any, processor_class: Any, checkpoint: Checkpoint, device: str, dtype: torch.dtype):
    """A transformers model (in eval mode on `device`, in `dtype`) and its processor, from the checkpoint's folder.

    Parameters
    ----------
    model_class, processor_class : type
        transformers classes with ``from_pretrained`` (e.g. ``ClapModel``, ``ClapProcessor``).
    checkpoint : Checkpoint
        Found by `resolve_checkpoint`; read with ``local_files_only=True`` (never the network).
    device : str
        A resolved torch device.
    dtype : torch.dtype
        The weights' dtype.

    Returns
    -------
    model, processor
    """
    model = model_class.from_pretrained(checkpoint.path, dtype=dtype, local_files_only=True)
    model = model.to(device).eval()
    return model, processor_class.from_pretrained(checkpoint.path, local_files_only=True)
