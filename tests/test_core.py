"""Fast checks of the pure pieces: cache-key rules, prompt, script writer, frame rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from soundsight.cache import stage_key
from soundsight.models.base import RenderSpec, ScriptRequest
from soundsight.models.script.template import TemplateScriptWriter, acts_from_energy
from soundsight.prompts import load_vocabulary, script_prompt
from soundsight.schemas import Analysis, Label, Manifest, SegmentLabels
from soundsight.settings import RenderSettings, SegmentSettings, Settings


def manifest(hash_: str, run_dir: str = "/runs/a") -> Manifest:
    return Manifest(stage="load", run_dir=run_dir, files={"song": "song.json"}, hashes={"song": hash_})


def test_cache_key_ignores_paths_and_operational_settings_but_not_content():
    base = stage_key("render", 1, {"song": manifest("h1"), "settings": RenderSettings()})
    # The run folder's name is part of the key (outputs land there); where the runs folder lies is not.
    assert base == stage_key("render", 1, {"song": manifest("h1", "/moved/runs/a"), "settings": RenderSettings()})
    assert base != stage_key("render", 1, {"song": manifest("h1", "/runs/b"), "settings": RenderSettings()})
    assert base == stage_key(
        "render", 1, {"song": manifest("h1"), "settings": RenderSettings(dask_address="tcp://x:8786", device="cuda:1")}
    )
    assert base != stage_key("render", 1, {"song": manifest("h2"), "settings": RenderSettings()})
    assert base != stage_key("render", 1, {"song": manifest("h1"), "settings": RenderSettings(fps=25)})
    assert base != stage_key("render", 2, {"song": manifest("h1"), "settings": RenderSettings()})
    assert base != stage_key("render", 1, {"song": manifest("h1"), "settings": RenderSettings()}, identity="wan@abc")
    assert base != stage_key("assemble", 1, {"song": manifest("h1"), "settings": RenderSettings()})
    with pytest.raises(TypeError, match="path"):
        stage_key("load", 1, {"song": Path("/a/song.mp3")})


def test_settings_validate_and_read_env(monkeypatch):
    monkeypatch.setenv("SOUNDSIGHT_RENDER__FPS", "30")
    assert Settings().render.fps == 30
    with pytest.raises(ValueError):
        SegmentSettings(min_seconds=8, max_seconds=7)


def test_every_soundsight_variable_the_product_reads_is_a_setting_or_declared(monkeypatch):
    """Each ``SOUNDSIGHT_*`` name in the product's code is a setting or declared beside its reader."""
    import ast
    import re

    from soundsight.environment import _source_files, declared_variables
    from soundsight.settings import unknown_environment_variables

    read = {}
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and re.fullmatch(r"SOUNDSIGHT_[A-Z0-9_]+", str(node.value)):
                read.setdefault(node.value, path.name)
    # Those this checkout reads, at least (found where each is read).
    assert {"SOUNDSIGHT_MEDIA_URL", "SOUNDSIGHT_CACHE_DIR", "SOUNDSIGHT_POOL"} <= set(read) <= declared_variables()
    for name in list(os.environ):
        if name.startswith("SOUNDSIGHT_"):
            monkeypatch.delenv(name)
    for name in read:
        monkeypatch.setenv(name, "1")
    assert unknown_environment_variables() == [], read
    monkeypatch.setenv("SOUNDSIGHT_RENDER__FPSS", "30")  # a typo
    monkeypatch.setenv("SOUNDSIGHT_TEST_FAULT", "1")  # no exemption for test variables: the tests use their own names
    assert unknown_environment_variables() == ["SOUNDSIGHT_RENDER__FPSS", "SOUNDSIGHT_TEST_FAULT"]


def test_frame_rules():
    wan = RenderSpec(native_fps=16, frame_multiple=4, frame_offset=1, max_seconds=81 / 16)
    assert wan.frames_for(5.0) == 81 and wan.frames_for(5.1) == 85 and wan.frames_for(0.1) == 5
    mochi = RenderSpec(native_fps=30, frame_multiple=6, frame_offset=1)
    assert mochi.frames_for(5.4) == 163 and (mochi.frames_for(2.0) - 1) % 6 == 0
    assert RenderSpec(native_fps=24).frames_for(1.0) == 24


