"""The visual bible: one visual identity per run, and the one function that builds every video prompt.

The paper's viewers found that scenes "felt like a collection of stock footage": palettes,
lighting and characters changed from shot to shot (section 5). A `VisualBible` fixes those once
per run: recurring characters (a name and one physical description each), the setting and the
places the story moves through, a palette of named colours, lighting, and the lens and camera
style. It is drawn deterministically from the analysis labels and the song's hash
(`build_bible`), or filled in by an LLM writer (`bible_json_schema`, `parse_bible`), the
template's bible standing in for whatever the model leaves empty.

`scene_prompt` turns a scene sentence into the text a video model receives: the sentence, every
character's description verbatim, and the bible's setting, lighting, camera and palette words.
Every backend's prompt goes through it, whichever writer wrote the scene.

Data lives in ``prompts/``: characters, settings, places and lenses in ``story_elements.toml``,
palettes and lighting in ``palettes.toml``.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
from pydantic import ValidationError

from soundsight.models.script.style import style_sentence
from soundsight.prompts import load_palettes, load_story_elements
from soundsight.schemas import HEX_COLOUR, Analysis, Character, PaletteColour, VisualBible

__all__ = [
    "MIN_ACCENT_DELTA_E",
    "MULTIPLE_CHARACTERS_FOCUS",
    "bible_json_schema",
    "build_bible",
    "choose",
    "palette_for",
    "parse_bible",
    "scene_prompt",
    "seeded_order",
]

# A mood's accent must differ from every ground colour of the style by at least this much.
MIN_ACCENT_DELTA_E = 12.0
# The visual_focus option that casts two characters instead of one.
MULTIPLE_CHARACTERS_FOCUS = "Multiple focal points or characters"
DEFAULT_SETTING_KEY = "Natural.exterior"


def _hash_int(seed: str, salt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{salt}".encode()).digest()[:8], "big")


def choose(options: list, seed: str, salt: str):
    """One of `options`, fixed by `seed` and `salt` (the same pair always picks the same one)."""
    return options[_hash_int(seed, salt) % len(options)]


def seeded_order(n: int, seed: str, salt: str) -> list[int]:
    """A permutation of ``range(n)`` fixed by `seed` and `salt`."""
    return sorted(range(n), key=lambda i: _hash_int(seed, f"{salt}:{i}"))


def _lab(hexes: list[str]) -> np.ndarray:
    from skimage.color import rgb2lab

    rgb = np.array([[int(h[k : k + 2], 16) for k in (1, 3, 5)] for h in hexes], np.float64) / 255.0
    return rgb2lab(rgb[None])[0]


def palette_for(visual_style: str, mood: str) -> list[PaletteColour]:
    """The palette of a visual_style x mood pair: the style's four ground colours and the mood's accent.

    The accent is the mood's first one unless it lies within `MIN_ACCENT_DELTA_E` (CIEDE2000)
    of a ground colour; then the mood's accent farthest from the ground is taken.

    Parameters
    ----------
    visual_style : str
        A ``visual_style`` option of ``vocabulary.toml`` (unknown: "Vibrant and colorful").
    mood : str
        A ``mood`` option (unknown: the first mood of ``palettes.toml``).

    Returns
    -------
    list of PaletteColour
        Five named sRGB colours, the ground colours first.
    """
    from skimage.color import deltaE_ciede2000

    data = load_palettes()
    style = data["styles"].get(visual_style) or data["styles"]["Vibrant and colorful"]
    accents = data["moods"].get(mood) or next(iter(data["moods"].values()))
    ground = [PaletteColour(**c) for c in style["colours"]]
    ground_lab = _lab([c.hex for c in ground])
    distance = [
        float(deltaE_ciede2000(np.repeat(_lab([a["hex"]]), len(ground), axis=0), ground_lab).min()) for a in accents
    ]
    pick = 0 if distance[0] >= MIN_ACCENT_DELTA_E else int(np.argmax(distance))
    return [*ground, PaletteColour(**accents[pick])]


def build_bible(analysis: Analysis, *, seed: str, characters: str = "", title: str = "") -> VisualBible:
    """The run's visual bible from its labels, deterministic per `seed`.

    Parameters
    ----------
    analysis : Analysis
        Any backend's labels: the track's ``mood`` and the ``visual`` categories are used.
    seed : str
        What every choice is drawn from; the pipeline passes the song's content hash.
    characters : str
        The user's cast (``script.characters``); when given it is the one character, verbatim.
        Empty: one character from ``story_elements.toml`` for the mood, two when the visual
        focus asks for several.
    title : str
        The song's title, for the storyboard's title card.

    Returns
    -------
    VisualBible
    """
    elements = load_story_elements()
    labels = {key: label.label for key, label in analysis.visual.items()}
    labels["mood"] = analysis.track["mood"].label
    mood, visual_style = labels["mood"], labels.get("visual_style", "")
    place_key = f"{labels.get('visual_setting', '')}.{labels.get('location', '')}"
    if place_key not in elements["places"]:
        place_key = DEFAULT_SETTING_KEY

    if characters.strip():
        cast = [Character(description=characters.strip().rstrip("."))]
    else:
        pool = elements["characters"].get(mood) or next(iter(elements["characters"].values()))
        count = 2 if labels.get("visual_focus") == MULTIPLE_CHARACTERS_FOCUS else 1
        cast = [Character(**pool[i]) for i in seeded_order(len(pool), seed, "cast")[:count]]
    places = elements["places"][place_key]
    style = load_palettes()["styles"].get(visual_style) or load_palettes()["styles"]["Vibrant and colorful"]
    return VisualBible(
        seed=seed,
        title=title,
        characters=cast,
        setting=elements["settings"][place_key],
        places=[places[i] for i in seeded_order(len(places), seed, "places")],
        palette_name=f"{visual_style or 'Vibrant and colorful'} / {mood}",
        palette=palette_for(visual_style, mood),
        lighting=style["lighting"],
        camera=elements["lenses"].get(mood, "35mm lens, steady cinematic camera"),
        style=style_sentence(analysis),
        labels=labels,
    )


def bible_json_schema(*, max_chars: int = 300, max_name_chars: int = 32) -> dict:
    """The JSON-schema fragment an LLM fills to write a bible (structured output, strict mode).

    Every property is required and every string and array bounded, as constrained decoding
    needs (see ``answers.script_json_schema``). What it leaves empty comes from the template's
    bible (`parse_bible`); ``places``, ``style`` and ``labels`` always do.

    Parameters
    ----------
    max_chars : int
        Longest description, setting, lighting or camera phrase, characters.
    max_name_chars : int
        Longest character or colour name, characters.

    Returns
    -------
    dict
        A JSON schema of an object with ``characters``, ``setting``, ``lighting``, ``camera``
        and ``palette``.
    """

    def text(limit: int) -> dict:
        return {"type": "string", "maxLength": limit}

    def obj(properties: dict) -> dict:
        return {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    return obj(
        {
            "characters": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": obj({"name": text(max_name_chars), "description": text(max_chars)}),
            },
            "setting": text(max_chars),
            "lighting": text(max_chars),
            "camera": text(max_chars),
            "palette": {
                "type": "array",
                "minItems": 4,
                "maxItems": 6,
                "items": obj({"name": text(max_name_chars), "hex": {"type": "string", "pattern": HEX_COLOUR}}),
            },
        }
    )


def _clean(value) -> str:
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in value if ch.isprintable() or ch.isspace())
    return " ".join(text.split()).strip(" .\"'`*")


def parse_bible(data: dict | str | None, fallback: VisualBible) -> tuple[VisualBible, list[str]]:
    """A bible from an LLM's answer (`bible_json_schema`), `fallback`'s value for each field it left unusable.

    Parameters
    ----------
    data : dict or str or None
        The model's ``bible`` object, or its JSON text.
    fallback : VisualBible
        The template's bible for the same run.

    Returns
    -------
    bible : VisualBible
        Characters with an empty description are dropped (all of them empty: the fallback's);
        a palette needs at least 4 valid ``#rrggbb`` colours, else the fallback's is kept.
    notes : list of str
        Which fields came from the fallback, for ``ScriptResult.notes``.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data, strict=False)  # raw line breaks in strings: see answers.parse_structured
        except json.JSONDecodeError:
            data = None
    if not isinstance(data, dict):
        return fallback, ["the answer had no usable bible; the template's bible is used"]

    fields: dict = {}
    characters = []
    for entry in data.get("characters") or []:
        if isinstance(entry, dict) and _clean(entry.get("description")):
            characters.append(Character(name=_clean(entry.get("name")), description=_clean(entry["description"])))
    if characters:
        fields["characters"] = characters[:3]
    for key in ("setting", "lighting", "camera"):
        if _clean(data.get(key)):
            fields[key] = _clean(data[key])
    colours = []
    for entry in data.get("palette") or []:
        if isinstance(entry, dict) and isinstance(entry.get("hex"), str) and re.match(HEX_COLOUR, entry["hex"]):
            colours.append(PaletteColour(name=_clean(entry.get("name")) or entry["hex"], hex=entry["hex"].lower()))
    if len(colours) >= 4:
        fields["palette"] = colours[:6]
        fields["palette_name"] = "written by the model"

    try:
        bible = fallback.model_copy(update=fields)
        VisualBible.model_validate(bible.model_dump())
    except ValidationError:  # pragma: no cover - every field was checked above
        return fallback, ["the bible did not validate; the template's bible is used"]
    kept = [key for key in ("characters", "setting", "lighting", "camera", "palette") if key not in fields]
    notes = [f"bible: {', '.join(kept)} from the template's bible"] if kept else []
    return bible, notes


