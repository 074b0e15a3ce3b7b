#!/usr/bin/env python
"""CLAP analysis throughput: a whole song, batched windows vs one window per forward pass.

Builds a model of ``laion/larger_clap_music``'s exact shape (values below, copied from the
hub's config.json and preprocessor_config.json; nothing is downloaded) with random weights and
runs soundsight's own CLAP code (`models/clap.py`: windowing, torch log-mel, batched audio
forward passes, pooling, zero-shot softmax) on a 4-minute song cut into ~40 segments of 4-7 s.

Needs only torch, transformers (its `tokenizers` dependency) and numpy: no librosa, soundfile,
pydantic or prefect. The song is decoded with an ``ffmpeg`` executable when one is found (else
4 minutes of synthetic audio are used) and resampled to 48 kHz with librosa's ``soxr_hq`` when
librosa is importable, else with an FFT resampler in numpy (the output says which).

    python benchmarks/clap_throughput.py                 # CUDA (if present) and CPU, full
    python benchmarks/clap_throughput.py --quick         # CPU smoke run: 3 segments, 1 repeat
    python benchmarks/clap_throughput.py --devices cuda --dtypes float16,float32 --json out.json

Reference: "32 ten-second segments embed in 12.3 ms on one H100; 64 labels' text embeddings
in 9.4 ms" (shared/notes/offline-models.md, random weights, bf16/fp16 unstated).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from soundsight.models import hub  # noqa: E402
from soundsight.models.analysis import clap as C  # noqa: E402
from soundsight.models.analysis import clap_model as M  # noqa: E402
from soundsight.prompts import load_vocabulary  # noqa: E402  (stdlib only)

SONG = REPO.parent / "shared" / "music" / "urban_bolero.ogg"
PIPELINE_SR = 22050  # Hz: the rate soundsight decodes songs at for analysis
REFERENCE_H100 = {"audio_32x10s_ms": 12.3, "text_64_labels_ms": 9.4}

# laion/larger_clap_music config.json (HTSAT-base audio tower, RoBERTa-base text tower).
LARGER_CLAP_MUSIC = {
    "audio_config": {"depths": [2, 2, 12, 2], "hidden_size": 1024, "patch_embeds_hidden_size": 128},
    "text_config": {},  # transformers' ClapTextConfig defaults = RoBERTa-base: 12 layers, hidden 768, vocab 50265
    "projection_dim": 512,
    "projection_hidden_act": "relu",
    "logit_scale_init_value": 14.285714285714285,
}
# laion/larger_clap_music preprocessor_config.json.
FEATURE_EXTRACTOR = {
    "feature_size": 64,
    "sampling_rate": 48_000,
    "hop_length": 480,
    "max_length_s": 10,
    "fft_window_size": 1024,
    "frequency_min": 50,
    "frequency_max": 14_000,
    "truncation": "rand_trunc",
    "padding": "repeatpad",
}


# ---- inputs -----------------------------------------------------------------------------------


def find_ffmpeg() -> str | None:
    found = shutil.which("ffmpeg")
    if found:
        return found
    if importlib.util.find_spec("imageio_ffmpeg"):
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    return None


def load_song(path: Path, sr: int) -> tuple[np.ndarray, str]:
    """Mono float32 at `sr` Hz: the song through ffmpeg, or 229 s of synthetic music."""
    ffmpeg = find_ffmpeg()
    if ffmpeg and path.is_file():
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"]
        pcm = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, dtype="<f4").copy()
        return pcm, f"{path.name} via ffmpeg"
    rng = np.random.default_rng(0)
    t = np.arange(int(229 * sr)) / sr
    chords = sum(np.sin(2 * np.pi * f * t) for f in (196.0, 246.9, 293.7)) * 0.1
    kick = np.exp(-((t * 2.0) % 1.0) * 30) * np.sin(2 * np.pi * 60 * t)
    pcm = chords * (1 + 0.5 * np.sin(2 * np.pi * t / 30)) + 0.5 * kick + 0.02 * rng.standard_normal(t.size)
    return pcm.astype(np.float32), "229 s synthetic (no ffmpeg or song file)"


def _smooth(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT lengths)."""
    best, p2 = None, 1
    while p2 < 2 * n:
        p3 = p2
        while p3 < 2 * n:
            p5 = p3
            while p5 < n:
                p5 *= 5
            best = p5 if best is None or p5 < best else best
            p3 *= 3
        p2 *= 2
    return best


