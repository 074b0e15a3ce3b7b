"""What to draw: a scene's staging read from its sentence and the run's visual bible, and the palette's roles."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from soundsight.prompts import load_storyboard
from soundsight.schemas import Character, VisualBible

__all__ = ["PaletteRoles", "Shot", "fallback_bible", "figure_kind", "palette_roles", "read_shot"]


@dataclass(frozen=True)
class Shot:
    """How one scene is staged: what the sentence and the bible say, read by `read_shot`.

    layout : "interior", "water", "forest", "city", "ruins", "sky" or "plain".
    move : camera move, "push_in", "close", "rise", "pan" or "still".
    effect : "", "fade" (the light dims to the end) or "flash" (a change of light halfway).
    particles : "dust", "rain", "stars", "fireflies" or "embers".
    action : what the characters do: "run" (cross the frame), "rise" (lift off), "rest" (stay
        low) or "" (stand and hop on the beats).
    """

    layout: str
    move: str
    effect: str
    particles: str
    action: str = ""


def _matches(text: str, words: list[str]) -> bool:
    return any(re.search(r"\b" + re.escape(word.lower()), text) for word in words)


def _first_match(text: str, table: dict[str, list[str]], default: str) -> str:
    return next((name for name, words in table.items() if _matches(text, words)), default)


def read_shot(sentence: str, bible: VisualBible, index: int = 0) -> Shot:
    """The staging of a scene from its sentence (any writer's) and the run's bible.

    Parameters
    ----------
    sentence : str
        The scene sentence.
    bible : VisualBible
        The run's bible: its setting and location labels give the layout when no word of the
        sentence does, its visual setting the particles.
    index : int
        Scene index: without a camera word, scenes alternate between a pan and a push-in.

    Returns
    -------
    Shot
    """
    board = load_storyboard()
    text = sentence.lower()
    for character in bible.characters:  # "a bat" or "a moth the size of a kite" say nothing of the place
        text = text.replace(character.description.lower(), " ")
    # A place of the bible named in the sentence decides the layout ("outruns a rushing wave on a
    # skybridge" is a city, not the sea); else any word of the sentence.
    place = next((p.lower() for p in bible.places if p.lower() in text), text)
    setting, location = bible.labels.get("visual_setting", ""), bible.labels.get("location", "exterior")
    default = board["default_layouts"].get(
        "interior" if location == "interior" else f"{setting}.exterior",
        "interior" if location == "interior" else "plain",
    )
    return Shot(
        layout=_first_match(place, board["layouts"], default),
        move=_first_match(text, board["moves"], ("pan", "push_in")[index % 2]),
        effect=_first_match(text, board["effects"], ""),
        particles=board["particles"].get(setting, "dust"),
        action=_first_match(text, board["actions"], ""),
    )


def fallback_bible(palette_hint: str = "") -> VisualBible:
    """A bible for jobs that carry none: the palette of the visual style `palette_hint`, one figure."""
    from soundsight.models.script.bible import palette_for  # only here: renderers need no script writer

    return VisualBible(
        characters=[Character(name="", description="the protagonist")],
        setting="an open landscape",
        palette=palette_for(palette_hint, ""),
        lighting="",
        camera="",
        labels={"visual_style": palette_hint},
    )


@dataclass(frozen=True)
class PaletteRoles:
    """What each palette colour paints, sRGB 0..1: from darkest (shadow) to lightest (light)."""

    shadow: np.ndarray
    deep: np.ndarray
    mid: np.ndarray
    light: np.ndarray
    accent: np.ndarray
    second: np.ndarray  # the second character's colour


def palette_roles(bible: VisualBible) -> PaletteRoles:
    """Roles of the bible's palette colours, by CIELAB lightness and chroma.

    The darkest colour is the shadow, the lightest the light, the most chromatic of the rest the
    accent (the lead character, particles, lit windows); the others are deep and mid tones.
    """
    from skimage.color import rgb2lab

    rgb = np.array([c.rgb() for c in bible.palette], np.float32) / 255.0
    lab = rgb2lab(rgb[None].astype(np.float64))[0]
    order = list(np.argsort(lab[:, 0]))
    shadow, light = order[0], order[-1]
    rest = order[1:-1]
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    accent = max(rest, key=lambda i: chroma[i])
    tones = [i for i in rest if i != accent] or [accent]
    deep, mid = tones[0], tones[-1]
    second = max((i for i in order if i not in (accent, shadow)), key=lambda i: chroma[i] + 0.3 * lab[i, 0])
    return PaletteRoles(*(rgb[i] for i in (shadow, deep, mid, light, accent, second)))


@cache
def _figure_kinds() -> dict[str, list[str]]:
    return load_storyboard()["figures"]


def figure_kind(description: str) -> str:
    """'bird', 'beast' or 'person': the silhouette for a character description."""
    return _first_match(description.lower(), _figure_kinds(), "person")
