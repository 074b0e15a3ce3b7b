"""Pytest plugin: tiny, randomly initialised Wan 2.1 and Mochi pipelines built offline.

The component configs follow diffusers' own fast tests (tests/pipelines/wan/test_wan.py,
tests/pipelines/mochi/test_mochi.py); the hub's tiny T5 is replaced by a text encoder and a
Unigram tokenizer built here, so nothing is downloaded. Each pipeline is saved with
`save_pretrained` and the fixtures hand out the folder: the code under test loads it through
`from_pretrained`, the same path as a real checkpoint.

Register with ``pytest_plugins = ["tests.video_fixtures"]`` (or ``-p tests.video_fixtures``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_WORDS = [
    "a",
    "the",
    "of",
    "and",
    "in",
    "on",
    "with",
    "under",
    "over",
    "through",
    "into",
    "neon",
    "city",
    "night",
    "rain",
    "street",
    "light",
    "dark",
    "glow",
    "river",
    "forest",
    "mountain",
    "ocean",
    "wave",
    "fire",
    "smoke",
    "dust",
    "sky",
    "cloud",
    "sun",
    "moon",
    "star",
    "storm",
    "wind",
    "red",
    "blue",
    "green",
    "gold",
    "silver",
    "purple",
    "white",
    "black",
    "warm",
    "cold",
    "slow",
    "fast",
    "calm",
    "wild",
    "soft",
    "loud",
    "fox",
    "wolf",
    "bird",
    "girl",
    "boy",
    "dancer",
    "singer",
    "crowd",
    "car",
    "train",
    "boat",
    "window",
    "door",
    "mirror",
    "road",
    "bridge",
    "runs",
    "walks",
    "dances",
    "flies",
    "falls",
    "rises",
    "turns",
    "spins",
    "drifts",
    "shines",
    "burns",
    "breaks",
    "opens",
    "closes",
    "camera",
    "pan",
    "zoom",
    "close",
    "up",
    "wide",
    "shot",
    "cinematic",
    "film",
    "grain",
    "watercolor",
    "painting",
    "style",
    "dream",
    "blurry",
    "distorted",
    "faces",
    "extra",
    "limbs",
    "text",
    "watermark",
    "low",
    "quality",
    "flicker",
]


def t5_corpus(n: int = 400, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14))) for _ in range(n)]


def build_t5_tokenizer(vocab_size: int = 160, model_max_length: int = 512):
    """A T5-style (Unigram, Metaspace, '</s>' appended, '<pad>' = 0) fast tokenizer, trained here."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(t5_corpus(), trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )
    # transformers 5 can hand back a near-empty tokenizer instead of failing: check it is ours.
    assert len(fast) >= 50, len(fast)
    assert fast.pad_token_id == 0 and fast("neon city")["input_ids"][-1] == fast.eos_token_id
    return fast


def _t5_config_kwargs(tokenizer, d_model: int) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def _tiny_wan_transformer(cls_name: str = "WanTransformer3DModel", channels: int = 16, seed: int = 0, **extra):
    import diffusers
    import torch

    torch.manual_seed(seed)
    return getattr(diffusers, cls_name)(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=channels,
        out_channels=channels,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=extra.pop("num_layers", 2),
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        **extra,
    )


def _tiny_wan_parts(vae_kwargs: dict | None = None) -> dict:
    """Tokenizer, UMT5 text encoder and Wan VAE at diffusers' fast-test sizes (Wan 2.1's VAE by default)."""
    import torch
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = build_t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(**_t5_config_kwargs(tokenizer, 32))).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        **(
            vae_kwargs
            or dict(
                base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
            )
        )
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae}


def build_tiny_wan():
    """WanPipeline (Wan 2.1 layout) with diffusers' fast-test component sizes and a local UMT5 encoder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    return WanPipeline(
        **_tiny_wan_parts(), transformer=_tiny_wan_transformer(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0)
    )


def build_tiny_wan22_a14b():
    """Wan 2.2 A14B layout: two experts (``transformer`` high noise, ``transformer_2`` low noise), boundary 0.875."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    return WanPipeline(
        **_tiny_wan_parts(),
        transformer=_tiny_wan_transformer(seed=0),
        transformer_2=_tiny_wan_transformer(seed=1),
        boundary_ratio=0.875,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    )


def build_tiny_wan22_ti2v():
    """Wan 2.2 TI2V-5B layout: the Wan 2.2 VAE (16x spatial, 48 latent channels) and ``expand_timesteps``."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    vae = dict(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    return WanPipeline(
        **_tiny_wan_parts(vae),
        transformer=_tiny_wan_transformer(channels=48),
        expand_timesteps=True,
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0),
    )


def build_tiny_wan_vace():
    """WanVACEPipeline at diffusers' fast-test sizes (VACE blocks after layers 0 and 2 of 3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline

    transformer = _tiny_wan_transformer(
        "WanVACETransformer3DModel", num_layers=3, vace_layers=[0, 2], vace_in_channels=96
    )
    return WanVACEPipeline(
        **_tiny_wan_parts(), transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0)
    )