def fft_resample(y: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling by zero-padding the spectrum (numpy only).

    The input is zero-padded to ``down * smooth`` samples so both FFT lengths factor into
    small primes (an FFT of a 229 s song's raw length can take seconds), then trimmed.
    """
    g = np.gcd(sr, target_sr)
    up, down = target_sr // g, sr // g
    n_out = int(round(len(y) * target_sr / sr))
    k = _smooth(-(-len(y) // down))
    spectrum = np.fft.rfft(y.astype(np.float64), n=down * k)
    padded = np.zeros(up * k // 2 + 1, dtype=np.complex128)
    keep = min(len(spectrum), len(padded))
    padded[:keep] = spectrum[:keep]
    return (np.fft.irfft(padded, up * k)[:n_out] * (up / down)).astype(np.float32)


def resampler():
    if importlib.util.find_spec("librosa") and importlib.util.find_spec("soxr"):
        return C.resample, "librosa soxr_hq (as the pipeline)"
    return fft_resample, "numpy FFT (librosa not installed; the pipeline uses soxr_hq)"


def random_spans(duration: float, seed: int = 0, lo: float = 4.0, hi: float = 7.0) -> list[tuple[float, float]]:
    """Segments of lo..hi seconds tiling [0, duration] (the paper's random mode, 4-7 s)."""
    rng = np.random.default_rng(seed)
    cuts, t = [0.0], 0.0
    while duration - t > hi:
        t = min(t + rng.uniform(lo, hi), duration - lo)
        cuts.append(t)
    cuts.append(duration)
    return list(zip(cuts[:-1], cuts[1:]))


def build_tokenizer(sentences: list[str]):
    """A byte-level BPE RoBERTa tokenizer trained here on the label sentences (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(sentences, trainer=trainer)
    state = json.loads(raw.model.__getstate__())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = RobertaTokenizer(vocab=state["vocab"], merges=merges)
    assert len(tokenizer) > 200, "tokenizer fell back to a stub vocabulary"
    return tokenizer


def build_clap(device: str, dtype: torch.dtype, tokenizer) -> M.LoadedClap:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    config = ClapConfig(**LARGER_CLAP_MUSIC)
    torch.manual_seed(0)
    model = ClapModel(config).to(device=device, dtype=dtype).eval()
    checkpoint = hub.Checkpoint("laion/larger_clap_music (shape only)", Path("."), "random-init", "memory")
    return M.LoadedClap(checkpoint, model, ClapFeatureExtractor(**FEATURE_EXTRACTOR), tokenizer, device, dtype)


# ---- measurement ------------------------------------------------------------------------------


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn, device: str, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn()`, milliseconds (CUDA synchronised around each run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def analyse(clap: M.LoadedClap, audio: np.ndarray, spans, text: np.ndarray, rows, batch_size: int):
    """The model part of `ClapAnalyser.__call__` (text embeddings cached): windows -> labels."""
    windows = C.plan_windows(spans, len(audio), clap.sample_rate, clap.window_samples)
    embeddings = C.embed_windows(clap, audio, windows, batch_size)
    segments = C.pool_windows(embeddings, windows, n_groups=len(spans))
    track = C.pool_windows(embeddings, windows)
    C.category_distributions(segments, text, rows, clap.logit_scale)
    C.category_distributions(track, text, rows, clap.logit_scale)
    return len(windows)


def run_device(device, dtype, args, audio48, spans, sentences, rows, tokenizer) -> dict:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    clap = build_clap(device, dtype, tokenizer)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in clap.model.parameters())
    reps = args.repeats
    result = {
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "params_M": round(n_params / 1e6, 1),
        "build_s": round(build_s, 1),
        "batch_size": args.batch_size,
    }
    if device.startswith("cuda"):
        result["device_name"] = torch.cuda.get_device_name(device)

    # Text: the vocabulary once (cached on disk in real runs), and 64 labels for the reference.
    text = C._embed_sentences(clap, sentences)
    result["text_all_ms"] = round(timed(lambda: C._embed_sentences(clap, sentences), device, reps), 2)
    result["text_sentences"] = len(sentences)
    result["text_64_ms"] = round(timed(lambda: C._embed_sentences(clap, sentences[:64]), device, reps), 2)

    # Reference shape: N ten-second windows in one batch (N = 32; fewer in --quick).
    n_ref = args.reference_windows
    win = clap.window_samples
    ref_windows = [C.Window(i, i * win, (i + 1) * win) for i in range(min(n_ref, len(audio48) // win))]
    waves = torch.from_numpy(np.stack([audio48[w.start : w.end] for w in ref_windows])).to(device)
    with torch.inference_mode():
        features = C.log_mel_features(clap, waves).to(dtype)
    is_longer = torch.zeros((len(ref_windows), 1), dtype=torch.bool, device=device)

    def forward_only():
        with torch.inference_mode():
            clap.model.get_audio_features(input_features=features, is_longer=is_longer)

    result["ref_windows"] = len(ref_windows)
    result["ref_forward_ms"] = round(timed(forward_only, device, reps), 2)
    result["ref_mel_plus_forward_ms"] = round(
        timed(lambda: C.embed_windows(clap, audio48, ref_windows, len(ref_windows)), device, reps), 2
    )

    # The whole song: every segment, batched vs one window per forward pass.
    n_windows = analyse(clap, audio48, spans, text, rows, args.batch_size)
    result["segments"] = len(spans)
    result["windows"] = n_windows
    result["song_batched_ms"] = round(
        timed(lambda: analyse(clap, audio48, spans, text, rows, args.batch_size), device, reps), 1
    )
    result["song_one_by_one_ms"] = round(timed(lambda: analyse(clap, audio48, spans, text, rows, 1), device, reps), 1)
    result["ratio_batched_over_one_by_one"] = round(result["song_batched_ms"] / result["song_one_by_one_ms"], 3)
    if device.startswith("cuda"):
        result["peak_gpu_mem_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: 3 segments, 2 reference windows, 1 repeat")
    parser.add_argument("--devices", default="", help="comma list (default: cuda if present, and cpu)")
    parser.add_argument(
        "--dtypes", default="auto", help="comma list of auto|float32|float16|bfloat16 (auto: fp16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="windows per forward pass (analysis.clap_batch_size)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-windows", type=int, default=32)
    parser.add_argument("--segments", type=int, default=0, help="use only the first N segments (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--song", type=Path, default=SONG)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.reference_windows, args.segments = 1, 2, args.segments or 3
        args.batch_size = min(args.batch_size, 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d] or (["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"])
    if args.quick and not args.devices:
        devices = ["cpu"]

    import transformers

    y, source = load_song(args.song, PIPELINE_SR)
    resample, how = resampler()
    resample(y[:PIPELINE_SR], PIPELINE_SR, 48_000)  # warm: imports, filter design
    t0 = time.perf_counter()
    audio48 = resample(y, PIPELINE_SR, 48_000)
    resample_ms = (time.perf_counter() - t0) * 1e3
    spans = random_spans(len(y) / PIPELINE_SR)
    if args.segments:
        spans = spans[: args.segments]
    vocabulary = load_vocabulary()
    sentences, rows = C.vocabulary_sentences(vocabulary)
    tokenizer = build_tokenizer(sentences)
    processor_ms = None
    if not args.quick:  # what the torch log-mel replaces: transformers' numpy ClapFeatureExtractor
        from transformers import ClapFeatureExtractor

        fe = ClapFeatureExtractor(**FEATURE_EXTRACTOR)
        sample = [audio48[i * 480_000 : (i + 1) * 480_000] for i in range(8)]
        t0 = time.perf_counter()
        fe(sample, sampling_rate=48_000, return_tensors="np")
        processor_ms = (time.perf_counter() - t0) * 1e3 / len(sample)

    header = {
        "song": source,
        "duration_s": round(len(y) / PIPELINE_SR, 1),
        "segments_total": len(random_spans(len(y) / PIPELINE_SR)),
        "resample": how,
        "resample_ms": round(resample_ms, 1),
        "numpy_feature_extractor_ms_per_10s_window": None if processor_ms is None else round(processor_ms, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "model": "laion/larger_clap_music shape (audio HTSAT-base depths [2,2,12,2], patch_embeds_hidden_size 128, "
        "hidden 1024, no fusion; text RoBERTa-base = ClapTextConfig defaults; projection 512), random weights",
        "tokenizer": f"byte-level BPE trained on the {len(sentences)} label sentences ({len(tokenizer)} tokens; "
        "RoBERTa's real 50265-token BPE gives similar lengths)",
        "reference_h100": REFERENCE_H100,
    }
    print(json.dumps(header, indent=1))
    results = []
    for device in devices:
        for name in args.dtypes.split(","):
            dtype = hub.torch_dtype(name, device)
            print(f"\n== {device} {dtype} ==", flush=True)
            r = run_device(device, dtype, args, audio48, spans, sentences, rows, tokenizer)
            results.append(r)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()  # the model went out of scope with run_device
            print(json.dumps(r, indent=1), flush=True)

    print(
        "\nsummary (ms; song = windows -> labels for every segment, text cached; + resample "
        f"{resample_ms:.0f} ms once on the CPU)"
    )
    print(
        f"{'device':<8}{'dtype':<10}{'song batched':>14}{'one-by-one':>12}{'ratio':>8}"
        f"{'ref N x 10 s fwd':>18}{'(mel+fwd)':>11}{'text 64':>9}"
    )
    for r in results:
        print(
            f"{r['device']:<8}{r['dtype']:<10}{r['song_batched_ms']:>14.1f}{r['song_one_by_one_ms']:>12.1f}"
            f"{r['ratio_batched_over_one_by_one']:>8.3f}{r['ref_forward_ms']:>13.2f} (N={r['ref_windows']})"
            f"{r['ref_mel_plus_forward_ms']:>10.2f}{r['text_64_ms']:>9.2f}"
        )
    print(
        f"reference (H100): 32 x 10 s audio embeddings {REFERENCE_H100['audio_32x10s_ms']} ms, "
        f"64 text labels {REFERENCE_H100['text_64_labels_ms']} ms"
    )
    if args.json:
        args.json.write_text(json.dumps({"header": header, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