def _who(character: Character) -> str:
    return f"{character.name}, {character.description}" if character.name else character.description


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def scene_prompt(scene_description: str, bible: VisualBible) -> str:
    """The video prompt of one scene: its sentence in the run's one visual identity.

    The scene sentence comes first (what happens), then every character of the bible whose
    description the sentence does not already hold verbatim, then the setting, lighting,
    camera and palette words and the visual guidelines, identical in every scene of the run.

    Parameters
    ----------
    scene_description : str
        The script's sentence for the scene, from any writer.
    bible : VisualBible
        The run's bible.

    Returns
    -------
    str
        E.g. ``"Shade, a lean grey wolf with pale eyes, bursts into a run in a field of giant
        glowing flowers, in one smooth tracking shot. Setting: a surreal dreamland ... Lighting:
        ... Camera: ... Colour palette: ink black, storm blue, ... and oxblood red. Exterior
        scene, ..."``
    """
    sentence = " ".join(scene_description.split()).rstrip(". ")
    parts = [sentence + "." if sentence else ""]
    missing = [c for c in bible.characters if c.description not in sentence]
    if missing:
        parts.append("Featuring " + "; ".join(_who(c) for c in missing) + ".")
    parts += [
        f"Setting: {bible.setting}.",
        f"Lighting: {bible.lighting}.",
        f"Camera: {bible.camera}.",
        f"Colour palette: {_join([c.name for c in bible.palette])}.",
    ]
    if bible.style:
        parts.append(bible.style.rstrip(".") + ".")
    return " ".join(p for p in parts if p)


def reference_prompt(bible: VisualBible) -> str:
    """A character sheet of the bible: the prompt of the run's reference image (one frame).

    Every character's description verbatim, in the bible's setting, lighting and palette, posed
    plainly so that every scene can be conditioned on it.
    """
    people = "; ".join(f"{c.name}, {c.description}" for c in bible.characters)
    colours = ", ".join(c.name for c in bible.palette)
    return (
        f"Character reference sheet: {people}. Full figure, facing the camera, centred, plain background "
        f"suggesting {bible.setting}. {bible.lighting}. Colour palette: {colours}."
    )
