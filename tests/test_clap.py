"""The CLAP backend on tiny random checkpoints built offline (tests/clap_fixtures.py).

Random weights make the labels meaningless; what is tested is the machinery: the schema,
exactly the vocabulary, determinism, batching, the text-embedding cache, long-segment
windows, checkpoint lookup and its error messages.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from soundsight.errors import MissingCheckpointError, SoundsightError  # noqa: E402
from soundsight.models import hub  # noqa: E402
from soundsight.models.analysis import clap as C  # noqa: E402
from soundsight.models.analysis import clap_model as M  # noqa: E402
from soundsight.models.analysis import embedding_cache as E  # noqa: E402
from soundsight.models.audio.decode import decode_audio  # noqa: E402
from soundsight.models.audio.segmenters import segment_random  # noqa: E402
from soundsight.models.audio.tiling import Cuts, segments_from_cuts  # noqa: E402
from soundsight.prompts import load_vocabulary  # noqa: E402
from soundsight.schemas import Analysis, Segment  # noqa: E402

SR = 22050
SONG = Path("/work/shared/music/celtic.ogg")
FPS = 24


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    if SONG.is_file():
        return decode_audio(SONG, SR)[: 30 * SR]  # 30 s keeps the suite fast
    rng = np.random.default_rng(0)  # a synthetic stand-in: tones + noise bursts
    t = np.arange(30 * SR) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def segments(song) -> list[Segment]:
    duration = len(song) / SR
    return segments_from_cuts(segment_random(duration, seed=3), duration, fps=FPS)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def clap_calls(monkeypatch) -> Counter:
    """What this test makes CLAP do, counted around the real calls (models stay loaded across tests, as in a worker).

    ``loads``: checkpoints read; ``audio_forward``, ``text_forward``: batches through the audio and
    text towers; ``text_cache_hits``: vocabulary embeddings found in memory or on disk.
    """
    from transformers import ClapModel

    calls: Counter = Counter()

    def counted(what, fn):
        def call(*args, **kwargs):
            calls[what] += 1
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(M, "_load", counted("loads", M._load))
    monkeypatch.setattr(ClapModel, "get_audio_features", counted("audio_forward", ClapModel.get_audio_features))
    monkeypatch.setattr(ClapModel, "get_text_features", counted("text_forward", ClapModel.get_text_features))
    cached_embeddings = C.cached_embeddings

    def cached(*args, **kwargs):
        embeddings, hit = cached_embeddings(*args, **kwargs)
        calls["text_cache_hits"] += hit
        return embeddings, hit

    monkeypatch.setattr(C, "cached_embeddings", cached)
    return calls


def _analyse(model_dir, song, segments, cache_dir, **kw) -> Analysis:
    analyser = C.ClapAnalyser(load_vocabulary(), str(model_dir), cache_dir=cache_dir, **kw)
    return analyser(song, SR, segments, 120.0, [])


def _distributions(analysis: Analysis) -> np.ndarray:
    rows = [list(label.distribution.values()) for label in [*analysis.track.values(), *analysis.visual.values()]]
    for seg in analysis.segments:
        rows.extend(list(label.distribution.values()) for label in seg.labels.values())
    return np.concatenate([np.asarray(r) for r in rows])


def test_fixture_tokenizer_is_real(tiny_clap_dir):
    clap = M.load_clap(str(tiny_clap_dir))
    assert len(clap.tokenizer) == clap.model.config.text_config.vocab_size == 600
    assert clap.tokenizer("Mood is Calm and peaceful")["input_ids"][0] == 0  # <s>


def test_schema_and_exact_vocabulary(tiny_clap_dir, song, segments, cache_dir):
    analysis = _analyse(tiny_clap_dir, song, segments, cache_dir)
    vocab = load_vocabulary()
    Analysis.model_validate_json(analysis.model_dump_json())  # round-trips as analysis.json
    assert analysis.backend == "clap"
    assert analysis.vocabulary_hash == vocab.content_hash
    assert analysis.backend_id.startswith("clap-v2:tiny-clap@sha256:") and analysis.backend_id.endswith(":float32")
    assert list(analysis.track) == [c.key for c in vocab.scope("track")]
    assert list(analysis.visual) == [c.key for c in vocab.scope("visual")]
    assert len(analysis.segments) == len(segments)
    assert [s.index for s in analysis.segments] == list(range(len(segments)))
    labelled = [(label, vocab[key]) for key, label in [*analysis.track.items(), *analysis.visual.items()]]
    for seg in analysis.segments:
        assert list(seg.labels) == [c.key for c in vocab.scope("segment")]
        labelled += [(label, vocab[key]) for key, label in seg.labels.items()]
    for label, category in labelled:
        assert label.category == category.key and label.name == category.name
        assert list(label.distribution) == list(category.options)
        assert label.label in category.options
        assert label.score == max(label.distribution.values())
        assert label.distribution[label.label] == label.score
        assert sum(label.distribution.values()) == pytest.approx(1.0, abs=1e-3)
    assert len(analysis.segment_descriptors) == len(segments)


def test_deterministic_and_model_loaded_once(tiny_clap_dir, song, segments, cache_dir, clap_calls):
    M.clear_clap_cache()
    first = _analyse(tiny_clap_dir, song, segments, cache_dir)
    second = _analyse(tiny_clap_dir, song, segments, cache_dir)
    assert first.model_dump() == second.model_dump()
    assert clap_calls["loads"] == 1


def test_batching_equals_one_by_one(tiny_clap_dir, song, segments, cache_dir, clap_calls):
    one = _analyse(tiny_clap_dir, song, segments, cache_dir, batch_size=1)
    audio_forwards_one = clap_calls["audio_forward"]
    four = _analyse(tiny_clap_dir, song, segments, cache_dir, batch_size=4)
    assert audio_forwards_one == len(segments)  # every segment <= 8 s: one window each
    assert clap_calls["audio_forward"] - audio_forwards_one == -(-len(segments) // 4)
    assert len(segments) > 4
    np.testing.assert_allclose(_distributions(one), _distributions(four), atol=2e-4)


def test_text_embeddings_cached_on_disk(tiny_clap_dir, song, segments, cache_dir, clap_calls):
    M.clear_clap_cache()  # a fresh worker: nothing in memory
    first = _analyse(tiny_clap_dir, song, segments, cache_dir)
    n_sentences = sum(len(c.options) for c in load_vocabulary().categories)
    assert clap_calls["text_forward"] == -(-n_sentences // C.TEXT_BATCH)
    files = list((cache_dir / "clap-text").glob("*.npy"))
    assert len(files) == 1 and np.load(files[0]).shape == (n_sentences, 16)

    M.clear_clap_cache()  # a new worker process: nothing in memory, the file is still there
    clap_calls.clear()
    second = _analyse(tiny_clap_dir, song, segments, cache_dir)
    assert clap_calls.get("text_forward", 0) == 0
    assert clap_calls["text_cache_hits"] == 1
    assert first.model_dump() == second.model_dump()

    third = _analyse(tiny_clap_dir, song, segments, cache_dir)  # same process: from memory
    assert clap_calls.get("text_forward", 0) == 0 and clap_calls["text_cache_hits"] == 2
    assert third.model_dump() == first.model_dump()


def test_cache_dir_from_environment(monkeypatch, tmp_path, tiny_clap_dir):
    monkeypatch.setenv("SOUNDSIGHT_CACHE_DIR", str(tmp_path / "env-cache"))
    clap = M.load_clap(str(tiny_clap_dir))
    path = E.embedding_cache_path("clap-text", clap.backend_id, C.vocabulary_sentences(load_vocabulary())[0])
    assert path.parent == tmp_path / "env-cache" / "clap-text"


def test_corrupt_text_cache_is_recomputed(tiny_clap_dir, cache_dir):
    M.clear_clap_cache()
    clap = M.load_clap(str(tiny_clap_dir))
    vocab = load_vocabulary()
    good = C.text_embeddings(clap, vocab, cache_dir)
    path = E.embedding_cache_path("clap-text", clap.backend_id, C.vocabulary_sentences(vocab)[0], cache_dir)
    path.write_bytes(b"not a numpy file")
    M.clear_clap_cache()
    clap = M.load_clap(str(tiny_clap_dir))
    np.testing.assert_allclose(C.text_embeddings(clap, vocab, cache_dir), good, atol=1e-6)
    assert np.load(path).shape == good.shape


def test_long_segments_are_windowed(tiny_clap_dir, song, cache_dir):
    # 0-18 s (two 9 s windows), 18-28 s (exactly one 10 s window), 28-30 s (one).
    duration = len(song) / SR
    long_segments = segments_from_cuts(Cuts([18.0, 28.0], ["random", "random", "end"]), duration, fps=FPS)
    analyser = C.ClapAnalyser(load_vocabulary(), str(tiny_clap_dir), cache_dir=cache_dir, batch_size=2)
    analysis = analyser(song, SR, long_segments, 120.0, [])
    assert [d["clap_windows"] for d in analysis.segment_descriptors] == [2.0, 1.0, 1.0]

    clap = M.load_clap(str(tiny_clap_dir))
    audio = C.resample(song, SR, clap.sample_rate)
    windows = C.plan_windows(
        [(s.start, s.end) for s in long_segments], len(audio), clap.sample_rate, clap.window_samples
    )
    assert [w.owner for w in windows] == [0, 0, 1, 2]
    assert all(w.length <= clap.window_samples for w in windows)
    assert windows[0].start == 0 and all(a.end == b.start for a, b in zip(windows, windows[1:]))
    assert windows[0].length == windows[1].length == 9 * clap.sample_rate
    assert windows[2].length == clap.window_samples

    # The first segment's embedding is the renormalised mean of its two windows'.
    each = C.embed_windows(clap, audio, windows, batch_size=4)
    expected = each[:2].astype(np.float64).mean(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(C.pool_windows(each, windows, 3)[0], expected, atol=1e-5)
    # The whole track pools every window, weighted by duration.
    weights = np.array([w.length for w in windows], float)
    track = (each * weights[:, None]).sum(axis=0)
    np.testing.assert_allclose(C.pool_windows(each, windows)[0], track / np.linalg.norm(track), atol=1e-5)


def test_plan_windows_edges():
    sr, win = 48_000, 480_000
    n = 100 * sr
    assert [w.length for w in C.plan_windows([(0.0, 20.0)], n, sr, win)] == [win, win]
    assert len(C.plan_windows([(0.0, 20.001)], n, sr, win)) == 3
    tiny = C.plan_windows([(50.0, 50.2)], n, sr, win)  # widened to 1 s around its centre
    assert len(tiny) == 1 and tiny[0].length == sr and tiny[0].start == int(50.1 * sr) - sr // 2
    end = C.plan_windows([(99.9, 100.5)], n, sr, win)  # clipped to the song
    assert end[0].end == n and end[0].length == sr


@pytest.mark.parametrize("fused", [False, True])
def test_log_mel_matches_feature_extractor(fused):
    from transformers import ClapFeatureExtractor

    fe = ClapFeatureExtractor(truncation="fusion" if fused else "rand_trunc")  # the real 64-bin, 10 s setup
    clap = M.LoadedClap(hub.Checkpoint("x", Path("."), "r", "local"), None, fe, None, "cpu", torch.float32)
    rng = np.random.default_rng(1)
    t = np.arange(480_000) / 48_000
    music = 0.4 * np.sin(2 * np.pi * 330 * t) * np.sin(2 * np.pi * 0.5 * t) + 0.02 * rng.standard_normal(t.size)
    for length in (480_000, 7 * 48_000 + 123):
        x = music[:length].astype(np.float32)
        reference = fe(x, sampling_rate=48_000, return_tensors="np")["input_features"][0]
        ours = C.log_mel_features(clap, torch.from_numpy(C.pad_window(x, 480_000))[None])[0].numpy()
        assert ours.shape == reference.shape == ((4 if fused else 1), 1001, 64)
        # float32 FFT vs the extractor's float64: equal to 0.01 dB (only the quietest bins differ at all)
        np.testing.assert_allclose(ours, reference, atol=1e-2)


def test_fused_checkpoint_is_batch_independent(tiny_fused_clap_dir, song, segments, cache_dir):
    one = _analyse(tiny_fused_clap_dir, song, segments[:5], cache_dir, batch_size=1)
    three = _analyse(tiny_fused_clap_dir, song, segments[:5], cache_dir, batch_size=3)
    np.testing.assert_allclose(_distributions(one), _distributions(three), atol=2e-4)


# ---- finding checkpoints --------------------------------------------------------------------


def test_missing_hub_checkpoint_message(clap_calls):
    model_id = "soundsight-tests/no-such-clap"
    assert M.clap_available(model_id) is False
    with pytest.raises(MissingCheckpointError) as err:
        C.ClapAnalyser(load_vocabulary(), model_id)
    message = str(err.value)
    assert model_id in message and f"hf download {model_id}" in message and "local directory" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no hub stack trace
    with pytest.raises(MissingCheckpointError, match="soundsight-tests/no-such-clap"):
        M.load_clap(model_id)
    assert clap_calls.get("loads", 0) == 0


def test_missing_local_directory_message(tmp_path):
    missing = str(tmp_path / "nowhere" / "clap")
    with pytest.raises(MissingCheckpointError, match="--local-dir"):
        M.resolve_clap_checkpoint(missing)
    assert not M.clap_available(missing)


def test_incomplete_checkpoint_is_missing(tiny_clap_dir, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_clap_dir / "config.json", partial)
    with pytest.raises(MissingCheckpointError, match="incomplete: missing weights"):
        M.resolve_clap_checkpoint(str(partial))


def test_original_pt_checkpoint_message(tmp_path):
    pt = tmp_path / "music_audioset_epoch_15_esc_90.14.pt"
    pt.write_bytes(b"\x80\x02 not really a checkpoint")
    folder = tmp_path / "laion_clap"
    folder.mkdir()
    shutil.copy(pt, folder)
    for target in (pt, folder, tmp_path / "absent.ckpt"):
        with pytest.raises(M.ClapCheckpointFormatError) as err:
            C.ClapAnalyser(load_vocabulary(), str(target))
        message = str(err.value)
        assert "original LAION-CLAP checkpoint" in message
        assert "laion/larger_clap_music" in message and "hf download" in message
        assert isinstance(err.value, SoundsightError)
        assert not M.clap_available(str(target))


def test_hub_cache_snapshot_revision(tiny_clap_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--laion--larger_clap_music"
    shutil.copytree(tiny_clap_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert M.clap_available("laion/larger_clap_music")
    checkpoint = M.resolve_clap_checkpoint("laion/larger_clap_music")
    assert checkpoint.source == "hub-cache" and checkpoint.revision == commit
    analyser = C.ClapAnalyser(load_vocabulary(), "laion/larger_clap_music", device="cpu")
    assert analyser.backend_id == f"clap-v2:laion/larger_clap_music@{commit}:float32"
    assert M.load_clap("laion/larger_clap_music", "cpu").backend_id == analyser.backend_id
    assert M.clap_backend_id("laion/larger_clap_music", device="cpu") == analyser.backend_id


def test_local_revision_is_a_content_hash(tiny_clap_dir, tmp_path):
    copy = shutil.copytree(tiny_clap_dir, tmp_path / "tiny-clap")
    original = M.resolve_clap_checkpoint(str(tiny_clap_dir))
    assert original.revision.startswith("sha256:")
    assert M.resolve_clap_checkpoint(str(copy)).revision == original.revision
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"logit_scale_init_value"', '"logit_scale_init_value" ', 1))
    assert M.resolve_clap_checkpoint(str(copy)).revision != original.revision


def test_device_and_dtype_resolution():
    assert hub.resolve_device("cpu") == "cpu"
    assert hub.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert hub.torch_dtype(None, "cpu") == torch.float32
    assert hub.torch_dtype("auto", "cuda") == torch.float16
    assert hub.torch_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError):
        hub.torch_dtype("float8", "cpu")


def test_fanned_out_batches_equal_one_call(tiny_clap_dir, song, segments, cache_dir):
    """The analysis stage's fan-out (embed batches on workers, label once) changes no number."""
    from soundsight.models.analysis.clap import ClapAnalyser, SegmentEmbeddings

    analyser = ClapAnalyser(load_vocabulary(), str(tiny_clap_dir), device="cpu", cache_dir=cache_dir, batch_size=4)
    whole = analyser(song, SR, segments, 120.0, [])
    halves = [analyser.embed_segments(song, SR, part) for part in (segments[:2], segments[2:])]
    via_json = [SegmentEmbeddings.from_json(json.loads(json.dumps(h.to_json()))) for h in halves]
    fanned = analyser.label(via_json[::-1], 120.0)
    assert np.allclose(_distributions(whole), _distributions(fanned), atol=2e-4)
    assert [s.index for s in fanned.segments] == [s.index for s in whole.segments]