def fake_analysis(levels: list[int]) -> Analysis:
    """Labels chosen by hand - what any analysis backend would hand the writer."""
    vocab = load_vocabulary()

    def label(key: str, option: int) -> Label:
        c = vocab[key]
        return Label(
            category=key, name=c.name, label=c.options[option], score=1.0, distribution={o: 0.0 for o in c.options}
        )

    return Analysis(
        backend="hand",
        backend_id="hand",
        vocabulary_hash=vocab.content_hash,
        track={c.key: label(c.key, 0) for c in vocab.scope("track")},
        visual={c.key: label(c.key, 1) for c in vocab.scope("visual")},
        segments=[
            SegmentLabels(
                index=i,
                labels={
                    c.key: label(c.key, lv if c.key == "instrumental_intensity" else 0) for c in vocab.scope("segment")
                },
            )
            for i, lv in enumerate(levels)
        ],
    )


def test_template_writer_is_deterministic_with_one_recurring_character():
    analysis = fake_analysis([0, 1, 3, 3, 2, 0])
    request = ScriptRequest(prompt="", analysis=analysis, durations=[5.0] * 6, song_hash="abc")
    first, second = TemplateScriptWriter()(request), TemplateScriptWriter()(request)
    assert [s.description for s in first.scenes] == [s.description for s in second.scenes]
    assert len(first.scenes) == 6
    for scene in first.scenes:
        assert scene.description.lower().startswith(first.characters.lower())
        assert scene.description.count(". ") == 0 and scene.description.endswith(".")
    named = TemplateScriptWriter()(
        ScriptRequest(prompt="", analysis=analysis, durations=[5.0] * 6, characters="a tall woman in a red coat")
    )
    assert all("a tall woman in a red coat" in s.description.lower() for s in named.scenes)


def test_acts_put_the_middle_on_the_energy_peak():
    assert acts_from_energy([0, 0, 0, 1, 3, 3, 1, 0]) == ["beginning"] * 3 + ["middle"] * 4 + ["end"]
    assert acts_from_energy([1, 2, 3]) == ["beginning", "middle", "end"]


def test_prompt_is_the_papers_block_1():
    prompt = script_prompt(
        track_sentences=["Mood is Calm and peaceful"],
        segment_sentences=[["Rhythm is X"], ["Rhythm is Y"]],
        durations=[5.0, 6.25],
        visual_sentences=["Location is exterior"],
    )
    assert prompt.startswith("You need to think of a story and a script for a music video.")
    assert "There are 2 scenes in total." in prompt
    assert "Scene 2: Rhythm is Y. The scene will be 6.25 seconds long." in prompt
    assert 'add the words "BEGIN SCRIPT\\n"' in prompt
    assert "at least one animal character" in prompt


# ---------------------------------------------------------------------------------------------
# The feature analyser's mappers match the vocabulary by name, never by position.


def _features_labels(vocab):
    from soundsight.models.analysis.features import FeatureAnalyser

    segment = {
        "loudness_db": -12.0,
        "loudness_std_db": 3.0,
        "slope_db": 10.0,
        "fluctuations": 0.5,
        "tail_drop_db": 0.0,
        "onsets_per_s": 5.0,
        "centroid_hz": 2200.0,
        "flatness": 0.02,
        "percussive_share": 0.6,
        "low_share": 0.2,
        "beat_regularity": 0.9,
        "pulse": 1.2,
    }
    track = {
        "tempo_bpm": 150.0,
        "loudness_db": -12.0,
        "loudness_spread_db": 1.0,
        "loudness_trend_db": 0.0,
        "centroid_hz": 2500.0,
        "flatness": 0.02,
        "percussive_share": 0.6,
        "low_share": 0.2,
        "rolloff_hz": 11000.0,
        "crest_db": 12.0,
        "onsets_per_s": 5.0,
        "major_minus_minor": 0.1,
    }
    fa = FeatureAnalyser(vocab)
    labels = {
        "instrumental_intensity": fa._intensity(vocab["instrumental_intensity"], segment),
        "prominent_element": fa._element(vocab["prominent_element"], segment),
        "dynamic_shift": fa._dynamics(vocab["dynamic_shift"], segment),
        "rhythm": fa._rhythm(vocab["rhythm"], segment),
        "transition_function": fa._transition(vocab["transition_function"], segment, -14.0, -6.0),
        "instrumental_energy": fa._energy(vocab["instrumental_energy"], track),
        "instrumental_palette": fa._palette(vocab["instrumental_palette"], track),
        "tempo_range": fa._tempo(vocab["tempo_range"], track),
        "production_quality": fa._production(vocab["production_quality"], track),
        "mood": fa._mood(vocab["mood"], track),
    }
    labels.update(fa._visual({k: labels[k] for k in ("mood", "instrumental_palette")}, track))
    return labels


