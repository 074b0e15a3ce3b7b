"""One visual identity and the sung words, through the real flow.

The script stage writes bible.json; every scene prompt carries it; a user's edit of one scene of
script.json re-renders that scene alone, an edit of bible.json every scene; with
``identity = "reference"`` a reference image is drawn by the run's own (tiny, random) video model
and reaches every scene's key. A song with an .lrc beside it gets lyrics without any model; the
script follows the words, cuts may land on line starts and captions ride along as a subtitle track.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from soundsight.media import ffmpeg_exe
from soundsight.schemas import SceneScript, Segmentation, VisualBible
from tests.support import probe, render

pytestmark = pytest.mark.usefixtures("prefect_server")
SMALL = {"render": {"width": 64, "height": 36}}


@pytest.fixture(scope="module")
def song(music, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("songs") / "celtic_14s.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "20", "-t", "14", "-i", str(music / "celtic.ogg"), str(out)],
                   check=True)  # fmt: skip
    return out


def scene_prompts(run: Path) -> list[str]:
    return [s.description for s in SceneScript.model_validate_json((run / "script.json").read_text()).scenes]


def test_editing_one_scene_renders_that_scene_and_the_bible_renders_all(song, tmp_path):
    video, _ = render(song, tmp_path, **SMALL)
    run = video.parent
    bible = VisualBible.model_validate_json((run / "bible.json").read_text())
    assert all(c.description in p for p in scene_prompts(run) for c in bible.characters)
    n = len(scene_prompts(run))
    assert n == 3 and len(set(scene_prompts(run))) == n  # no two scenes alike

    script = json.loads((run / "script.json").read_text())
    script["scenes"][1]["description"] = "A lighthouse keeper rows across a silver bay at dusk."
    (run / "script.json").write_text(json.dumps(script))  # through the readable name, as an editor would
    _, states = render(song, tmp_path, **SMALL)
    rendered = sorted(k for k, v in states.items() if k.startswith("render-scene-") and v == "Completed")
    assert rendered == ["render-scene-001"] and states["script"] == "Cached", states
    assert "lighthouse keeper" in scene_prompts(run)[1]

    edited = bible.model_copy(update={"lighting": "cold blue moonlight"})
    (run / "bible.json").unlink()  # an editor that replaces the file instead of writing through the link
    (run / "bible.json").write_text(edited.model_dump_json(indent=2))
    _, states = render(song, tmp_path, **SMALL)
    rendered = sorted(k for k, v in states.items() if k.startswith("render-scene-") and v == "Completed")
    assert rendered == [f"render-scene-{i:03d}" for i in range(n)], states
    assert (run / "bible.json").is_symlink() and "cold blue moonlight" in (run / "bible.json").read_text()

    (run / "bible.json").write_text('{"not": "a bible"}')
    with pytest.raises(Exception, match="bible.json: your edit of bible.json cannot be used"):
        render(song, tmp_path, **SMALL)


def test_a_reference_image_is_drawn_once_and_keys_every_scene(song, tmp_path, tiny_vace_dir):
    groups = {"render": {"backend": "wan", "model": str(tiny_vace_dir), "identity": "reference", "model_width": 32,
                         "model_height": 32, "dtype": "float32", "device": "cpu", "steps": 2, "width": 64,
                         "height": 64}}  # fmt: skip
    video, states = render(song, tmp_path, **groups)
    run = video.parent
    assert states["reference"] == "Completed" and (run / "reference.png").is_file()
    from PIL import Image

    with Image.open(run / "reference.png") as im:
        assert im.size == (32, 32)
    clips = [json.loads(p.read_text()) for p in (tmp_path / ".cache" / "results").glob("render-v*")]
    assert len(clips) == 3
    shutil.copy(run / "reference.png", tmp_path / "mine.png")
    with Image.open(tmp_path / "mine.png") as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(run / "reference.png.tmp", format="PNG")
    (run / "reference.png").unlink()
    (run / "reference.png.tmp").rename(run / "reference.png")  # the user's own reference
    _, states = render(song, tmp_path, **groups)
    assert states["reference"] == "Cached"
    assert all(states[f"render-scene-{i:03d}"] == "Completed" for i in range(3)), states


def test_lyrics_beside_the_song_lead_the_script_cuts_and_captions(song, tmp_path, ffprobe):
    sung = tmp_path / "sung.wav"
    shutil.copy(song, sung)
    (tmp_path / "sung.lrc").write_text(
        "[ti:Harbour]\n[00:01.00]Lanterns on the water\n[00:05.30]Ropes and salt and morning\n[00:09.90]Home across the bay\n"
    )
    groups = {"render": {"width": 64, "height": 36, "captions": "soft"}, "segment": {"prefer_line_starts": True}}
    video, states = render(sung, tmp_path / "runs", **groups)
    run = video.parent
    lyrics = json.loads((run / "lyrics.json").read_text())
    assert lyrics["source"] == "lrc" and [line["text"] for line in lyrics["lines"]][0] == "Lanterns on the water"
    assert 'Sung here: "Lanterns on the water"' in (run / "prompt.txt").read_text()
    assert any('as the song sings "Ropes and salt and morning"' in p for p in scene_prompts(run))
    segmentation = Segmentation.model_validate_json((run / "segments.json").read_text())
    assert "lyric_line" in [s.reason for s in segmentation.segments]
    # The cut nearest a line start moved onto the beat nearest it (within the length bounds).
    assert any(abs(s.end - 5.3) < 0.3 for s in segmentation.segments if s.reason == "lyric_line"), segmentation
    kinds = sorted(s["codec_type"] for s in probe(ffprobe, video)["streams"])
    assert kinds == ["audio", "subtitle", "video"]
