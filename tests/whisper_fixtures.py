"""Pytest plugin: a tiny, randomly initialised Whisper built offline and converted to CTranslate2, and sung test signals.

Register with ``pytest_plugins = ["tests.whisper_fixtures"]`` (or ``-p tests.whisper_fixtures``).

`tiny_whisper_dir` is a real transformers-format Whisper folder laid out like
``openai/whisper-large-v3-turbo`` - `WhisperForConditionalGeneration` (d_model 64, 2+2 layers,
4 heads, 128 mel bins: about 0.5 M parameters, 2 MB), `WhisperFeatureExtractor(128)`, a
`WhisperTokenizer` trained here with the `tokenizers` package and a ``generation_config.json``.
`tiny_whisper_ct2` is that folder converted by the product's own `convert_whisper` (ctranslate2's
``TransformersConverter``, offline), so the lyrics stage loads it through faster-whisper exactly as
it loads ``Systran/faster-whisper-*`` or the packaged tiny.en. Random weights transcribe nonsense,
and faster-whisper's guards drop most of it: tests check loading, languages and structure with it,
never words. Real words come from the packaged tiny.en, which the suite runs too.

What the checkpoint needs (and why):

- the tokenizer's special tokens in Whisper's order: ``<|endoftext|>``, ``<|startoftranscript|>``,
  the 100 language tokens in `LANGUAGES` order (a language id is ``sot + 1 + index``),
  ``<|translate|>``, ``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``, ``<|nospeech|>``,
  ``<|notimestamps|>``; then ``<|0.00|>`` ... ``<|30.00|>`` as *non-special* added tokens;
- an empty token ``""`` in the text vocabulary, as multilingual Whisper vocabularies have:
  CTranslate2 calls a Whisper without it English-only (no language detection, no language);
- ``max_source_positions=1500`` and 30 s feature chunks (time precision 30 / 1500 = 0.02 s, and the
  encoder accepts only 3000 mel frames);
- generation-config fields: ``no_timestamps_token_id`` (timestamps), ``alignment_heads`` (word
  times), ``lang_to_id`` / ``task_to_id`` / ``is_multilingual`` (language and task),
  ``max_initial_timestamp_index``, the suppress lists (the converter copies them into CTranslate2's
  ``config.json``).

`make_sung_mix` speaks known lines with espeak-ng over a shared instrumental track at known offsets.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

D_MODEL = 64
LAYERS = 2
HEADS = 4
MEL_BINS = 128
TEXT_VOCAB = 1000

_CORPUS = """
I walked along the river in the morning light
and the wind was singing softly through the trees
hold me closer tonight, don't let me go
we were young and we were running through the rain
every heart has a song that it cannot say
the city lights are shining on the water
I will follow you down to the end of the road
oh oh oh yeah, la la la, na na na
dancing in the dark until the break of day
one more time, one more night, one more chance
remember me when the summer comes again
""".strip().splitlines()

# Non-speech symbols OpenAI's decoder suppresses (whisper/tokenizer.py `non_speech_tokens`).
_NON_SPEECH = [*'"#()*+/:;<=>@[\\]^_`{|}~', "<<", ">>", "--", "♪", "♫"]


def special_token_names() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    controls = ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    return ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{c}|>" for c in LANGUAGES), *controls, "<|notimestamps|>"]


def timestamp_token_names() -> list[str]:
    return [f"<|{i * 0.02:.2f}|>" for i in range(1501)]


def _corpus(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = " ".join(_CORPUS).split()
    lines = list(_CORPUS) + [" " + line for line in _CORPUS]  # Whisper's text starts with a space
    lines += [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]
    return lines + [" ".join(w.capitalize() for w in line.split()) + "." for line in _CORPUS]


def build_tiny_tokenizer():
    """A Whisper-layout tokenizer: byte-level BPE trained here + Whisper's specials + timestamps."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import WhisperTokenizer

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TEXT_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(raw.model.__getstate__())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    n_text = len(state["vocab"])
    # Multilingual Whisper vocabularies hold an empty token, and CTranslate2 (>= 4.7) tells a
    # multilingual Whisper from an English-only one by it: the last merge's token becomes "".
    last = next(t for t, i in state["vocab"].items() if i == n_text - 1)
    assert "".join(merges[-1]) == last, "the last token is not the last merge's"
    state["vocab"] = {("" if t == last else t): i for t, i in state["vocab"].items()}
    merges = merges[:-1]
    tok = WhisperTokenizer(vocab=state["vocab"], merges=merges, model_max_length=448)
    specials = special_token_names()
    # <|endoftext|> is added by the constructor, right after the text vocabulary.
    tok.add_special_tokens(
        {"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in specials[1:]]}
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in timestamp_token_names()])
    ids = tok.convert_tokens_to_ids(specials)
    assert ids == list(range(n_text, n_text + len(specials))), "special tokens are not contiguous"
    assert tok.convert_tokens_to_ids("<|0.00|>") == ids[-1] + 1
    assert len(tok) == n_text + len(specials) + 1501, len(tok)
    # transformers 5 can silently hand back a near-empty tokenizer: check a round trip.
    assert tok.decode(tok(" hold me closer", add_special_tokens=False)["input_ids"]) == " hold me closer"
    return tok


