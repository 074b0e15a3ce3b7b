"""Session fixtures for pipeline 2: a tiny audio-language model and a real vLLM server for it.

Registered as a pytest plugin (``_PLUGINS`` in conftest.py).

- `tiny_lalm_dir`: a randomly initialised Qwen3-Omni thinker - the architecture of the default
  model, ``Qwen/Qwen3-Omni-30B-A3B-Instruct`` (``Qwen3OmniMoeForConditionalGeneration``) - shrunk
  to a 2-layer MoE text model of width 128, a 1-layer audio encoder and a 1-layer vision tower,
  with a byte-level BPE tokenizer trained here and the real repo's processor layout. Built
  offline with ``save_pretrained`` in about 2 s (1.3 MB): no weights are downloaded, ever. The
  audio encoder keeps the real window settings, so a second of audio is 13 tokens, as on the
  real model. ``TESTS_LALM_ARCH=audioflamingo3`` builds and serves a tiny
  AudioFlamingo3 instead (the architecture of ``nvidia/music-flamingo-hf``; 25 tokens a second).
- `lalm_server`: vLLM's OpenAI-compatible server (``.venv-vllm``, CPU build) serving that model on
  127.0.0.1; yields the base URL including ``/v1``. Qwen3-Omni goes through
  ``scripts/vllm_serve_audio.py``, whose two shims stand in for the torchvision the CPU test
  environment lacks (see that file; a GPU server needs neither). Started once per session
  (60-120 s on 2 busy cores), in the background as the session begins, as is the text LLM server
  of tests/llm_fixtures.py that pipeline 2's ``scene_writer=llm`` uses (conftest.py).

When ``.venv-vllm`` is missing the server tests are skipped with the command that fixes it,
except under CI (env var ``CI`` set), where that is a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.llm_fixtures import VLLM_NICENESS, models_answer, skip_without_vllm, vllm_available
from tests.support import VLLM_CPU_ENV, StartedServer, build_once, free_port, launch, run_once

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
SERVED_MODEL_NAME = "tiny-audio-lm"
ARCH = os.environ.get("TESTS_LALM_ARCH", "qwen3_omni")
# Folder names matched by prompts/lalm_models.toml through the server's `root`: the tests check
# that the table row of the real model applies to its tiny twin.
MODEL_FOLDER = {"qwen3_omni": "tiny-qwen3-omni", "audioflamingo3": "tiny-audio-flamingo-3"}[ARCH]
TOKENS_PER_SECOND = {"qwen3_omni": 13, "audioflamingo3": 25}[ARCH]
# The longest request carries 600 s of audio (the table's limit for both): 13 x 600 + 2 = 7,802
# tokens for Qwen3-Omni, 15,000 for AF3, plus the prompt and the answer. vLLM on CPU defaults to
# --max-num-batched-tokens 2048, which (as the encoder cache size) refuses Qwen3-Omni audio over
# ~157 s with a misleading message: it must be at least the longest clip's tokens.
MAX_MODEL_LEN = {"qwen3_omni": 9216, "audioflamingo3": 16384}[ARCH]
SERVER_START_TIMEOUT_S = 360

# --- the tiny model -------------------------------------------------------------------------------

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
]
# Named tokens Qwen3OmniMoeProcessor reads as tokenizer attributes (tokenizer.audio_token, ...).
QWEN_NAMED_TOKENS = {
    "audio_token": "<|audio_pad|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}
AF3_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>", "<think>", "</think>"]
MAX_POSITION = 32768


def chat_template(audio_placeholder: str) -> str:
    """ChatML as in Qwen's template, for string and list contents.

    vLLM puts Qwen3-Omni's placeholder (``<|audio_start|><|audio_pad|><|audio_end|>``) into string
    contents itself; AudioFlamingo3 has none in vLLM, so there the template writes ``<sound>``
    where the audio part is.
    """
    return (
        "{%- for message in messages -%}"
        "<|im_start|>{{ message['role'] }}\n"
        "{%- if message['content'] is string -%}"
        "{{ message['content'] }}"
        "{%- else -%}"
        "{%- for part in message['content'] -%}"
        "{%- if part['type'] in ('audio', 'input_audio', 'audio_url') -%}"
        + audio_placeholder
        + "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- endif -%}"
        "<|im_end|>\n"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
    )


def _corpus() -> list[str]:
    """Text to train the BPE merges on: pipeline 2's prompt files and a few music sentences."""
    files = [ROOT / "prompts" / "lalm_story.toml", ROOT / "prompts" / "lalm_scenes.txt"]
    lines = [line for path in files for line in path.read_text().splitlines() if line.strip()]
    return lines + [
        "The song opens with a fiddle and a bodhran, then a tin whistle joins at 0:15.",
        '{"characters": "a red fox", "scenes": [{"description": "The fox walks."}]}',
        "BEGIN SCRIPT SCENE 1: A red fox runs through a snowy forest at dawn. END SCRIPT",
        "0123456789 ,.;:!? () [] {} \"' - _ / + = * # @ % & < >",
    ]


