"""What a user reads is whole: the README's deploy steps, the UI form's descriptions, error and
warning lines, the title card and the burned-in captions (issue #30, cases 10 and 11)."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def strings(value) -> list[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


# --- the deployment's form ---------------------------------------------------------------------------


@pytest.mark.robustness(
    what="the UI's run form of render-song",
    outcome="every description whole (no <...> for the UI to drop); song and settings described",
)
def test_the_form_shows_every_description_whole():
    """The UI renders descriptions as markup: "<slug>" or "SOUNDSIGHT_<GROUP>__<FIELD>" lose their text."""
    from prefect.utilities.callables import parameter_schema

    from soundsight.flows.catalogue import render_catalogue
    from soundsight.flows.music_video import render_song
    from soundsight.settings import Settings

    texts = strings(Settings.model_json_schema())
    assert not [t for t in texts if re.search(r"<[^>]*>", t)]
    for flow, names in ((render_song, ("song", "settings")), (render_catalogue, ("catalogue", "settings"))):
        properties = parameter_schema(flow).model_dump()["properties"]
        assert all(properties[name].get("description") for name in names), properties
    song = parameter_schema(render_song).model_dump()["properties"]["song"]["description"]
    assert "path" in song and "worker" in song


@pytest.mark.robustness(
    what="a checkpoint folder that does not exist",
    outcome="one sentence: the folder, no such folder, the download command with the backend's checkpoint",
)
def test_a_missing_checkpoint_folder_is_one_sentence_with_the_path_and_the_command(tmp_path):
    from soundsight.errors import MissingCheckpointError
    from soundsight.models import registry
    from soundsight.settings import RenderSettings

    missing = tmp_path / "wan"
    with pytest.raises(MissingCheckpointError) as err:
        registry.load("renderer", "wan").make(RenderSettings(backend="wan", model=str(missing)))
    assert str(err.value) == (
        f"model checkpoint {missing}: no such folder; download one into it with: "
        f"hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir {missing}"
    )


# --- README's deploy block ---------------------------------------------------------------------------


def deploy_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Deployments") : readme.index("### Docker")]


def commands(block: str) -> list[str]:
    """The command lines of a bash block (comments and blank lines dropped)."""
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


@pytest.mark.robustness(
    what="README's deploy block copied whole",
    outcome="deploys one way; names PREFECT_UI_API_URL, the runs folder, mkdir -p catalogue, where Submit leads",
)
def test_the_deploy_block_copied_whole_deploys_once_and_says_what_a_server_on_another_port_needs():
    section = deploy_section()
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert blocks
    for block in blocks:
        lines = " ".join(commands(block))
        assert not ("prefect deploy --all" in lines and "soundsight.deployments.deploy" in lines), block
    deploy_lines = " ".join(commands("\n".join(blocks)))
    assert "PREFECT_UI_API_URL" in section  # the UI calls :4200 unless told otherwise
    assert "SOUNDSIGHT_OUTPUT__RUNS_DIR" in deploy_lines  # the deployments' and worker's runs folder
    assert "mkdir -p catalogue" in section  # prefect.yaml's nightly-catalogue reads ./catalogue
    assert "returns to the deployment" in section  # where Submit leaves the user


# --- what ffmpeg said, quoted in whole lines ----------------------------------------------------------


@pytest.mark.robustness(
    what="a song ffmpeg decodes with many warnings",
    outcome="the warning quotes ffmpeg's last whole lines, never cut mid-word",
)
def test_ffmpegs_decoding_notes_are_quoted_in_whole_lines(tmp_path, monkeypatch, caplog):
    from soundsight.models.audio import decode

    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF" + bytes(100))
    notes = "\n".join(
        f"[mp3float @ 0x55d0] overread, skip -{i} enddists: -2 -2 (frame {i} of the song)" for i in range(20)
    )
    pcm = np.zeros(22050 * 5, dtype="<f4").tobytes()
    monkeypatch.setattr(
        decode.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, pcm, notes.encode())
    )
    with caplog.at_level(logging.WARNING, logger="soundsight.media"):
        decode.decode_audio(song, 22050)
    (record,) = [r for r in caplog.records if "ffmpeg reported" in r.getMessage()]
    quoted = record.getMessage().split("ffmpeg reported while decoding: ", 1)[1]
    lines = notes.splitlines()
    parts = quoted.split(" | ")
    assert re.fullmatch(r"\[\d+ earlier lines\]", parts[0]) and parts[1:] == lines[-len(parts) + 1 :], quoted
    assert len(quoted) <= 300 + 20


# --- the title card and the captions ------------------------------------------------------------------


@pytest.mark.robustness(
    what="a title of 360 characters",
    outcome="shortened with … to fit the title card",
)
def test_a_long_title_stays_inside_the_title_card():
    from soundsight.models.render.animatic.cards import TOP_BAR, title_card
    from soundsight.schemas import Character, PaletteColour, VisualBible

    palette = [PaletteColour(name=n, hex=h) for n, h in (("ink", "#101820"), ("sea", "#2a6f97"), ("sand", "#e9c46a"),
                                                          ("rust", "#b5542e"))]  # fmt: skip
    bible = VisualBible(characters=[Character(name="Fenn", description="a lean grey wolf")], setting="a harbour",
                        palette=palette, lighting="low sun", camera="35 mm, slow pans")  # fmt: skip
    W, H = 640, 360
    card = np.asarray(title_card(bible.model_copy(update={"title": "The Longest Night " * 20}), W, H))
    size = max(9, H // 28)
    band = card[int(round(H * TOP_BAR)) : int(round(H * TOP_BAR)) + int(size * 2.4)]  # the title's row
    white = (band[..., :3] == 255).all(axis=-1) & (band[..., 3] == 255)  # the title is pure white
    columns = np.flatnonzero(white.any(axis=0))
    assert columns.size and columns.max() < W - 4 * size, columns.max()  # short of the VISUAL BIBLE label


@pytest.mark.parametrize("width, height", [(640, 360), (1280, 720), (64, 36)])
@pytest.mark.robustness(
    what="burned-in captions over the animatic",
    outcome="the sung line sits above the scene caption's band",
)
def test_burned_captions_sit_above_the_animatics_caption_band(width, height):
    from soundsight.models.lyrics.captions import captions
    from soundsight.models.render.animatic.cards import BOTTOM_BAR
    from soundsight.schemas import LyricLine, Lyrics

    lyrics = Lyrics(source="lrc", duration=5.0, lines=[LyricLine(text="hold me closer", start=1.0, end=2.0)])
    ass = captions(lyrics, "ass", width=width, height=height)
    fields = next(line for line in ass.splitlines() if line.startswith("Format:") and "MarginV" in line)
    style = next(line for line in ass.splitlines() if line.startswith("Style: Lyrics"))
    values = dict(
        zip((f.strip() for f in fields.removeprefix("Format:").split(",")), style.split(":", 1)[1].split(","))
    )
    assert values["Alignment"] == "2"  # bottom centre: MarginV is the gap under the line
    assert int(values["MarginV"]) >= BOTTOM_BAR * height, values  # the line's bottom edge above the band
