"""Draft quality: a step- and CFG-distilled LoRA fused into the transformer, its sampler, and a tiny decoder.

A scene renders in ``final`` quality (the checkpoint as trained) or ``draft``: `draft_quality`
finds the family's public LoRA (or ``render.draft_lora``) and tiny video decoder (or
``render.draft_decoder``) on this machine, `apply_quality` fuses the LoRA into a freshly built
pipeline and switches the sampler; the pipeline loads the decoder (`pipeline.build_pipeline`).
Which quality a scene renders in is `soundsight.models.render.quality.scene_quality`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from soundsight.errors import MissingCheckpointError
from soundsight.models.render.diffusion.families import TAEHV_SOURCE, ModelFamily
from soundsight.models.render.lora import LoraFile, lora_download_hint, resolve_lora, resolve_loras

__all__ = ["VAE", "Quality", "apply_quality", "draft_decoder", "draft_quality"]

VAE = "vae"  # render.draft_decoder's value for "decode drafts with the pipeline's own VAE"
log = logging.getLogger("soundsight.render")
_NOTED: set[str] = set()  # families whose missing default decoder was already noted in this process
_NOTED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Quality:
    """How a pipeline samples: the checkpoint as trained, or with draft LoRAs fused in."""

    name: str = "final"  # or "draft"
    loras: tuple[LoraFile, ...] = ()
    shift: float = 0.0  # draft sampler's flow shift
    decoder: LoraFile | None = None  # the tiny video decoder (TAEHV) file; None: the pipeline's VAE decodes

    def key(self) -> str:
        """What distinguishes two pipelines of one checkpoint (part of the pipeline cache key)."""
        files = [*self.loras, *([self.decoder] if self.decoder else [])]
        return "|".join([self.name, f"{self.shift:g}"] + [f"{lf.path}@{lf.revision}" for lf in files])

    def describe(self) -> str:
        """``draft[name@revision,...]`` (+ ``+decoder[name@revision]``) for backend ids; empty for final."""
        if self.name == "final":
            return ""
        loras = "draft[" + ",".join(f"{lf.name}@{lf.revision}" for lf in self.loras) + "]"
        return loras + (f"+decoder[{self.decoder.name}@{self.decoder.revision}]" if self.decoder else "")


def decoder_download_hint(spec: str, family: ModelFamily) -> str:
    """How to get tiny decoder `spec`: its hub command, else the family's published decoder (hub mirror, author)."""
    hub = spec.count("/") >= 2 and not spec.startswith(("/", "./", "../", "~"))
    hints = [lora_download_hint(spec)] if hub else [f"no such file or folder: {spec}"]
    if family.draft_decoder and family.draft_decoder != spec:
        hints.append(f"the published decoder for {family.name}: " + lora_download_hint(family.draft_decoder))
    if family.draft_decoder:
        name = family.draft_decoder.rsplit("/", 1)[-1]
        hints.append(f"(its author's copy: curl -L -o {name} {TAEHV_SOURCE}{name})")
    return "; ".join(hints[:-1]) + " " + hints[-1] if len(hints) > 1 else hints[0]


def draft_decoder(family: ModelFamily, spec: str) -> LoraFile | None:
    """The tiny video decoder drafts of `family` use, found on this machine; None: the VAE decodes.

    Parameters
    ----------
    family : ModelFamily
    spec : str
        ``render.draft_decoder``: empty for the family's published decoder (`ModelFamily.draft_decoder`)
        when it is in the Hugging Face cache -- else the VAE, noted once per process with the
        download command; ``vae`` for the VAE always; or a ``.safetensors`` / ``.pth`` file, a
        folder holding one ``.safetensors`` file, or ``org/repo/path/in/repo`` in the hub cache.

    Raises
    ------
    MissingCheckpointError
        A decoder named in `spec` is not on this machine; the message names the download.
    """
    if spec.strip() == VAE:
        return None
    named = spec.strip() or family.draft_decoder
    if not named:
        return None
    try:
        return resolve_lora(named)
    except MissingCheckpointError:
        if spec.strip():
            raise MissingCheckpointError(named, decoder_download_hint(named, family)) from None
    with _NOTED_LOCK:
        first = family.name not in _NOTED
        _NOTED.add(family.name)
    if first:
        log.warning(
            "draft: the tiny video decoder %s is not in the Hugging Face cache, so drafts decode with the "
            "VAE (seconds more per scene); get it with: %s (render.draft_decoder=vae keeps the VAE)",
            named,
            decoder_download_hint(named, family),
        )
    return None


def draft_quality(family: ModelFamily, model: str, spec: str, decoder: str = "") -> Quality:
    """The draft `Quality` of `family` for checkpoint `model`: LoRA `spec`, tiny decoder `decoder`.

    Empty `spec` or `decoder`: the family's defaults (`draft_decoder`).

    Raises
    ------
    ValueError
        No draft LoRA is known for this family, or the count does not match its experts.
    MissingCheckpointError
        A LoRA file, or a decoder `decoder` names, is not on this machine.
    """
    default, shift = family.draft_for(model)
    spec = spec or default
    if not spec:
        raise ValueError(
            f"no draft LoRA is known for {family.name}; set render.draft_lora to a step-distilled LoRA for it"
        )
    loras = resolve_loras(spec)
    if len(loras) not in (1, family.experts):
        raise ValueError(f"{family.name} has {family.experts} expert(s); draft_lora names {len(loras)} LoRAs")
    return Quality("draft", loras, shift if spec == default else 5.0, draft_decoder(family, decoder))


def apply_quality(pipe: Any, quality: Quality) -> None:
    """Fuse the draft LoRAs into the transformer(s) and switch to the draft sampler.

    Each LoRA is loaded with diffusers' `load_lora_weights` from its local file, fused at scale
    1.0 and unloaded, leaving plain layers (as fast as the base model, and compilable). With two
    LoRAs, the second goes into ``transformer_2`` (Wan 2.2 A14B's low-noise expert); with one
    LoRA and two experts, into both.
    """
    if quality.name == "final":
        return
    from diffusers import FlowMatchEulerDiscreteScheduler

    experts = ["transformer"] + (["transformer_2"] if getattr(pipe, "transformer_2", None) is not None else [])
    loras = quality.loras if len(quality.loras) == len(experts) else quality.loras * len(experts)
    for i, (component, lora) in enumerate(zip(experts, loras)):
        kwargs = {"load_into_transformer_2": True} if component == "transformer_2" else {}
        pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=f"draft{i}", **kwargs)
    pipe.fuse_lora(components=experts, lora_scale=1.0)
    pipe.unload_lora_weights()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=quality.shift)
