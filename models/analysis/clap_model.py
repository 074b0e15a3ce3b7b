"""A LAION-CLAP checkpoint in transformers' format, found on this machine and loaded once per process.

The checkpoints are LAION's, in transformers' format (`ClapModel` + `ClapProcessor`):
``laion/larger_clap_music`` (default), ``laion/larger_clap_music_and_speech``,
``laion/clap-htsat-unfused``, ``laion/clap-htsat-fused``, or a local folder holding one. The
original ``.pt`` checkpoints of the `laion-clap` package are recognised and refused with a message
that says how to get the transformers-format ones.

Only numpy and the standard library are imported at module level, so `clap_available` answers
(False) on an install without torch/transformers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soundsight.errors import MissingCheckpointError, SoundsightError
from soundsight.models.hub import (
    Checkpoint,
    LoadedModels,
    checkpoint_available,
    download_hint,
    load_pretrained,
    require_transformers_files,
    resolve_checkpoint,
    resolve_device,
    torch_dtype,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ALGORITHM_VERSION",
    "DEFAULT_CLAP_MODEL",
    "ClapCheckpointFormatError",
    "LoadedClap",
    "clap_available",
    "clap_backend_id",
    "clear_clap_cache",
    "load_clap",
    "resolve_clap_checkpoint",
]

logger = logging.getLogger(__name__)

DEFAULT_CLAP_MODEL = "laion/larger_clap_music"
ALGORITHM_VERSION = "clap-v2"  # bump when windowing, pooling, scoring or the revision rule changes
ORIGINAL_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


class ClapCheckpointFormatError(SoundsightError):
    """The CLAP checkpoint exists but is not in transformers' format (e.g. a laion-clap ``.pt``)."""


def _original_checkpoint_message(where: str) -> str:
    return (
        f"{where} is an original LAION-CLAP checkpoint (.pt, for the laion-clap package), which soundsight "
        "does not load. The same LAION checkpoints are published in transformers' format: download one with "
        f"`{download_hint(DEFAULT_CLAP_MODEL)}` (music; also laion/larger_clap_music_and_speech, "
        "laion/clap-htsat-unfused, laion/clap-htsat-fused) and set analysis.clap_model to its id, or convert "
        "your .pt with transformers' src/transformers/models/clap/convert_clap_original_pytorch_to_hf.py and "
        "point analysis.clap_model at the output directory."
    )


def check_clap_folder(model_id: str, path: Path, hint: str) -> None:
    """Raise unless `path` holds config, weights, feature-extractor config and a tokenizer.

    Raises
    ------
    ClapCheckpointFormatError
        A folder of original ``.pt`` checkpoints, or one that is not a transformers checkpoint.
    MissingCheckpointError
        A transformers checkpoint with files missing (a partial download).
    """
    names = {p.name for p in path.iterdir()}
    if "config.json" not in names:
        if any(n.lower().endswith(ORIGINAL_CHECKPOINT_SUFFIXES) for n in names):
            raise ClapCheckpointFormatError(_original_checkpoint_message(f"'{model_id}' ({path})"))
        if names:
            raise ClapCheckpointFormatError(
                f"'{model_id}' ({path}) has no config.json: a transformers-format CLAP directory holds "
                "config.json, model.safetensors or pytorch_model.bin, preprocessor_config.json and the "
                f"tokenizer files. Get one with `{hint}`."
            )
        raise MissingCheckpointError(model_id, hint)
    require_transformers_files(model_id, path, hint)


def resolve_clap_checkpoint(model_id: str = DEFAULT_CLAP_MODEL) -> Checkpoint:
    """Find a transformers-format CLAP checkpoint on this machine without touching the network.

    Parameters
    ----------
    model_id : str
        Hub id (looked up in the local Hugging Face cache) or a folder.

    Returns
    -------
    soundsight.models.hub.Checkpoint

    Raises
    ------
    MissingCheckpointError
        Not on this machine (or only partly downloaded); the message names `model_id` and the
        command that downloads it.
    ClapCheckpointFormatError
        An original LAION-CLAP ``.pt`` checkpoint (or a folder of them), a file, or a folder that
        is not a transformers checkpoint; the message says how to get the transformers-format one.
    """
    model_id = str(model_id)
    local = Path(model_id).expanduser()
    if model_id.lower().endswith(ORIGINAL_CHECKPOINT_SUFFIXES):
        raise ClapCheckpointFormatError(_original_checkpoint_message(f"'{model_id}'"))
    if local.is_file():
        raise ClapCheckpointFormatError(
            f"'{model_id}' is a file; analysis.clap_model takes a transformers-format checkpoint directory "
            f"or a hub id (e.g. {DEFAULT_CLAP_MODEL})."
        )
    hint = f"hf download {DEFAULT_CLAP_MODEL} --local-dir {model_id}" if local.is_dir() else ""
    return resolve_checkpoint(model_id, check=check_clap_folder, hint=hint, example_hub_id=DEFAULT_CLAP_MODEL)


