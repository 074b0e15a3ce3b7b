"""Fast checks of the pure pieces: cache-key rules, prompt, script writer, frame rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.base import RenderSpec, ScriptRequest
from models.script_writer import TemplateScriptWriter, acts_from_energy
from prompts import load_vocabulary, script_prompt
from soundsight.cache import stage_key
from soundsight.schemas import Analysis, Label, Manifest, SegmentLabels
from soundsight.settings import RenderSettings, SegmentSettings, Settings


def manifest(hash_: str, run_dir: str = "/runs/a") -> Manifest:
    return Manifest(stage="load", run_dir=run_dir, files={"song": "song.json"}, hashes={"song": hash_})


def test_cache_key_ignores_paths_and_operational_settings_but_not_content():
    base = stage_key("render", 1, {"song": manifest("h1"), "settings": RenderSettings()})
    assert base == stage_key("render", 1, {"song": manifest("h1", "/elsewhere"), "settings": RenderSettings()})
    assert base == stage_key("render", 1, {"song": manifest("h1"), "settings": RenderSettings(dask_address="tcp://x:8786", fail_scene=3)})
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
        return Label(category=key, name=c.name, label=c.options[option], score=1.0, distribution={o: 0.0 for o in c.options})

    return Analysis(
        backend="hand", backend_id="hand", vocabulary_hash=vocab.content_hash,
        track={c.key: label(c.key, 0) for c in vocab.scope("track")},
        visual={c.key: label(c.key, 1) for c in vocab.scope("visual")},
        segments=[SegmentLabels(index=i, labels={c.key: label(c.key, lv if c.key == "instrumental_intensity" else 0)
                                                 for c in vocab.scope("segment")}) for i, lv in enumerate(levels)],
    )  # fmt: skip


def test_template_writer_is_deterministic_with_one_recurring_character():
    analysis = fake_analysis([0, 1, 3, 3, 2, 0])
    request = ScriptRequest(prompt="", analysis=analysis, durations=[5.0] * 6, song_hash="abc")
    first, second = TemplateScriptWriter()(request), TemplateScriptWriter()(request)
    assert [s.description for s in first.scenes] == [s.description for s in second.scenes]
    assert len(first.scenes) == 6
    for scene in first.scenes:
        assert scene.description.lower().startswith(first.characters.lower())
        assert scene.description.count(". ") == 0 and scene.description.endswith(".")
    named = TemplateScriptWriter()(ScriptRequest(prompt="", analysis=analysis, durations=[5.0] * 6,
                                                 characters="a tall woman in a red coat"))
    assert all("a tall woman in a red coat" in s.description.lower() for s in named.scenes)


def test_acts_put_the_middle_on_the_energy_peak():
    assert acts_from_energy([0, 0, 0, 1, 3, 3, 1, 0]) == ["beginning"] * 3 + ["middle"] * 4 + ["end"]
    assert acts_from_energy([1, 2, 3]) == ["beginning", "middle", "end"]


def test_prompt_is_the_papers_block_1():
    prompt = script_prompt(track_sentences=["Mood is Calm and peaceful"], segment_sentences=[["Rhythm is X"], ["Rhythm is Y"]],
                           durations=[5.0, 6.25], visual_sentences=["Location is exterior"])
    assert prompt.startswith("You need to think of a story and a script for a music video.")
    assert "There are 2 scenes in total." in prompt
    assert "Scene 2: Rhythm is Y. The scene will be 6.25 seconds long." in prompt
    assert 'add the words "BEGIN SCRIPT\\n"' in prompt
    assert "at least one animal character" in prompt
