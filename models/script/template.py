"""The embedded script writer: a deterministic, coherent scene-per-segment script from labels.

No model, no randomness beyond the song's hash: the same analysis always yields the same
script. It follows what the paper asks of the LLM (Block 1): a story with a beginning, middle
and end, one recurring character described identically in every scene, one sentence per scene,
the visual guidelines in every scene. The three-act arc follows the energy curve: the middle act
is centred on the loudest stretch of the song, so the climax lands where the music peaks.
"""

from __future__ import annotations

import hashlib

import numpy as np

from soundsight.models.base import ScriptRequest, ScriptResult
from soundsight.models.script.style import style_sentence
from soundsight.prompts import load_story_elements
from soundsight.schemas import Analysis, Scene

__all__ = ["TemplateScriptWriter", "acts_from_energy"]

WRITER_ID = "template-writer-v1"
INTENSITY_LEVEL = {
    "Low intensity, sparse and quiet": 0,
    "Soft and restrained with a gentle pulse": 1,
    "Moderate intensity with a clear beat": 2,
    "High energy and full instrumentation": 3,
}


def _choose(options: list[str], seed: str, salt: str) -> str:
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


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


class TemplateScriptWriter:
    """Writes one sentence per scene from the analysis labels and story_elements.toml."""

    name = "template"
    writer_id = WRITER_ID

    def __call__(self, request: ScriptRequest) -> ScriptResult:
        """One scene per entry of ``request.durations``, deterministic per song."""
        analysis = request.analysis
        elements = load_story_elements()
        seed = request.song_hash or "soundsight"

        # 1. The cast and the look, fixed for the whole video.
        mood = analysis.track["mood"].label
        character = request.characters.strip() or _choose(
            elements["characters"].get(mood, ["a small fox"]), seed, "character"
        )
        style = style_sentence(analysis)
        setting = analysis.visual["visual_setting"].label
        location = analysis.visual["location"].label
        places = elements["places"].get(f"{setting}.{location}") or elements["places"]["Natural.exterior"]

        # 2. The arc: acts follow the energy of the segments.
        levels = [INTENSITY_LEVEL.get(s.labels["instrumental_intensity"].label, 1) for s in analysis.segments]
        acts = acts_from_energy([float(v) for v in levels])

        # 3. One sentence per scene: who, does what (by act and intensity), where, how it's shot.
        scenes = []
        start_place = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:2], "big") % len(places)
        for i, (seg, act) in enumerate(zip(analysis.segments, acts)):
            level = levels[i]
            action = _choose(elements["actions"][act][level], seed, f"action{i}")
            place = places[(start_place + ["beginning", "middle", "end"].index(act)) % len(places)]
            camera = elements["camera"].get(seg.labels["transition_function"].label, "in a steady shot")
            subject = character[0].upper() + character[1:]
            text = f"{subject} {action} {place}, {camera}, {self.look(analysis)}."
            if request.story_cues.strip() and i == 0:
                text = text[:-1] + f", {request.story_cues.strip().rstrip('.')}."
            scenes.append(Scene(index=i, description=text, duration=round(request.durations[i], 3), source="writer"))
        return ScriptResult(scenes=scenes, characters=character, style=style, raw_response="")

    @staticmethod
    def look(analysis: Analysis) -> str:
        """The lighting and look words for the run's visual style."""
        return load_story_elements()["styles"].get(analysis.visual["visual_style"].label, "cinematic light")