def _train_tokenizer(special_tokens: list[str], named_tokens: dict[str, str], template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=768,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(named_tokens),
        model_max_length=MAX_POSITION,
    )
    tokenizer.chat_template = template
    # transformers 5 can hand back a near-empty tokenizer without raising; check this one.
    assert len(tokenizer) >= 256 + len(special_tokens), len(tokenizer)
    assert tokenizer.decode(tokenizer.encode("A fox, 120 bpm!")) == "A fox, 120 bpm!"
    for name, token in named_tokens.items():
        assert getattr(tokenizer, name) == token, name
    return tokenizer


def _fix_weight_names(path: Path) -> dict[str, str]:
    """Rename doubled prefixes that transformers 5 writes for composite models and vLLM refuses.

    AudioFlamingo3 is saved as ``language_model.model.model.*``; vLLM expects one ``.model.``.
    Returns {old: new}.
    """
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    renames, fixed = {}, {}
    for key, value in tensors.items():
        new = key
        for doubled, single in (
            ("language_model.model.model.", "language_model.model."),
            ("thinker.model.model.", "thinker.model."),
        ):
            if new.startswith(doubled):
                new = single + new[len(doubled) :]
        if new != key:
            renames[key] = new
        fixed[new] = value
    if renames:
        save_file(fixed, path, metadata={"format": "pt"})
    return renames