# diffusers' Wan module names -> the original (ComfyUI / lightx2v / Kijai) LoRA key names.
_WAN_LORA_NAMES = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}


def write_wan_lora(transformer, path: Path, rank: int = 4, seed: int = 0, zero: bool = False) -> Path:
    """A random LoRA for `transformer`'s blocks in the original Wan key format that public
    distill LoRAs use (``diffusion_model.blocks.N.self_attn.q.lora_down.weight``, ``lora_up``,
    ``alpha``), saved as safetensors: diffusers converts it on load, as it does real ones.
    `zero`: up-projections of zeros (a LoRA that changes nothing)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, mod in transformer.named_modules():
        if not name.startswith("blocks.") or not isinstance(mod, torch.nn.Linear):
            continue
        _, i, rest = name.split(".", 2)
        if rest not in _WAN_LORA_NAMES:
            continue
        key = f"diffusion_model.blocks.{i}.{_WAN_LORA_NAMES[rest]}"
        sd[f"{key}.lora_down.weight"] = torch.randn(rank, mod.in_features, generator=g) * 0.5
        up = torch.randn(mod.out_features, rank, generator=g) * 0.5
        sd[f"{key}.lora_up.weight"] = up * 0 if zero else up
        sd[f"{key}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_tiny_decoder(path: Path, config=None, seed: int = 0) -> Path:
    """A random TAEHV video decoder in the published file format: fp16 ``decoder.N.*`` tensors
    (``.safetensors`` or a pickled ``.pth`` state dict), loaded through the same code as the real
    files. `config`: a `TinyDecoderConfig` (default: taew2_1's published shape, 9.8 M parameters)."""
    import torch

    from soundsight.models.render.diffusion.tiny_decoder import TAE_CONFIGS, TinyVideoDecoder

    torch.manual_seed(seed)
    model = TinyVideoDecoder(config or TAE_CONFIGS["taew2_1"])
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def build_tiny_mochi():
    """MochiPipeline with diffusers' fast-test component sizes and a local T5 encoder."""
    import torch
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiPipeline, MochiTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_t5_tokenizer()
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(**_t5_config_kwargs(tokenizer, 32))).eval()
    torch.manual_seed(0)
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=32,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=16,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    return MochiPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )


def _save(pipe, folder: Path) -> Path:
    pipe.save_pretrained(folder)
    assert (folder / "model_index.json").is_file()
    return folder


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory) -> Path:
    """Folder holding a tiny random WanPipeline (save_pretrained layout, ~0.3 MB)."""
    return _save(build_tiny_wan(), tmp_path_factory.mktemp("tiny-wan") / "wan")


@pytest.fixture(scope="session")
def tiny_wan22_a14b_dir(tmp_path_factory) -> Path:
    """Folder holding a tiny random two-expert WanPipeline (Wan 2.2 A14B layout)."""
    return _save(build_tiny_wan22_a14b(), tmp_path_factory.mktemp("tiny-wan22-a14b") / "wan22-a14b")


@pytest.fixture(scope="session")
def tiny_wan22_ti2v_dir(tmp_path_factory) -> Path:
    """Folder holding a tiny random WanPipeline in the Wan 2.2 TI2V-5B layout."""
    return _save(build_tiny_wan22_ti2v(), tmp_path_factory.mktemp("tiny-wan22-ti2v") / "wan22-ti2v")


@pytest.fixture(scope="session")
def tiny_vace_dir(tmp_path_factory) -> Path:
    """Folder holding a tiny random WanVACEPipeline."""
    return _save(build_tiny_wan_vace(), tmp_path_factory.mktemp("tiny-vace") / "vace")


@pytest.fixture(scope="session")
def tiny_wan_lora(tmp_path_factory) -> Path:
    """A random rank-4 LoRA for the tiny Wan transformer, in the original Wan key format."""
    return write_wan_lora(_tiny_wan_transformer(), tmp_path_factory.mktemp("tiny-lora") / "draft_lora.safetensors")


@pytest.fixture(scope="session")
def tiny_wan_zero_lora(tmp_path_factory) -> Path:
    """The same LoRA with zero up-projections: fusing it changes nothing."""
    return write_wan_lora(
        _tiny_wan_transformer(), tmp_path_factory.mktemp("tiny-lora0") / "zero_lora.safetensors", zero=True
    )


@pytest.fixture(scope="session")
def tiny_wan_decoder(tmp_path_factory) -> Path:
    """A narrow random TAEHV decoder for Wan 2.1 latents (16 channels, widths 8), saved as taew2_1.safetensors."""
    from soundsight.models.render.diffusion.tiny_decoder import TinyDecoderConfig

    folder = tmp_path_factory.mktemp("tiny-decoder")
    return write_tiny_decoder(folder / "taew2_1.safetensors", TinyDecoderConfig(widths=(8, 8, 8, 8)))


@pytest.fixture(scope="session")
def tiny_mochi_dir(tmp_path_factory) -> Path:
    """Folder holding a tiny random MochiPipeline (save_pretrained layout)."""
    return _save(build_tiny_mochi(), tmp_path_factory.mktemp("tiny-mochi") / "mochi")
