"""Save a real-size Wan 2.1 T2V 1.3B pipeline with random weights, for end-to-end runs without downloads.

Transformer: Wan2.1-T2V-1.3B's config (1.42 B parameters, bf16); text encoder: the real-size
UMT5-XXL encoder (5.7 B parameters, bf16; ``--text-encoder small`` for a 2-layer stand-in of the
same width); VAE: Wan 2.1's (float32); scheduler: UniPC flow matching, shift 3.0 (Wan's); the
tokenizer is a Unigram tokenizer trained locally (tests/video_fixtures.py), so nothing is
downloaded. The folder is a diffusers pipeline (``save_pretrained``): point
``--render.model`` at it. Speed matches the real checkpoint; pictures are noise.

    python benchmarks/gpu/make_checkpoint.py /tmp/wan13-random            # on a GPU box: ~1 min
    python benchmarks/gpu/make_checkpoint.py /tmp/wan-tiny --tiny         # the test suite's tiny sizes
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


def make_checkpoint(folder: Path, tiny: bool = False, text_encoder: str = "xxl", device: str = "auto") -> dict:
    """Build the pipeline (on `device`; auto: CUDA when present) and save it to `folder`.

    Parameters
    ----------
    folder : pathlib.Path
        Where the diffusers pipeline is written (created).
    tiny : bool
        The test suite's tiny component sizes instead of the real ones.
    text_encoder : {"xxl", "small"}
        Real-size UMT5-XXL, or a 2-layer encoder of the same width.
    device : str
        Where the random weights are initialised (``auto``: cuda if available); saving is the same.

    Returns
    -------
    dict
        Parameters per component (billions), folder size (GB), build and save seconds.
    """
    import torch

    from benchmarks.gpu.wan_bench_lib import build_wan_pipeline, folder_gb

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    t0 = time.perf_counter()
    pipe = build_wan_pipeline(tiny, text_encoder, device=device)
    t1 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(folder)
    t2 = time.perf_counter()
    return {
        "folder": str(folder),
        "params_billion": {
            n: round(sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e9, 6)
            for n in ("transformer", "text_encoder", "vae")
        },
        "text_encoder": "tiny" if tiny else text_encoder,
        "folder_gb": round(folder_gb(folder), 3),
        "build_s": round(t1 - t0, 1),
        "save_s": round(t2 - t1, 1),
        "device": device,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_checkpoint.py FOLDER [--tiny] [--text-encoder xxl|small]``."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--tiny", action="store_true", help="the test suite's tiny sizes (CPU, seconds)")
    ap.add_argument("--text-encoder", choices=("xxl", "small"), default="xxl")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    print(json.dumps(make_checkpoint(args.folder, args.tiny, args.text_encoder, args.device), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
