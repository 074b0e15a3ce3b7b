"""Draft quality: a step- and CFG-distilled LoRA fused into the transformer, and its sampler.

A scene renders in ``final`` quality (the checkpoint as trained) or ``draft``: `draft_quality`
finds the family's public LoRA (or ``render.draft_lora``) on this machine, `apply_quality` fuses it
into a freshly built pipeline and switches the sampler. Which quality a scene renders in is
`soundsight.models.render.quality.scene_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from soundsight.models.render.diffusion.families import ModelFamily
from soundsight.models.render.lora import LoraFile, resolve_loras

__all__ = ["Quality", "apply_quality", "draft_quality"]


@dataclass(frozen=True)
class Quality:
    """How a pipeline samples: the checkpoint as trained, or with draft LoRAs fused in."""

    name: str = "final"  # or "draft"
    loras: tuple[LoraFile, ...] = ()
    shift: float = 0.0  # draft sampler's flow shift

    def key(self) -> str:
        """What distinguishes two pipelines of one checkpoint (part of the pipeline cache key)."""
        return "|".join([self.name, f"{self.shift:g}"] + [f"{lf.path}@{lf.revision}" for lf in self.loras])

    def describe(self) -> str:
        """``draft[name@revision,...]`` for backend ids; empty for final."""
        if self.name == "final":
            return ""
        return "draft[" + ",".join(f"{lf.name}@{lf.revision}" for lf in self.loras) + "]"


def draft_quality(family: ModelFamily, model: str, spec: str) -> Quality:
    """The draft `Quality` of `family` for checkpoint `model`: LoRA `spec`, or the family's default.

    Raises
    ------
    ValueError
        No draft LoRA is known for this family, or the count does not match its experts.
    MissingCheckpointError
        A LoRA file is not on this machine.
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
    return Quality("draft", loras, shift if spec == default else 5.0)


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
