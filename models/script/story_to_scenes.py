"""Pipeline 2's story-to-scenes prompt: the audio-language model's story and every segment.

The paper's second pipeline has a model break the story into one scene per pre-cut segment. This
is the prompt it gets (``prompts/lalm_scenes.txt``): the story, then each segment's start, length,
beats and downbeats, loudness and why it ends (and, with ``pipeline_2_analysis``, its labels). The
scene writers of ``soundsight.backends.SCENE_WRITERS`` answer it. No Prefect here.
"""

from __future__ import annotations

import math

import numpy as np

from soundsight.models.script.listening import clock
from soundsight.prompts import character_instruction, lyrics_sentence, sung_here, template_hash, template_text
from soundsight.schemas import Analysis, Segmentation

__all__ = ["scene_prompt", "scenes_prompt_hash", "segment_levels"]

SCENES_PROMPT = "lalm_scenes.txt"

_REASONS = {
    "novelty": "ends where the sound changes",
    "beat_count": "ends after its run of beats",
    "max_length": "ends at the longest scene length",
    "random": "ends on a random cut",
    "end": "ends with the song",
    "start": "ends on a cut",
}


def segment_levels(pcm: np.ndarray, sr: int, segmentation: Segmentation) -> list[float]:
    """Each segment's loudness relative to the loudest segment, dB (0 for the loudest).

    Parameters
    ----------
    pcm : numpy.ndarray
        The song, mono float.
    sr : int
        Its sample rate, Hz.
    segmentation : Segmentation
        The cut (``segments.json``).

    Returns
    -------
    list of float
        One value per segment, dB, at most 0 (floored at -60).
    """
    power = []
    for seg in segmentation.segments:
        part = pcm[int(seg.start * sr) : max(int(seg.start * sr) + 1, int(seg.end * sr))]
        power.append(float(np.mean(np.square(part, dtype=np.float64))) if len(part) else 0.0)
    top = max(power) if power and max(power) > 0 else 1.0
    return [max(-60.0, 10 * math.log10(p / top)) if p > 0 else -60.0 for p in power]


def _segment_line(seg, downbeats: list[float], level_db: float, labels: list[str]) -> str:
    inside = [t - seg.start for t in downbeats if seg.start <= t < seg.end]
    beats = f"{len(seg.beats)} beat{'s' if len(seg.beats) != 1 else ''}"
    if inside:
        beats += ", downbeats at " + ", ".join(f"+{t:.1f} s" for t in inside[:8])
    line = (
        f"Scene {seg.index + 1}: starts at {clock(seg.start)} ({seg.start:.1f} s), lasts {seg.duration:.2f} s; "
        f"{beats}; loudness {int(round(level_db)):+d} dB; {_REASONS.get(seg.reason, 'ends on a cut')}."
    )
    if labels:
        line += " " + ". ".join(labels) + "."
    return line


def scene_prompt(
    *,
    story: str,
    segmentation: Segmentation,
    levels_db: list[float],
    characters: str = "",
    story_cues: str = "",
    sung: list[str] | None = None,
    themes: list[str] | None = None,
    analysis: Analysis | None = None,
) -> str:
    """The story-to-scenes prompt (``prompts/lalm_scenes.txt``): the story and every segment.

    Parameters
    ----------
    story : str
        The LALM's story (empty: the prompt says none was written).
    segmentation : Segmentation
        Segments (start, duration, beats, why each ends), downbeats and tempo.
    levels_db : list of float
        Per segment, loudness relative to the loudest, dB (`segment_levels`).
    characters : str
        The user's characters; empty: the story's.
    story_cues : str
        Extra instructions (the paper's ``additional_prompt``).
    sung, themes : list of str, optional
        Per segment, the words sung in it; the lyrics' frequent words (from the lyrics stage).
    analysis : Analysis, optional
        Labels (``pipeline_2_analysis``): each segment's and the whole track's.

    Returns
    -------
    str
        The prompt; the scene writer adds its output instructions (JSON or ``SCENE #:``).
    """
    segments = segmentation.segments
    if len(levels_db) != len(segments):
        raise ValueError("one loudness per segment")
    per_segment: list[list[str]] = [[] for _ in segments]
    labels = ""
    if analysis is not None:
        for seg_labels in analysis.segments:
            if 0 <= seg_labels.index < len(segments):
                per_segment[seg_labels.index] = [label.sentence() for label in seg_labels.labels.values()]
        whole = [label.sentence() for label in analysis.track.values()]
        visual = [label.sentence() for label in analysis.visual.values()]
        labels = (
            "When listening to the entire song, it can be described like this: "
            + ". ".join(whole)
            + ".\nEach scene needs to visually match the following guidelines: "
            + ". ".join(visual)
            + ".\n"
        )
    lines = [
        _segment_line(seg, segmentation.downbeats, level, per_segment[i]) + sung_here(sung, i)
        for i, (seg, level) in enumerate(zip(segments, levels_db))
    ]
    if sung and any(s.strip() for s in sung):
        labels += lyrics_sentence(themes) + "\n"
    who = character_instruction(
        characters,
        "Keep the story's characters, and repeat each one's description, word for word, in every scene they appear in.",
    )
    return template_text(SCENES_PROMPT).format(
        additional_prompt=story_cues.strip(),
        story=story.strip() or "(The audio-language model wrote no story: invent one that fits the segments below.)",
        number_of_scenes=len(segments),
        duration=clock(segmentation.duration),
        tempo=f" at about {segmentation.tempo_bpm:.0f} BPM" if segmentation.tempo_bpm else "",
        scene_descriptions="\n".join(lines),
        labels=labels,
        character_instruction=who,
    )


def scenes_prompt_hash() -> str:
    """sha256 of the scene prompt template: part of the script stage's cache key in pipeline 2."""
    return template_hash(SCENES_PROMPT)