def clap_available(model_id: str = DEFAULT_CLAP_MODEL) -> bool:
    """True when `model_id` is complete on this machine and torch + transformers are installed.

    Never touches the network and never loads weights. Backend ``auto`` picks CLAP exactly when
    this is true.
    """
    return checkpoint_available(resolve_clap_checkpoint, model_id)


def clap_backend_id(
    model: str | Checkpoint = DEFAULT_CLAP_MODEL, device: str = "auto", dtype: str | None = None
) -> str:
    """``clap-v2:<model>@<revision>:<dtype>``: what analysis cache keys depend on.

    Parameters
    ----------
    model : str or Checkpoint
        Model id / folder (resolved with `resolve_clap_checkpoint`, so this raises its errors) or
        an already resolved checkpoint.
    device, dtype : str
        As for `load_clap`; the dtype (which follows the device when ``auto``) changes the numbers.

    Returns
    -------
    str
        No weights are loaded. A local folder appears by its name (its content is the revision),
        so the id does not depend on where the checkpoint lies.
    """
    checkpoint = model if isinstance(model, Checkpoint) else resolve_clap_checkpoint(model)
    dtype_name = str(torch_dtype(dtype, resolve_device(device))).removeprefix("torch.")
    return f"{ALGORITHM_VERSION}:{checkpoint.name}@{checkpoint.revision}:{dtype_name}"


@dataclass
class LoadedClap:
    """A CLAP model with its feature extractor and tokenizer, on `device` in `dtype`."""

    checkpoint: Checkpoint
    model: Any  # transformers.ClapModel, eval mode
    feature_extractor: Any  # transformers.ClapFeatureExtractor
    tokenizer: Any  # transformers.RobertaTokenizer
    device: str
    dtype: torch.dtype
    mel_filters: dict = field(default_factory=dict, repr=False)  # per device: (mel bank, window) tensors

    @property
    def sample_rate(self) -> int:
        """The rate the audio encoder expects, Hz (48000 for every LAION checkpoint)."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def window_samples(self) -> int:
        """The audio encoder's input length, samples (10 s = 480000)."""
        return int(self.feature_extractor.nb_max_samples)

    @property
    def fused(self) -> bool:
        """Feature-fusion checkpoints (``clap-htsat-fused``) take 4 stacked mel channels."""
        return self.feature_extractor.truncation == "fusion"

    @property
    def backend_id(self) -> str:
        """See `clap_backend_id`."""
        return clap_backend_id(self.checkpoint, self.device, str(self.dtype).removeprefix("torch."))

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale_a)``: multiplies cosine similarities into ``logits_per_audio``."""
        return float(self.model.logit_scale_a.detach().float().exp().item())


_MODELS: LoadedModels[LoadedClap] = LoadedModels()


def clear_clap_cache() -> None:
    """Forget the models and text embeddings loaded in this process."""
    from soundsight.models.analysis.embedding_cache import forget_text_embeddings

    _MODELS.clear()
    forget_text_embeddings()


def load_clap(model_id: str = DEFAULT_CLAP_MODEL, device: str = "auto", dtype: str | None = None) -> LoadedClap:
    """Load a CLAP checkpoint once per process, keyed by (model id, revision, dtype, device).

    Parameters
    ----------
    model_id : str
        Hub id or folder (see `resolve_clap_checkpoint` for the errors).
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...
    dtype : {"auto", "float32", "float16", "bfloat16"} or None
        ``auto``/None: float16 on CUDA (LAION trained CLAP with fp16 mixed precision), float32 on CPU.

    Returns
    -------
    LoadedClap
        Shared by every caller in this process (thread-safe: concurrent callers share one load).
    """
    return _MODELS.load(resolve_clap_checkpoint(model_id), device, dtype, _load)


def _load(checkpoint: Checkpoint, device: str, dtype: torch.dtype) -> LoadedClap:
    from transformers import ClapModel, ClapProcessor

    logger.info("loading CLAP %s (%s) on %s as %s", checkpoint.model_id, checkpoint.revision, device, dtype)
    model, processor = load_pretrained(ClapModel, ClapProcessor, checkpoint, device, dtype)
    tokenizer = processor.tokenizer
    vocab_size = model.config.text_config.vocab_size
    # transformers 5 can quietly build a ~5-token tokenizer when tokenizer files are missing.
    if not (vocab_size // 2 <= len(tokenizer) <= vocab_size):
        raise ClapCheckpointFormatError(
            f"'{checkpoint.model_id}': its tokenizer has {len(tokenizer)} tokens but the text model expects "
            f"{vocab_size}; the tokenizer files in {checkpoint.path} are missing or wrong "
            f"(re-download with `{download_hint(checkpoint.model_id)}`)."
        )
    return LoadedClap(checkpoint, model, processor.feature_extractor, tokenizer, device, dtype)
