"""The embedded script writer: a deterministic, coherent scene-per-segment script from labels.

No model, no randomness beyond the song's hash: the same analysis always yields the same
script. It follows what the paper asks of the LLM (Block 1): a story with a beginning, middle
and end, recurring characters described identically in every scene, one sentence per scene.
The three-act arc follows the energy curve: the middle act is centred on the loudest stretch of
the song, so the climax lands where the music peaks.

Everything visual comes from the run's `VisualBible` (`bible.build_bible`): its characters open
every sentence, and the story travels through the bible's places in order. Actions (by act and
intensity) and camera phrases (by the segment's transition function) are drawn with the seed,
and no two scenes of a script are the same sentence.
"""

from __future__ import annotations

import numpy as np

from soundsight.models.base import ScriptRequest, ScriptResult
from soundsight.models.script.bible import build_bible, seeded_order
from soundsight.prompts import load_story_elements
from soundsight.schemas import Scene, VisualBible
from soundsight.settings import ChatEndpoint, ScriptSettings

__all__ = ["BACKEND", "TemplateScriptWriter", "acts_from_energy", "subject_phrase"]

WRITER_ID = "template-writer-v3"
INTENSITY_LEVEL = {
    "Low intensity, sparse and quiet": 0,
    "Soft and restrained with a gentle pulse": 1,
    "Moderate intensity with a clear beat": 2,
    "High energy and full instrumentation": 3,
}
DEFAULT_CAMERA = ["in a steady shot"]


def acts_from_energy(levels: list[float]) -> list[str]:
    """Assign 'beginning' / 'middle' / 'end' to scenes so the middle act holds the energy peak.

    The middle act is the run of about half the scenes with the highest mean energy (ties go to
    the most central run), kept off the first and last scene so every story opens and closes.
    """
    n = len(levels)
    if n < 3:
        return ["beginning", "end"][:n] if n == 2 else ["beginning"] * n
    width = max(1, n // 2)
    start = max(
        range(1, n - width),
        key=lambda s: (float(np.mean(levels[s : s + width])), -abs(s - (n - width) / 2)),
    )
    return ["beginning" if i < start else "middle" if i < start + width else "end" for i in range(n)]


def subject_phrase(bible: VisualBible) -> str:
    """Who every sentence is about: each character's name and description, the lead first.

    ``"Shade, a lean grey wolf with pale eyes,"`` or, with two characters, ``"Shade, a lean grey
    wolf with pale eyes, together with Corvin, a black raven with a silver ring on its foot,"``;
    a character without a name is its description (capitalised when it opens the sentence).
    """
    parts = []
    for k, c in enumerate(bible.characters):
        who = f"{c.name}, {c.description}," if c.name else (c.description if k == 0 else f"{c.description},")
        parts.append(who if k == 0 else f"together with {who}")
    text = " ".join(parts)
    return text[:1].upper() + text[1:]


def sung_phrase(sung: str, max_words: int = 8) -> str:
    """The first sung line of a segment, at most `max_words` words: what its scene echoes."""
    first = " ".join(sung.replace("\u2026", " ").split()[:max_words])
    return first.strip(" ,.;:!?\"'")


class TemplateScriptWriter:
    """Writes one sentence per scene from the analysis labels, the run's bible and story_elements.toml."""

    name = "template"
    writer_id = WRITER_ID

    def __call__(self, request: ScriptRequest) -> ScriptResult:
        """One scene per entry of ``request.durations``, deterministic per song, no two alike."""
        analysis = request.analysis
        elements = load_story_elements()
        seed = request.song_hash or "soundsight"

        # 1. The cast and the look, fixed for the whole video.
        bible = build_bible(analysis, seed=seed, characters=request.characters, title=request.title)
        subject = subject_phrase(bible)
        places = bible.places or ["in an open landscape"]

        # 2. The arc: acts follow the energy of the segments.
        n = len(request.durations)
        levels = [INTENSITY_LEVEL.get(s.labels["instrumental_intensity"].label, 1) for s in analysis.segments][:n]
        levels += [1] * (n - len(levels))
        transitions = [s.labels["transition_function"].label for s in analysis.segments][:n]
        transitions += [""] * (n - len(transitions))
        acts = acts_from_energy([float(v) for v in levels])

        # 3. One sentence per scene: who, does what (by act and intensity), where (the journey
        #    through the bible's places), how it's shot (by transition function). Candidates
        #    are tried in a seeded order; the first sentence not yet used wins.
        scenes: list[Scene] = []
        used: set[str] = set()
        previous_action = ""
        for i in range(n):
            actions = elements["actions"][acts[i]][levels[i]]
            cameras = elements["camera"].get(transitions[i], DEFAULT_CAMERA)
            home = min(len(places) - 1, i * len(places) // max(n, 1))
            place_order = [home] + [p for p in seeded_order(len(places), seed, f"place{i}") if p != home]
            candidates = (
                (actions[a], places[p], cameras[c])
                for p in place_order
                for a in seeded_order(len(actions), seed, f"action{i}")
                for c in seeded_order(len(cameras), seed, f"camera{i}")
            )
            text = ""
            for action, place, camera in candidates:
                sentence = f"{subject} {action} {place}, {camera}."
                if sentence not in used and action != previous_action:
                    text, previous_action = sentence, action
                    break
            if not text:  # every combination is taken (a very long song): number the shot
                text = f"{subject} {actions[0]} {places[home]}, {cameras[0]}, shot {i + 1}."
            used.add(text)
            if i < len(request.sung) and (words := sung_phrase(request.sung[i])):
                text = text[:-1] + f', as the song sings "{words}".'  # the scene follows the words
            if request.story_cues.strip() and i == 0:
                text = text[:-1] + f", {request.story_cues.strip().rstrip('.')}."
            scenes.append(Scene(index=i, description=text, duration=round(request.durations[i], 3), source="writer"))
        characters = subject.rstrip(",")  # every sentence opens with it
        return ScriptResult(scenes=scenes, characters=characters, style=bible.style, raw_response="", bible=bible)


class TemplateBackend:
    """``script.backend = template``: the embedded writer, no server (`models.base.ScriptWriterBackend`)."""

    name = "template"
    concurrency_limit = ""
    unavailable_hint = ""

    def writer(self, settings: ScriptSettings) -> TemplateScriptWriter:
        """The template writer (it reads the user's characters and cues from each request)."""
        return TemplateScriptWriter()

    def endpoint(self, settings: ScriptSettings) -> ChatEndpoint | None:
        """None: it needs no server."""
        return None


BACKEND = TemplateBackend()