def test_feature_mappers_cover_every_category_and_follow_their_inputs():
    vocab = load_vocabulary()
    labels = _features_labels(vocab)
    assert set(labels) == {c.key for c in vocab.categories}
    for key, label in labels.items():
        assert list(label.distribution) == list(vocab[key].options)
        assert sum(label.distribution.values()) == pytest.approx(1.0, abs=1e-3)
    assert labels["tempo_range"].label == "Very fast (140+ BPM)"  # 150 BPM
    assert labels["instrumental_intensity"].label == "High energy and full instrumentation"  # -12 dBFS, 5 onsets/s
    assert labels["dynamic_shift"].label == "It gradually builds up"  # +10 dB across the segment


def test_feature_labels_do_not_depend_on_option_order():
    from dataclasses import replace

    from soundsight.prompts import Vocabulary

    vocab = load_vocabulary()
    reordered = Vocabulary(tuple(replace(c, options=c.options[::-1]) for c in vocab.categories), vocab.content_hash)
    original, flipped = _features_labels(vocab), _features_labels(reordered)
    assert {k: v.label for k, v in original.items()} == {k: v.label for k, v in flipped.items()}


def test_feature_scores_must_name_the_vocabularys_options():
    from dataclasses import replace

    from soundsight.models.analysis.features import label_from_scores

    tempo = load_vocabulary()["tempo_range"]
    renamed = replace(tempo, options=(*tempo.options[:-1], "Extremely fast"))
    with pytest.raises(ValueError, match="Extremely fast"):
        label_from_scores(renamed, {o: 1.0 for o in tempo.options})


# ---------------------------------------------------------------------------------------------
# Checkpoints, devices and dtypes: one set of rules for every backend.


def test_checkpoint_rules(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    from soundsight.errors import MissingCheckpointError
    from soundsight.models import hub

    assert not hub.looks_like_path("laion/larger_clap_music") and not hub.looks_like_path("gpt2")
    assert hub.looks_like_path("./ckpt") and hub.looks_like_path("~/models/x") and hub.looks_like_path("a/b/c")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = hub.resolve_checkpoint(str(folder))
    assert first.source == "local" and first.revision.startswith("sha256:") and len(first.revision) == 7 + 64
    assert first.name == "ckpt"  # backend ids show the folder's name, not where it lies
    (folder / "config.json").write_text('{"changed": true}')
    assert hub.resolve_checkpoint(str(folder)).revision != first.revision
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingCheckpointError, match="hf download org/model"):
        hub.resolve_checkpoint("org/model")
    with pytest.raises(MissingCheckpointError, match="no such folder"):
        hub.resolve_checkpoint(str(tmp_path / "missing" / "x"))


def test_device_and_dtype_rules():
    torch = pytest.importorskip("torch")
    from soundsight.models import hub

    assert hub.resolve_device("cpu") == "cpu" and hub.resolve_device("cuda:1") == "cuda:1"
    assert hub.torch_dtype("auto", "cpu") == torch.float32 and hub.torch_dtype(None, "cuda:0") == torch.float16
    assert hub.torch_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="float8"):
        hub.torch_dtype("float8")


# ---------------------------------------------------------------------------------------------
# The one H.264 encoder.


def test_frame_encoder_writes_exact_frames_atomically(tmp_path):
    import subprocess

    import numpy as np

    from soundsight.media import FrameEncoder, ffmpeg_exe

    out = tmp_path / "clip.mp4"
    with FrameEncoder(out, width=32, height=16, fps=12, frames=7) as encoder:
        for i in range(7):
            encoder.write(np.full((16, 32, 3), i * 30, np.uint8))
    raw = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
    ).stdout
    assert len(raw) == 7 * 16 * 32
    with (
        pytest.raises(RuntimeError, match="ffmpeg failed"),
        FrameEncoder(
            tmp_path / "bad.mp4",
            width=31,
            height=15,
            fps=12,
            frames=2,  # odd sizes: H.264 4:2:0 refuses them
        ) as encoder,
    ):
        encoder.write(np.zeros((15, 31, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # nothing half-written left behind


def test_video_frames_are_counted_from_packets(tmp_path):
    # The assemble stage's length check. It once parsed -progress's frame=, which ffmpeg 7.0 (the
    # imageio-ffmpeg 0.6.0 build a GPU box had) omits for a copied stream: every assemble failed there.
    import subprocess

    from soundsight.media import count_video_frames, ffmpeg_exe

    video = tmp_path / "clip.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=24", "-frames:v", "37",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )  # fmt: skip
    assert count_video_frames(video) == 37
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(RuntimeError, match="cannot count the frames"):
        count_video_frames(tmp_path / "junk.mp4")
