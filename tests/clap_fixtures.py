"""Pytest plugin: tiny, randomly initialised CLAP checkpoints built offline.

Register with ``pytest_plugins = ["tests.clap_fixtures"]`` (or ``-p tests.clap_fixtures``).

`tiny_clap_dir` is a real transformers-format CLAP checkpoint directory - `ClapModel`,
`ClapFeatureExtractor` and a byte-level BPE `RobertaTokenizer` saved with `save_pretrained` -
so the backend runs exactly the code path it runs for ``laion/larger_clap_music``, only with
a model small enough for a CPU test (about 0.3 MB). Nothing is downloaded: the tokenizer is
trained here with the `tokenizers` package on the label vocabulary plus a short corpus.

Shapes are chosen so a 10 s window at 48 kHz fits the tiny audio encoder:
``hop_length=1920`` gives 251 mel frames (the encoder takes up to ``spec_size * 4 = 256``) of
``feature_size=16`` mel bins (``spec_size // 4``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY_MEL_BINS = 16
TINY_HOP = 1920

_CORPUS = """
The sound of a band playing loud music with drums, bass, guitars and vocals.
A quiet piano melody with soft strings in a calm and peaceful mood.
Electronic synths and a steady beat, glossy modern production, fast tempo.
An orchestral cinematic piece that builds tension toward an epic heroic climax.
Folk instruments, a fiddle and a flute, in a raw live-sounding recording.
It fades out slowly, then a sudden drop before the next section of the song.
"""

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4


def build_tiny_tokenizer(extra_texts: list[str] | None = None, vocab_size: int = 600):
    """A RoBERTa-style byte-level BPE tokenizer trained locally (no hub access).

    Special tokens get RoBERTa's ids (``<s>``=0, ``<pad>``=1, ``</s>``=2), matching
    `ClapTextConfig`'s defaults for ``bos/pad/eos_token_id``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    from soundsight.prompts import load_vocabulary

    texts = _CORPUS.strip().splitlines() + list(extra_texts or [])
    for category in load_vocabulary().categories:
        texts.extend(category.sentences())

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    model_state = json.loads(raw.model.__getstate__())
    vocab = model_state["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_state["merges"]]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    # transformers 5 can silently fall back to a 5-token vocabulary: make sure we did not.
    assert len(tokenizer) == len(vocab) > 300, len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<pad>") == 1
    return tokenizer


def build_tiny_clap(path: Path, *, fused: bool = False, seed: int = 0) -> Path:
    """Write a tiny random `ClapModel` + `ClapProcessor` to `path` with `save_pretrained`."""
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig

    tokenizer = build_tiny_tokenizer()
    text_config = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=130,
    )
    audio_config = ClapAudioConfig(
        spec_size=64,
        num_mel_bins=TINY_MEL_BINS,
        window_size=4,
        patch_size=2,
        patch_stride=2,
        patch_embeds_hidden_size=16,
        hidden_size=32,  # patch_embeds_hidden_size * 2 ** (len(depths) - 1)
        depths=[1, 1],
        num_attention_heads=[2, 2],
        num_hidden_layers=2,
        enable_fusion=fused,
        fusion_type=None,
    )
    config = ClapConfig(text_config=text_config, audio_config=audio_config, projection_dim=16)
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    feature_extractor = ClapFeatureExtractor(
        feature_size=TINY_MEL_BINS,
        sampling_rate=48_000,
        hop_length=TINY_HOP,
        max_length_s=10,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14_000,
        truncation="fusion" if fused else "rand_trunc",
        padding="repeatpad",
    )
    processor = ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> Path:
    """A tiny unfused CLAP checkpoint directory (same layout as ``laion/larger_clap_music``)."""
    return build_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap")


@pytest.fixture(scope="session")
def tiny_fused_clap_dir(tmp_path_factory) -> Path:
    """A tiny CLAP with feature fusion (same layout as ``laion/clap-htsat-fused``)."""
    return build_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap-fused", fused=True)
