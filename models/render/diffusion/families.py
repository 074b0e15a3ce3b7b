"""What each text-to-video family is, which family a checkpoint is, and where its checkpoint lies.

A `ModelFamily` says what differs between families (pipeline class, default checkpoint, native
fps, frame rule, longest good clip, default resolution, VAE dtype, experts, draft LoRA).
``render.backend = "wan"`` covers the Wan families: which one a checkpoint is comes from its
``model_index.json`` (`detect_family`). Adding a family is one `ModelFamily` here and its name in
`BACKEND_FAMILIES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from soundsight.errors import MissingCheckpointError
from soundsight.models.base import RenderSpec
from soundsight.models.hub import Checkpoint, resolve_checkpoint

__all__ = [
    "BACKEND_FAMILIES",
    "FAMILIES",
    "LIGHTX2V_14B",
    "LIGHTX2V_A14B",
    "MOCHI",
    "SELF_FORCING_1_3B",
    "WAN",
    "WAN22_A14B",
    "WAN22_TI2V",
    "WAN_VACE",
    "ModelFamily",
    "detect_family",
    "family_for",
    "resolve_pipeline_checkpoint",
    "spec_for",
]


@dataclass(frozen=True)
class ModelFamily:
    """What differs between text-to-video families.

    Attributes
    ----------
    pipeline_class, vae_class : str
        Attribute names in `diffusers`.
    spec : RenderSpec
        Native fps, valid frame counts and longest good clip (seconds).
    default_size : tuple of int
        (width, height) the model renders at, pixels, landscape.
    max_sequence_length : int
        Text tokens the pipeline encodes.
    vae_fp32 : bool
        Decode in float32 whatever the transformer's dtype (Wan's recommendation).
    size_multiple : int
        Width and height must be multiples of this (VAE spatial factor x patch size).
    large_size, large_marker : optional
        Default size for checkpoints whose id contains `large_marker` (Wan 14B: 720p).
    experts : int
        Transformers in the pipeline: 2 for Wan 2.2 A14B (``transformer`` for high noise,
        ``transformer_2`` for low noise, switched at ``boundary_ratio``).
    reference : bool
        Takes a reference image (``reference_images``): Wan VACE.
    draft_lora, large_draft_lora : str
        The public step/CFG-distilled LoRA(s) for draft quality (comma-separated: one per
        expert), for the small and the large (`large_marker`) checkpoint; empty: none known.
    draft_shift, large_draft_shift : float
        Flow-matching shift of the draft sampler (Euler), per LoRA's recipe.
    """

    name: str
    pipeline_class: str
    vae_class: str
    default_model: str
    spec: RenderSpec
    default_size: tuple[int, int]
    max_sequence_length: int
    vae_fp32: bool
    size_multiple: int = 16
    large_size: tuple[int, int] | None = None
    large_marker: str = ""
    experts: int = 1
    reference: bool = False
    draft_lora: str = ""
    large_draft_lora: str = ""
    draft_shift: float = 5.0
    large_draft_shift: float = 5.0

    def is_large(self, model: str) -> bool:
        """True for checkpoints whose id contains `large_marker` (e.g. Wan 14B)."""
        return bool(self.large_marker) and self.large_marker.lower() in model.lower()

    def size_for(self, model: str) -> tuple[int, int]:
        """(width, height) in pixels for checkpoint `model`."""
        if self.large_size and self.is_large(model):
            return self.large_size
        return self.default_size

    def draft_for(self, model: str) -> tuple[str, float]:
        """The default draft LoRA spec(s) and sampler shift for checkpoint `model` ('' if none)."""
        if self.is_large(model) and self.large_draft_lora:
            return self.large_draft_lora, self.large_draft_shift
        return self.draft_lora, self.draft_shift


# Draft LoRAs (public, step- and CFG-distilled; 4 steps, guidance 1.0). Each fits one base only.
SELF_FORCING_1_3B = (
    "Kijai/WanVideo_comfy/LoRAs/Wan2_1_self_forcing_1_3B/Wan2_1_self_forcing_dmd_1_3B_lora_rank_32_fp16.safetensors"
)
LIGHTX2V_14B = (
    "lightx2v/Wan2.1-T2V-14B-StepDistill-CfgDistill-Lightx2v/loras/"
    "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank64.safetensors"
)
LIGHTX2V_A14B = (
    "lightx2v/Wan2.2-Distill-Loras/wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step_1217.safetensors,"
    "lightx2v/Wan2.2-Distill-Loras/wan2.2_t2v_A14b_low_noise_lora_rank64_lightx2v_4step_1217.safetensors"
)

_WAN21_SPEC = RenderSpec(native_fps=16.0, frame_multiple=4, frame_offset=1, max_seconds=81 / 16)

WAN = ModelFamily(
    name="wan",
    pipeline_class="WanPipeline",
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    # 81 frames (4k+1) at 16 fps = 5.06 s is what Wan 2.1 was trained on.
    spec=_WAN21_SPEC,
    default_size=(832, 480),
    large_size=(1280, 720),  # the 14B checkpoint is made for 720p
    large_marker="14B",
    max_sequence_length=512,
    vae_fp32=True,
    draft_lora=SELF_FORCING_1_3B,
    draft_shift=8.0,
    large_draft_lora=LIGHTX2V_14B,
    large_draft_shift=5.0,
)

WAN22_TI2V = ModelFamily(
    name="wan2.2-ti2v",
    pipeline_class="WanPipeline",  # expand_timesteps=True, Wan 2.2 VAE (16x spatial, 48 channels)
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    # 121 frames (4k+1) at 24 fps = 5.04 s, 1280x704 (720p rounded to the 32-pixel grid).
    spec=RenderSpec(native_fps=24.0, frame_multiple=4, frame_offset=1, max_seconds=121 / 24),
    default_size=(1280, 704),
    size_multiple=32,  # VAE 16 x patch 2
    max_sequence_length=512,
    vae_fp32=True,
)

WAN22_A14B = ModelFamily(
    name="wan2.2-a14b",
    pipeline_class="WanPipeline",  # transformer + transformer_2, boundary_ratio 0.875
    vae_class="AutoencoderKLWan",
    default_model="Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    spec=_WAN21_SPEC,
    default_size=(1280, 720),
    max_sequence_length=512,
    vae_fp32=True,
    experts=2,
    draft_lora=LIGHTX2V_A14B,
    draft_shift=5.0,
)

# Wan 2.1 with VACE blocks beside its own: the same sizes, and the base model's draft LoRAs apply
# to the base blocks.
WAN_VACE = replace(
    WAN,
    name="wan-vace",
    pipeline_class="WanVACEPipeline",
    default_model="Wan-AI/Wan2.1-VACE-1.3B-diffusers",
    reference=True,
)

MOCHI = ModelFamily(
    name="mochi",
    pipeline_class="MochiPipeline",
    vae_class="AutoencoderKLMochi",
    default_model="genmo/mochi-1-preview",
    # 163 frames (6k+1) at 30 fps = 5.43 s.
    spec=RenderSpec(native_fps=30.0, frame_multiple=6, frame_offset=1, max_seconds=163 / 30),
    default_size=(848, 480),
    max_sequence_length=256,
    vae_fp32=False,
)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (WAN, WAN22_TI2V, WAN22_A14B, WAN_VACE, MOCHI)}
# render.backend -> the families it may mean (the first is its default).
BACKEND_FAMILIES: dict[str, tuple[ModelFamily, ...]] = {
    "wan": (WAN, WAN22_TI2V, WAN22_A14B, WAN_VACE),
    "mochi": (MOCHI,),
}


def family_for(backend: str) -> ModelFamily:
    """The default family of render backend `backend` (``wan`` or ``mochi``), or a family by name.

    Raises
    ------
    ValueError
        Neither a backend nor a family name.
    """
    if backend in BACKEND_FAMILIES:
        return BACKEND_FAMILIES[backend][0]
    try:
        return FAMILIES[backend]
    except KeyError:
        raise ValueError(f"no text-to-video family '{backend}' (known: {', '.join(FAMILIES)})") from None


def _family_from_index(index: dict) -> ModelFamily | None:
    cls = index.get("_class_name", "")
    if cls == "WanVACEPipeline":
        return WAN_VACE
    if cls == "MochiPipeline":
        return MOCHI
    if cls == "WanPipeline":
        second = index.get("transformer_2")
        if isinstance(second, list) and second[0] is not None:
            return WAN22_A14B
        if index.get("expand_timesteps"):
            return WAN22_TI2V
        return WAN
    return None


def _family_from_name(model: str) -> ModelFamily | None:
    low = model.lower()
    for marker, family in (("vace", WAN_VACE), ("ti2v", WAN22_TI2V), ("a14b", WAN22_A14B), ("mochi", MOCHI)):
        if marker in low:
            return family
    return None


def detect_family(backend: str, model: str = "", folder: Path | None = None) -> ModelFamily:
    """Which family checkpoint `model` of render backend `backend` is.

    The pipeline folder's ``model_index.json`` decides (``WanVACEPipeline``; ``WanPipeline``
    with a ``transformer_2`` -> Wan 2.2 A14B, with ``expand_timesteps`` -> Wan 2.2 TI2V-5B; else
    Wan 2.1); without a folder, the id's name (``VACE``, ``TI2V``, ``A14B``); else the backend's
    default family.

    Parameters
    ----------
    backend : str
        ``wan`` or ``mochi`` (or a family name).
    model : str
        Checkpoint id or folder ('' = the backend's default).
    folder : pathlib.Path, optional
        The resolved pipeline folder; default: `model` when it is an existing folder.

    Returns
    -------
    ModelFamily

    Raises
    ------
    ValueError
        The checkpoint belongs to another backend's family, or the backend is unknown.
    """
    default = family_for(backend)
    allowed = BACKEND_FAMILIES.get(backend, (default,))
    folder = folder if folder is not None else (Path(model).expanduser() if model else None)
    found = None
    if folder is not None and (folder / "model_index.json").is_file():
        found = _family_from_index(json.loads((folder / "model_index.json").read_text()))
    if found is None and model:
        found = _family_from_name(model)
    found = found or default
    if found not in allowed:
        raise ValueError(f"checkpoint {model!r} is a {found.name} pipeline, not one of backend '{backend}'")
    return found


def spec_for(backend: str, model: str = "") -> RenderSpec:
    """The planner's view of a backend (and checkpoint, by its name or folder), without loading it."""
    return detect_family(backend, model).spec


def resolve_pipeline_checkpoint(model: str, example_hub_id: str = "ORG/MODEL") -> Checkpoint:
    """Find a diffusers pipeline folder (``model_index.json``) or hub id locally; never downloads.

    `example_hub_id` (the backend's usual checkpoint) is what the message for a folder that is
    missing, or not a pipeline, tells the user to download into it.

    Raises
    ------
    MissingCheckpointError
        With the download command.
    """

    def check_pipeline_folder(model_id: str, folder: Path, hint: str) -> None:
        if not (folder / "model_index.json").is_file():
            raise MissingCheckpointError(
                model_id,
                f"download one into it with: hf download {example_hub_id} --local-dir {folder}",
                problem=f"the folder {folder} has no model_index.json (not a diffusers pipeline)",
            )

    return resolve_checkpoint(model, check=check_pipeline_folder, example_hub_id=example_hub_id)
