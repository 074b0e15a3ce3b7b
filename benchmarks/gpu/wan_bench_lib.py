"""Pieces of benchmarks/video_throughput.py that Dask workers must import by name.

Real-size Wan2.1-T2V-1.3B component configs (random weights: no checkpoint can be downloaded
here), the --tiny stand-ins (the test suite's sizes) and the pipeline builder.
"""

from __future__ import annotations

from pathlib import Path

# Wan2.1-T2V-1.3B transformer (Wan-AI/Wan2.1-T2V-1.3B-Diffusers, transformer/config.json).
WAN_1_3B_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
# The test suite's tiny Wan transformer (tests/video_fixtures.py), for --tiny smoke runs on the CPU
# (tests/test_copies.py checks that the sizes stay the suite's).
WAN_TINY_TRANSFORMER = dict(WAN_1_3B_TRANSFORMER, num_attention_heads=2, attention_head_dim=12, num_layers=2)
WAN_TINY_TRANSFORMER.update(text_dim=32, ffn_dim=32, rope_max_seq_len=32)
# Wan2.1-T2V-14B; Wan 2.2 T2V-A14B has two transformers of exactly this config (high- and
# low-noise experts), so its per-forward time is this model's (diffusers scripts/convert_wan_to_diffusers.py).
WAN_14B_TRANSFORMER = dict(WAN_1_3B_TRANSFORMER, num_attention_heads=40, ffn_dim=13824, num_layers=40)
# Wan 2.2 TI2V-5B: 48 latent channels (Wan 2.2 VAE), 24 heads, 30 layers.
WAN22_5B_TRANSFORMER = dict(
    WAN_1_3B_TRANSFORMER, num_attention_heads=24, ffn_dim=14336, in_channels=48, out_channels=48
)
# Wan 2.1 VACE 1.3B: the 1.3B transformer plus VACE blocks after every second layer.
WAN_VACE_1_3B_TRANSFORMER = dict(
    WAN_1_3B_TRANSFORMER, vace_layers=[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28], vace_in_channels=96
)
# Wan 2.2 VAE (TI2V-5B): 16x spatial, 4x temporal, 48 latent channels (latent mean/std: any, for timing).
WAN22_VAE = dict(
    base_dim=160,
    decoder_base_dim=256,
    z_dim=48,
    is_residual=True,
    in_channels=12,
    out_channels=12,
    patch_size=2,
    scale_factor_spatial=16,
    scale_factor_temporal=4,
    latents_mean=[0.0] * 48,
    latents_std=[1.0] * 48,
)
# UMT5-XXL encoder as Wan ships it (5.7B parameters, 11.4 GB in bf16).
UMT5_XXL = dict(
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    vocab_size=256384,
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
)
# The stand-in used unless --text-encoder xxl: same width (text_dim 4096), 2 layers, the tokenizer's vocab.
UMT5_SMALL = {k: v for k, v in UMT5_XXL.items() if k != "vocab_size"} | dict(d_kv=128, num_layers=2, num_heads=32)

# The test suite's tiny Mochi transformer, for --tiny smoke runs on the CPU.
# Copied from tests.video_fixtures.build_tiny_mochi (the MochiTransformer3DModel arguments)
MOCHI_TINY_TRANSFORMER = dict(
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


def build_wan_pipeline(tiny: bool, text_encoder: str = "small", device: str = "cpu"):
    """A WanPipeline with random weights: real Wan2.1-1.3B sizes, or the test suite's tiny ones."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from tests.video_fixtures import build_t5_tokenizer, build_tiny_wan

    if tiny:
        return build_tiny_wan()
    tokenizer = build_t5_tokenizer()
    te_cfg = dict(UMT5_XXL if text_encoder == "xxl" else UMT5_SMALL)
    te_cfg.setdefault("vocab_size", len(tokenizer))
    te_cfg.update(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        dropout_rate=0.0,
    )
    torch.manual_seed(0)
    with torch.device(device):
        text_encoder_m = UMT5EncoderModel(UMT5Config(**te_cfg)).to(torch.bfloat16).eval()
        transformer = WanTransformer3DModel(**WAN_1_3B_TRANSFORMER).to(torch.bfloat16)
        vae = AutoencoderKLWan()  # the default config is Wan 2.1's VAE
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder_m, vae=vae, transformer=transformer, scheduler=scheduler
    )


def folder_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e9
