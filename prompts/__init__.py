"""Prompt templates and label vocabularies, kept as data files beside this module.

`load_vocabulary()` is the single source of the paper's label categories; `script_prompt()`
fills the paper's Block 1 template. Both are pure: same files in, same result out.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent
SCOPES = ("segment", "track", "visual")


@dataclass(frozen=True)
class Category:
    """One label category: its key, scope, human name and options."""

    key: str
    scope: str
    name: str
    options: tuple[str, ...]

    def sentences(self) -> list[str]:
        """The text CLAP scores: "<name> is <option>" for every option."""
        return [f"{self.name} is {option}" for option in self.options]


@dataclass(frozen=True)
class Vocabulary:
    """The label categories of `vocabulary.toml` and the file's content hash."""

    categories: tuple[Category, ...]
    content_hash: str

    def scope(self, scope: str) -> list[Category]:
        """The categories answered at `scope` ('segment', 'track' or 'visual')."""
        return [c for c in self.categories if c.scope == scope]

    def __getitem__(self, key: str) -> Category:
        for c in self.categories:
            if c.key == key:
                return c
        raise KeyError(key)


def _read(name: str) -> bytes:
    return (HERE / name).read_bytes()


@cache
def load_vocabulary(name: str = "vocabulary.toml") -> Vocabulary:
    """The label vocabulary (the paper's categories), checked."""
    raw = _read(name)
    data = tomllib.loads(raw.decode())
    categories = []
    for key, entry in data.items():
        if entry["scope"] not in SCOPES:
            raise ValueError(f"{name}: category {key!r} has unknown scope {entry['scope']!r}")
        if len(entry["options"]) < 2:
            raise ValueError(f"{name}: category {key!r} needs at least two options")
        categories.append(Category(key, entry["scope"], entry["name"], tuple(entry["options"])))
    return Vocabulary(tuple(categories), hashlib.sha256(raw).hexdigest())


@cache
def load_story_elements() -> dict:
    """Characters, places and actions the deterministic script writer draws from."""
    return tomllib.loads(_read("story_elements.toml").decode())


def template_text(name: str = "script_prompt.txt") -> str:
    """A prompt template's text."""
    return _read(name).decode()


def template_hash(name: str = "script_prompt.txt") -> str:
    """sha256 of a prompt template: part of the script stage's cache key."""
    return hashlib.sha256(_read(name)).hexdigest()


def character_instruction(characters: str, otherwise: str) -> str:
    """The prompt's sentence about who appears.

    The user's characters, described identically in every scene, or `otherwise` when none were named.
    """
    if characters.strip():
        return (
            f"The story should feature {characters.strip()}. For consistency, repeat their description in every scene."
        )
    return otherwise


def sung_here(sung: list[str] | None, i: int) -> str:
    """The sentence that tells scene `i` what is sung in it: `` Sung here: "<words>".``, or "" when nothing is.

    Parameters
    ----------
    sung : list of str or None
        Per scene, the words sung in it ("" where none).
    i : int
        The scene, from 0.
    """
    return f' Sung here: "{sung[i].strip()}".' if sung and i < len(sung) and sung[i].strip() else ""


def lyrics_sentence(themes: list[str] | None) -> str:
    """The sentence that asks for scenes and a story that follow the lyrics, naming their `themes` if any."""
    about = f" (its words keep returning to: {', '.join(themes)})" if themes else ""
    return f"The song has lyrics{about}: let each scene show what is sung in it, and let the story follow the words."


def script_prompt(
    *,
    track_sentences: list[str],
    segment_sentences: list[list[str]],
    durations: list[float],
    visual_sentences: list[str],
    characters: str = "",
    story_cues: str = "",
    sung: list[str] | None = None,
    themes: list[str] | None = None,
) -> str:
    """Fill the paper's Block 1 prompt.

    Parameters
    ----------
    track_sentences : "<Category> is <label>" for the whole-track categories.
    segment_sentences : per scene, the same sentences for that segment's categories.
    durations : per scene, seconds.
    visual_sentences : the visual-guideline sentences.
    characters : who appears; empty lets the writer choose (the paper's "at least one animal").
    story_cues : free-form additions (the paper's ``additional_prompt``).
    sung : per scene, the words sung in it ("" where none); with any, each scene says what is sung
        and one line is added after the scene list (the only change to Block 1; none without lyrics).
    themes : the lyrics' frequent words, named in that added line.
    """
    if len(segment_sentences) != len(durations):
        raise ValueError("one list of segment sentences per duration")
    who = character_instruction(
        characters,
        "The story should include at least one animal character. "
        "For consistency, repeat the animal's description in every scene.",
    )
    sung = sung if sung and any(s.strip() for s in sung) else None
    scenes = "\n".join(
        f"Scene {i + 1}: "
        + ". ".join(sentences)
        + f". The scene will be {durations[i]:.2f} seconds long."
        + sung_here(sung, i)
        for i, sentences in enumerate(segment_sentences)
    )
    lyrics_instruction = "\n" + lyrics_sentence(themes) if sung else ""
    return template_text().format(
        additional_prompt=story_cues.strip(),
        character_instruction=who,
        number_of_scenes=len(durations),
        overall_song_description_keywords=". ".join(track_sentences) + ".",
        scene_descriptions=scenes,
        lyrics_instruction=lyrics_instruction,
        overall_song_description_keywords_visual_guides=". ".join(visual_sentences) + ".",
    )


@cache
def load_palettes() -> dict:
    """Palette ground colours and lighting by visual style, accent colours by mood (palettes.toml)."""
    return tomllib.loads(_read("palettes.toml").decode())


@cache
def load_storyboard() -> dict:
    """How the animatic reads a scene sentence: layouts, camera moves, effects, figures (storyboard.toml)."""
    return tomllib.loads(_read("storyboard.toml").decode())