def build_tiny_qwen3_omni(out: Path) -> Path:
    """A tiny random Qwen3-Omni (thinker only, no talker) in the real repo's layout."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3OmniMoeConfig,
        Qwen3OmniMoeForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    out.mkdir(parents=True, exist_ok=True)
    template = chat_template("<|audio_start|><|audio_pad|><|audio_end|>")
    tokenizer = _train_tokenizer(QWEN_SPECIAL_TOKENS, QWEN_NAMED_TOKENS, template)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        moe_intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 32: one vLLM's CPU attention backend supports
        num_key_value_heads=2,
        head_dim=32,
        num_experts=4,
        num_experts_per_tok=2,
        decoder_sparse_step=1,
        max_position_embeddings=MAX_POSITION,
        # M-RoPE sections (t, h, w) must sum to head_dim / 2 (the real model: [24, 20, 20] of 128).
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [6, 5, 5],
            "interleaved": True,
            "mrope_interleaved": True,
        },
        tie_word_embeddings=False,
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    audio_config = dict(
        num_mel_bins=128,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=128,
        d_model=64,
        output_dim=128,  # = the text model's hidden size
        downsample_hidden_size=16,
        # The real values: they decide how many tokens a second of audio becomes (13).
        n_window=50,
        n_window_infer=800,
        conv_chunksize=500,
        max_source_positions=1500,
    )
    vision_config = dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=128,
        num_position_embeddings=64,  # (image_size / patch_size) ** 2
        deepstack_visual_indexes=[0],
        # Read by vLLM's vision tower, which it builds even with images and videos disabled; the
        # real config.json has them, transformers' config class does not.
        image_size=128,
        apply_vit_abs_pos_embed=True,
    )
    thinker_config = dict(
        text_config=text_config,
        audio_config=audio_config,
        vision_config=vision_config,
        audio_token_id=ids["<|audio_pad|>"],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        audio_start_token_id=ids["<|audio_start|>"],
        audio_end_token_id=ids["<|audio_end|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        user_token_id=tokenizer.convert_tokens_to_ids(tokenizer.tokenize("user"))[0],
        position_id_per_seconds=13,  # the real checkpoint's value (transformers' default is 25)
        seconds_per_chunk=2,
    )
    config = Qwen3OmniMoeConfig(
        thinker_config=thinker_config,
        enable_audio_output=False,  # no talker / code2wav: vLLM serves the thinker only
        im_start_token_id=ids["<|im_start|>"],
        im_end_token_id=ids["<|im_end|>"],
    )
    config.architectures = ["Qwen3OmniMoeForConditionalGeneration"]
    torch.manual_seed(0)
    # bfloat16 is what vLLM's CPU backend runs anyway: no conversion at every server start.
    Qwen3OmniMoeForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(template)
    # As in the real repo: ONE preprocessor_config.json with the Whisper feature extractor
    # (128 mel bins, 16 kHz, hop 160, chunk_length 300) and the Qwen2-VL image processor.
    features = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=300, n_fft=400, return_attention_mask=True
    )
    images = Qwen2VLImageProcessor(
        patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=32 * 32, max_pixels=256 * 256
    )
    merged = {**images.to_dict(), **features.to_dict()}
    merged["image_processor_type"] = "Qwen2VLImageProcessor"
    merged["processor_class"] = "Qwen3OmniMoeProcessor"
    (out / "preprocessor_config.json").write_text(json.dumps(merged, indent=2, default=str))
    _fix_weight_names(out / "model.safetensors")
    return out


def build_tiny_audioflamingo3(out: Path) -> Path:
    """A tiny random AudioFlamingo3 (Whisper-style encoder + Qwen2 LM): 30 s windows, at most 20."""
    import torch
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        WhisperFeatureExtractor,
    )

    out.mkdir(parents=True, exist_ok=True)
    template = chat_template("<sound>")
    tokenizer = _train_tokenizer(AF3_SPECIAL_TOKENS, {}, template)
    config = AudioFlamingo3Config(
        audio_config=dict(
            num_mel_bins=128,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=128,
            hidden_size=64,
            max_source_positions=1500,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=MAX_POSITION,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        ),
        audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"),
    )
    config.architectures = ["AudioFlamingo3ForConditionalGeneration"]
    torch.manual_seed(0)
    AudioFlamingo3ForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(out)
    AudioFlamingo3Processor(
        feature_extractor=WhisperFeatureExtractor(
            feature_size=128,
            sampling_rate=16000,
            hop_length=160,
            chunk_length=30,
            n_fft=400,
            return_attention_mask=True,
        ),
        tokenizer=tokenizer,
        chat_template=template,
        audio_token="<sound>",
        max_audio_len=600,
    ).save_pretrained(out)
    _fix_weight_names(out / "model.safetensors")
    return out


@pytest.fixture(scope="session")
def tiny_lalm_dir(tmp_path_factory) -> Path:
    """The tiny audio-language model's folder (named so the model table matches its real twin)."""
    build = build_tiny_qwen3_omni if ARCH == "qwen3_omni" else build_tiny_audioflamingo3
    return build_once("lalm", lambda: tmp_path_factory.mktemp("lalm"), lambda folder: build(folder / MODEL_FOLDER))


# --- the server -----------------------------------------------------------------------------------


def serve_command(model_dir: Path, port: int) -> list[str]:
    """The `vllm serve` command line for the tiny model (the tests' and the benchmark's)."""
    launcher = ROOT / "scripts" / ("vllm_serve_audio.py" if ARCH == "qwen3_omni" else "vllm_serve.py")
    limits = {"audio": 1, "image": 0, "video": 0} if ARCH == "qwen3_omni" else {"audio": 1}
    return [
        str(VLLM_PYTHON),
        str(launcher),
        "serve",
        str(model_dir),
        "--served-model-name",
        SERVED_MODEL_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--max-num-batched-tokens",
        str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--limit-mm-per-prompt",
        json.dumps(limits),
        "--structured-outputs-config",
        json.dumps({"backend": "guidance", "disable_any_whitespace": True}),
    ]


@pytest.fixture(scope="session")
def lalm_process(request):
    """vLLM (CPU) serving `tiny_lalm_dir`, started and not waited for (None without ``.venv-vllm``)."""
    if not vllm_available():
        yield None
        return
    model_dir = request.getfixturevalue("tiny_lalm_dir")

    def start(folder: Path) -> StartedServer:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        env = {**os.environ, **VLLM_CPU_ENV}
        command = serve_command(model_dir, port)
        return launch("vLLM (audio)", command, env, folder / "server.log", base_url, models_answer, VLLM_NICENESS)

    with run_once("vllm-lalm", start, grace=30) as (server, _):
        yield server


@pytest.fixture(scope="session")
def lalm_server(lalm_process) -> str:
    """vLLM (CPU) serving `tiny_lalm_dir`, once it answers: ``http://127.0.0.1:PORT/v1``."""
    if lalm_process is None:
        skip_without_vllm()
    return lalm_process.wait(SERVER_START_TIMEOUT_S)
