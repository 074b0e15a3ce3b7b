"""Draft-quality LoRAs: where a LoRA file lies and which revision it is, never downloading. No Prefect here.

A draft LoRA is named like a checkpoint, with one addition for files inside a hub repository:

- a ``.safetensors`` file, or a folder holding ``pytorch_lora_weights.safetensors`` or exactly one
  ``.safetensors`` file;
- ``org/repo`` (a hub id, looked up in the local Hugging Face cache: the same folder rule);
- ``org/repo/path/in/repo.safetensors`` (one file of a hub repository, from the local cache).

Two-expert models (Wan 2.2 A14B) take two, comma-separated: the high-noise expert's, then the
low-noise expert's. The revision (a hub snapshot's commit, or ``sha256:`` of a local file) enters
the renderer's ``backend_id``, so clips drafted with another LoRA never share a cache entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from soundsight.errors import MissingCheckpointError
from soundsight.models.hub import file_fingerprint_update

__all__ = ["LoraFile", "file_fingerprint", "lora_download_hint", "resolve_lora", "resolve_loras"]

_DEFAULT_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class LoraFile:
    """A LoRA weight file found on this machine.

    Attributes
    ----------
    spec : str
        What the user named (path, hub id, or hub id + file).
    path : pathlib.Path
        The ``.safetensors`` file.
    revision : str
        The hub snapshot's commit hash, or ``sha256:<fingerprint>`` of a local file.
    source : {"hub-cache", "local"}
        Where it was found.
    """

    spec: str
    path: Path
    revision: str
    source: str

    @property
    def name(self) -> str:
        """The hub spec, or a local file's name: what backend ids show (never where a file lies)."""
        return self.spec if self.source == "hub-cache" else self.path.name


def file_fingerprint(path: str | Path) -> str:
    """Content fingerprint of one file (sha256 hex).

    Files up to 16 MiB are hashed whole; larger ones by their size and first and last 8 MiB,
    the rule `soundsight.models.hub.folder_fingerprint` uses for checkpoint folders. Memoised per
    process by the file's size and modification time, as that one is.

    Parameters
    ----------
    path : str or pathlib.Path
        The file.

    Returns
    -------
    str
        64 hex digits.
    """
    path = Path(path).resolve()
    st = path.stat()
    stamp = (str(path), st.st_size, st.st_mtime_ns)  # every scene's cache key asks again: hash once per process
    if stamp not in _FINGERPRINTS:
        h = hashlib.sha256(f"{st.st_size}\0".encode())
        file_fingerprint_update(h, path, st.st_size)
        _FINGERPRINTS[stamp] = h.hexdigest()
    return _FINGERPRINTS[stamp]


def lora_download_hint(spec: str) -> str:
    """The shell command that puts hub LoRA `spec` into the local Hugging Face cache."""
    parts = spec.split("/")
    if len(parts) > 2:
        return f"hf download {'/'.join(parts[:2])} {'/'.join(parts[2:])}"
    return f"hf download {spec}"


def _pick_in_folder(spec: str, folder: Path) -> Path:
    default = folder / _DEFAULT_WEIGHT_NAME
    if default.is_file():
        return default
    found = sorted(folder.glob("*.safetensors"))
    if len(found) != 1:
        raise MissingCheckpointError(
            spec,
            f"{folder} holds {len(found)} .safetensors files; name one: {spec.rstrip('/')}/<file>.safetensors",
        )
    return found[0]


def _snapshot_revision(path: Path) -> str:
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return "sha256:" + file_fingerprint(path)


def resolve_lora(spec: str) -> LoraFile:
    """Find one LoRA file on this machine, never touching the network.

    Parameters
    ----------
    spec : str
        A ``.safetensors`` file, a folder, a hub id (``org/repo``) or a file in a hub repository
        (``org/repo/path/in/repo.safetensors``).

    Returns
    -------
    LoraFile

    Raises
    ------
    MissingCheckpointError
        Not on this machine; the message names the download command.
    """
    spec = spec.strip()
    local = Path(spec).expanduser()
    if local.is_file():
        return LoraFile(spec, local.resolve(), "sha256:" + file_fingerprint(local), "local")
    if local.is_dir():
        found = _pick_in_folder(spec, local)
        return LoraFile(spec, found.resolve(), "sha256:" + file_fingerprint(found), "local")
    if spec.startswith(("/", "./", "../", "~", "\\")) or spec.count("/") < 1:
        raise MissingCheckpointError(spec, "no such LoRA file or folder")
    parts = spec.split("/")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        if filename:
            path = Path(hf_hub_download(repo, filename, local_files_only=True))
        else:
            path = _pick_in_folder(spec, Path(snapshot_download(repo, local_files_only=True)))
    except ImportError:
        raise MissingCheckpointError(spec, "pip install huggingface_hub && " + lora_download_hint(spec)) from None
    except (OSError, ValueError):  # LocalEntryNotFoundError, OfflineModeIsEnabled, HFValidationError
        raise MissingCheckpointError(spec, lora_download_hint(spec)) from None
    return LoraFile(spec, path, _snapshot_revision(path), "hub-cache")


def resolve_loras(specs: str) -> tuple[LoraFile, ...]:
    """`resolve_lora` for each comma-separated spec (two for two-expert models).

    Parameters
    ----------
    specs : str
        One spec, or ``high,low`` for Wan 2.2 A14B's two experts.

    Returns
    -------
    tuple of LoraFile
    """
    return tuple(resolve_lora(s) for s in specs.split(",") if s.strip())
