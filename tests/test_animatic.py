"""The animatic as a storyboard of the visual bible (issue 14): frame counts, layouts, cuts, title card."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from soundsight.models.base import SceneJob
from soundsight.models.render.animatic import AnimaticRenderer, read_shot
from soundsight.models.render.palette import dominant_colours, palette_distance, palette_lab, read_clip
from soundsight.models.script.bible import build_bible
from soundsight.prompts import load_vocabulary
from soundsight.schemas import Analysis, Label

VOCAB = load_vocabulary()
SR = 22050

SENTENCES = {
    "interior": "Fenn walks slowly forward in a library with endless shelves, in a still, wide shot.",
    "city": "Fenn dashes ahead on a rooftop above the traffic, in a still, wide shot.",
    "forest": "Fenn sniffs the air at the edge of a misty pine forest, in a still, wide shot.",
    "water": "Fenn rests by a wide river under open sky, in a still, wide shot.",
    "sky": "Fenn leaps onto an island floating in the sky, in a still, wide shot.",
    "plain": "Fenn wakes across a wind-swept meadow, in a still, wide shot.",
    "ruins": "Fenn climbs among the columns of an ancient ruin, in a still, wide shot.",
}


@pytest.fixture(scope="module")
def bible():
    def label(key: str, option: str) -> Label:
        return Label(category=key, name=key, label=option, score=1.0, distribution={option: 1.0})

    analysis = Analysis(
        backend="hand",
        backend_id="hand",
        vocabulary_hash="",
        track={"mood": label("mood", "Uplifting and bright")},
        visual={
            "location": label("location", "exterior"),
            "visual_setting": label("visual_setting", "Natural"),
            "visual_style": label("visual_style", "Warm golden tones"),
            "visual_focus": label("visual_focus", "A single character"),
        },
        segments=[],
    )
    return build_bible(analysis, seed="test", title="Test Song")


def tone(seconds: float, beats: tuple[float, ...] = ()) -> np.ndarray:
    """A quiet hum with a click on every beat (so onsets fall on the beats)."""
    t = np.arange(int(seconds * SR)) / SR
    audio = 0.05 * np.sin(2 * np.pi * 220 * t)
    for b in beats:
        start = int(b * SR)
        audio[start : start + 800] += 0.8 * np.exp(-np.arange(len(audio[start : start + 800])) / 200)
    return audio.astype(np.float32)


def job(bible, *, index=1, caption=SENTENCES["plain"], frames=48, width=320, height=180, beats=(), **kw) -> SceneJob:
    seconds = frames / 24
    return SceneJob(
        index=index,
        prompt=caption,
        caption=caption,
        negative_prompt="",
        seed=7,
        seconds=seconds,
        frames=frames,
        fps=24,
        width=width,
        height=height,
        audio=kw.pop("audio", tone(seconds, beats)),
        sample_rate=SR,
        bible=bible,
        beat_times=beats,
        **kw,
    )


def picture(frame: np.ndarray) -> np.ndarray:
    """The picture between the bars (working resolution), float 0..1."""
    h = frame.shape[0]
    return frame[int(h * 0.1) + 1 : h - int(h * 0.17) - 1].astype(np.float32) / 255


@pytest.mark.parametrize(("frames", "size"), [(1, (160, 90)), (13, (162, 92)), (37, (320, 180))])
def test_clip_has_exactly_the_frames_asked_for(tmp_path, bible, frames, size):
    out = tmp_path / "scene.mp4"
    info = AnimaticRenderer(24)(job(bible, frames=frames, width=size[0], height=size[1]), out)
    decoded, fps = read_clip(out)
    assert decoded.shape == (frames, size[1], size[0], 3) and fps == 24
    assert (info.frames, info.width, info.height) == (frames, *size)


def test_sentences_choose_layouts_and_moves(bible):
    for layout, sentence in SENTENCES.items():
        assert read_shot(sentence, bible).layout == layout, sentence
    assert read_shot("Fenn waits, as the camera slowly pushes in.", bible).move == "push_in"
    assert read_shot("Fenn waits, in a sudden close-up.", bible).move == "close"
    assert read_shot("Fenn waits, in one smooth tracking shot.", bible).move == "pan"
    assert read_shot("Fenn waits, in a sweeping crane shot as the light changes.", bible).effect == "flash"
    assert read_shot("Fenn waits, as the light slowly dims.", bible).effect == "fade"
    # No place word: the bible's setting decides (Natural exterior: an open plain).
    assert read_shot("Fenn waits.", bible).layout == "plain"


def test_layouts_look_different(bible):
    renderer = AnimaticRenderer(24)
    looks = {}
    for layout, sentence in SENTENCES.items():
        frame = next(itertools.islice(renderer.frames(job(bible, caption=sentence, frames=12)), 6, None))
        pic = picture(frame)
        grey = pic.mean(axis=2)
        edges = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
        h, w = edges.shape
        coarse = edges[: h // 8 * 8, : w // 8 * 8].reshape(8, h // 8, 8, w // 8).mean(axis=(1, 3))
        rows = grey[: h // 8 * 8].reshape(8, -1).mean(axis=1)  # the vertical layout: sky, horizon, ground
        looks[layout] = (pic.reshape(-1, 3).mean(axis=0), coarse / (coarse.mean() + 1e-6), rows)
    for (a, (colour_a, edges_a, rows_a)), (b, (colour_b, edges_b, rows_b)) in itertools.combinations(looks.items(), 2):
        difference = (
            np.abs(colour_a - colour_b).sum() + 0.1 * np.abs(edges_a - edges_b).mean() + np.abs(rows_a - rows_b).mean()
        )
        assert difference > 0.08, (a, b, difference)


def test_storyboard_stays_on_the_bibles_palette(bible):
    frames = np.stack(list(AnimaticRenderer(24).frames(job(bible, frames=24))))
    pictures = frames[:, 20:-32]
    centres, shares = dominant_colours(pictures)
    assert palette_distance(centres, shares, palette_lab(bible.palette)) < 12.0


def test_every_cut_is_visible_and_scene_zero_opens_on_the_title_card(tmp_path, bible):
    renderer = AnimaticRenderer(24)
    frames = list(renderer.frames(job(bible, index=3, frames=12)))
    assert picture(frames[0]).mean() > picture(frames[4]).mean() + 0.2  # a flash of the palette's light
    first = list(renderer.frames(job(bible, index=0, frames=12)))
    assert picture(first[0]).mean() < picture(frames[0]).mean() - 0.2  # scene 0 opens on the card instead

    with_card, without = tmp_path / "card.mp4", tmp_path / "plain.mp4"
    renderer(job(bible, index=0, frames=48, width=320, height=180), with_card)
    renderer(job(bible, index=0, frames=48, width=320, height=180, title_card=False), without)
    card, plain = read_clip(with_card)[0], read_clip(without)[0]
    # The card covers the picture for the first 1.5 s (36 frames), then the scene shows.
    assert np.abs(card[5].astype(int) - plain[5]).mean() > 10
    assert np.abs(card[44].astype(int) - plain[44]).mean() < 2


def test_characters_move_on_the_beats(bible):
    silent = np.zeros(int(2 * SR), np.float32)
    on_beats = list(AnimaticRenderer(24).frames(job(bible, frames=48, beats=(1.0,), audio=silent)))
    no_beats = list(AnimaticRenderer(24).frames(job(bible, frames=48, beats=(), audio=silent)))
    assert np.abs(picture(on_beats[12]) - picture(no_beats[12])).max() < 1e-6  # before the beat: the same
    assert np.abs(picture(on_beats[26]) - picture(no_beats[26])).mean() > 0.002  # just after: a hop


def test_renders_without_a_bible(tmp_path):
    renderer = AnimaticRenderer(24)
    plain = SceneJob(
        index=0,
        prompt="x",
        caption="A fox runs.",
        negative_prompt="",
        seed=1,
        seconds=0.5,
        frames=12,
        fps=24,
        width=160,
        height=90,
        palette_hint="Dark and moody",
    )
    info = renderer(plain, tmp_path / "x.mp4")
    assert info.frames == 12 and read_clip(tmp_path / "x.mp4")[0].shape[0] == 12
