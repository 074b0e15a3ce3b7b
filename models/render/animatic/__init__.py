"""The embedded renderer: a storyboard of the run's visual bible, one clip per scene, on the CPU.

What a newcomer sees first, and what a person judges the script's pacing and look from before
spending GPU hours. Every clip is drawn from the run's `VisualBible` and the scene sentence:

- the bible's palette, and only it: sky, silhouettes and figures are palette colours (the
  palette also stands as swatches in the top bar);
- a title card over the first `title_seconds` of scene 0: the title, the characters with
  their descriptions, the setting, lighting, camera and the named palette;
- a layout read from the sentence (``prompts/storyboard.toml``): open plain, forest, water,
  city skyline, ruins, sky islands or an interior, drawn procedurally in parallax layers, with
  the bible's characters as silhouettes (beast, bird or person, from their descriptions);
- a camera move read from the sentence: push-in, close-up, crane up, pan or a still frame, and
  light effects (a fade, a change of light halfway);
- motion from the music: figures hop on every beat (``SceneJob.beat_times``), particles flare
  and the camera bumps on onsets, brightness follows the RMS level, beat ticks light up on the
  timeline in the top bar;
- the scene sentence as a caption, the scene number and time span and the shot in the top bar;
- a visible cut: every clip but the first opens on a two-frame flash of the palette's light.

Frames are drawn with numpy at half the output size on layers prepared once per clip, then
scaled, captioned (text overlaid at full size, so it stays sharp) and encoded by ffmpeg through
`soundsight.media.FrameEncoder`: exactly ``job.frames`` frames at ``job.fps``.

One module per job: `shots` (what to draw, from the sentence and the bible), `scenery` (the
layers, painted once per clip), `motion` (what the music moves), `cards` (the text over the
picture), `renderer` (`AnimaticRenderer`: frames composited and encoded), `backend` (the
``animatic`` render backend).
"""

from soundsight.models.render.animatic.backend import BACKEND, AnimaticBackend
from soundsight.models.render.animatic.motion import audio_envelopes
from soundsight.models.render.animatic.renderer import RENDERER_ID, AnimaticRenderer
from soundsight.models.render.animatic.shots import PaletteRoles, Shot, fallback_bible, palette_roles, read_shot

__all__ = [
    "BACKEND",
    "RENDERER_ID",
    "AnimaticBackend",
    "AnimaticRenderer",
    "PaletteRoles",
    "Shot",
    "audio_envelopes",
    "fallback_bible",
    "palette_roles",
    "read_shot",
]