def generation_config_dict(tok) -> dict:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    cid = tok.convert_tokens_to_ids
    eot = cid("<|endoftext|>")
    suppress = {cid(t) for t in ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>")}
    for symbol in _NON_SPEECH:
        for text in (symbol, " " + symbol):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                suppress.add(ids[0])
    return {
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "decoder_start_token_id": cid("<|startoftranscript|>"),
        "prev_sot_token_id": cid("<|startofprev|>"),
        "no_timestamps_token_id": cid("<|notimestamps|>"),
        "max_initial_timestamp_index": 50,
        "max_length": 448,
        "is_multilingual": True,
        "return_timestamps": False,
        # word times (DTW) read these cross-attention heads: the upper half of the decoder, like turbo's
        "alignment_heads": [[layer, head] for layer in range(LAYERS // 2, LAYERS) for head in range(HEADS)],
        "forced_decoder_ids": [[1, None], [2, cid("<|transcribe|>")]],
        "task_to_id": {"translate": cid("<|translate|>"), "transcribe": cid("<|transcribe|>")},
        "lang_to_id": {f"<|{code}|>": cid(f"<|{code}|>") for code in LANGUAGES},
        "begin_suppress_tokens": [cid("Ġ"), eot],
        "suppress_tokens": sorted(suppress),
    }


def build_tiny_whisper(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Whisper checkpoint (model, processor, generation config) with `save_pretrained`."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer()
    gen = generation_config_dict(tok)
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=MEL_BINS,
        d_model=D_MODEL,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=2 * D_MODEL,
        decoder_ffn_dim=2 * D_MODEL,
        max_source_positions=1500,  # must stay: 30 s / 1500 = 0.02 s per timestamp step
        max_target_positions=448,
        pad_token_id=gen["pad_token_id"],
        bos_token_id=gen["bos_token_id"],
        eos_token_id=gen["eos_token_id"],
        decoder_start_token_id=gen["decoder_start_token_id"],
        median_filter_width=7,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(**gen)
    extractor = WhisperFeatureExtractor(
        feature_size=MEL_BINS, sampling_rate=16_000, hop_length=160, chunk_length=30, n_fft=400
    )
    model.save_pretrained(out)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tok).save_pretrained(out)
    saved = json.loads((out / "generation_config.json").read_text())
    missing = [k for k in ("alignment_heads", "no_timestamps_token_id", "lang_to_id", "task_to_id") if k not in saved]
    assert not missing, f"save_pretrained dropped {missing}"
    return out


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    """A tiny random Whisper checkpoint folder (same layout as ``openai/whisper-large-v3-turbo``)."""
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny-whisper")


@pytest.fixture(scope="session")
def tiny_whisper_ct2(tiny_whisper_dir, tmp_path_factory) -> Path:
    """`tiny_whisper_dir` converted to CTranslate2 by the product's `convert_whisper` (offline, ~1 s)."""
    from soundsight.models.lyrics.whisper import convert_whisper

    return convert_whisper(tiny_whisper_dir, tmp_path_factory.mktemp("whisper-ct2") / "tiny-whisper-ct2")


# ------------------------------------------------------------------------------------- sung signal

SUNG_LINES = [
    "hold me closer tonight",
    "the city lights are shining on the water",
    "we were young and we were running through the rain",
    "remember me when the summer comes again",
]
SUNG_OFFSETS = [6.0, 12.0, 20.0, 28.0]  # seconds into the excerpt
SUNG_BED = ("feelings.ogg", 30.0, 36.0)  # shared track, excerpt start and length (seconds)


def speak(text: str, sr: int) -> np.ndarray:
    """espeak-ng -> mono float32 at `sr`, leading and trailing silence trimmed (-50 dBFS)."""
    import librosa
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed (apt-get install -y espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(
            [exe, "-v", "en-us", "-s", "130", "-p", "60", "-w", str(wav), text], check=True, capture_output=True
        )
        y, rate = sf.read(wav, dtype="float32", always_2d=True)
    y = librosa.resample(y.mean(axis=1), orig_sr=rate, target_sr=sr)
    voiced = np.flatnonzero(np.abs(y) > 10 ** (-50 / 20))
    return y[voiced[0] : voiced[-1] + 1] if voiced.size else y


def make_sung_mix(music: Path, out: Path, *, sr: int = 22_050, snr_db: float = 0.0) -> dict:
    """Speak `SUNG_LINES` over an excerpt of `music` at `SUNG_OFFSETS`; write ``out`` (WAV).

    The voice's level over its active parts is `snr_db` above the music's over the same parts.
    Returns each line's text and its true start and end (seconds).
    """
    import librosa
    import soundfile as sf

    name, start, length = SUNG_BED
    rate = sf.info(str(music / name)).samplerate
    bed, _ = sf.read(music / name, dtype="float32", start=int(start * rate), frames=int(length * rate), always_2d=True)
    bed = librosa.resample(bed.mean(axis=1), orig_sr=rate, target_sr=sr)[: int(length * sr)]
    voice = np.zeros_like(bed)
    truth = []
    for text, t0 in zip(SUNG_LINES, SUNG_OFFSETS):
        s = speak(text, sr)
        i0 = int(round(t0 * sr))
        i1 = min(len(voice), i0 + len(s))
        voice[i0:i1] += s[: i1 - i0]
        truth.append({"text": text, "start": round(i0 / sr, 3), "end": round(i1 / sr, 3)})
    active = voice != 0
    rms = lambda x: float(np.sqrt(np.mean(np.square(x)) + 1e-12))  # noqa: E731
    mix = bed + voice * (10 ** (snr_db / 20) * rms(bed[active]) / rms(voice[active]))
    mix *= min(1.0, 0.99 / float(np.max(np.abs(mix))))
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, mix.astype(np.float32), sr, subtype="FLOAT")
    return {"duration": len(mix) / sr, "lines": truth}
