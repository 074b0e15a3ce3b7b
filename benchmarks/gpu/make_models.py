"""Everything a draft end-to-end run needs, with random weights, built offline (no downloads).

1. A real-size Wan 2.1 T2V 1.3B pipeline with the real-size UMT5-XXL text encoder
   (`make_checkpoint`; 14.7 GB, ~35 s on an H200) -> ``FOLDER/wan13-random``.
2. A random rank-32 draft LoRA for that transformer in the public distill LoRAs' key format
   (tests/video_fixtures.write_wan_lora; the transformer is built on the meta device: only its layer
   shapes are needed) -> ``FOLDER/draft_lora.safetensors``.
3. A random real-size TAEHV decoder in the published taew2_1 file format
   (tests/video_fixtures.write_tiny_decoder; 9.8 M parameters, 19.7 MB in fp16) ->
   ``FOLDER/taew2_1.safetensors``.

Speed matches the real weights; pictures are noise. ``--tiny``: the test suite's sizes, on the CPU.

    python benchmarks/gpu/make_models.py /opt/models          # on a GPU box
    python benchmarks/gpu/make_models.py /tmp/models --tiny   # CPU smoke test of the same commands

Prints one JSON line of sizes and times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_models(folder: Path, tiny: bool = False) -> dict:
    """Write the checkpoint, the draft LoRA and the tiny decoder into `folder`; returns what was made."""
    import torch
    from diffusers import WanTransformer3DModel

    from benchmarks.gpu.make_checkpoint import make_checkpoint
    from benchmarks.gpu.wan_bench_lib import WAN_1_3B_TRANSFORMER, WAN_TINY_TRANSFORMER
    from soundsight.models.render.diffusion.tiny_decoder import TAE_CONFIGS, TinyDecoderConfig, load_tiny_decoder
    from tests.video_fixtures import write_tiny_decoder, write_wan_lora

    folder.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    model = folder / "wan13-random"
    if not (model / "model_index.json").is_file():
        report["checkpoint"] = make_checkpoint(model, tiny=tiny, text_encoder="xxl")
    t0 = time.perf_counter()
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**(WAN_TINY_TRANSFORMER if tiny else WAN_1_3B_TRANSFORMER))
    lora = write_wan_lora(transformer, folder / "draft_lora.safetensors", rank=4 if tiny else 32, seed=3)
    report["lora"] = {
        "path": str(lora),
        "mb": round(lora.stat().st_size / 1e6, 1),
        "s": round(time.perf_counter() - t0, 1),
    }
    config = TinyDecoderConfig(widths=(8, 8, 8, 8)) if tiny else TAE_CONFIGS["taew2_1"]
    decoder = write_tiny_decoder(folder / "taew2_1.safetensors", config, seed=5)
    load_tiny_decoder(decoder, latent_channels=16)  # the loader accepts what was written
    report["tiny_decoder"] = {"path": str(decoder), "mb": round(decoder.stat().st_size / 1e6, 1)}
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_models.py FOLDER [--tiny]``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--tiny", action="store_true", help="the test suite's sizes (CPU, seconds)")
    args = ap.parse_args(argv)
    print(json.dumps(make_models(args.folder, args.tiny)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
