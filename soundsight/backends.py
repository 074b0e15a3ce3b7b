"""Every backend soundsight can run: one table per kind, name -> where it lives.

Data only. Each entry names the module attribute (``"package.module:NAME"``) that implements the
backend: one small object satisfying that kind's protocol in `soundsight.models.base`. It is
imported only when a run uses it (`soundsight.models.registry.load`), so the core depends on none
of the rooms and a CPU run never imports a GPU model stack.

Adding a backend is one file in ``models/`` plus one line in its table. The settings offer exactly
the names in these tables: the CLI refuses any other, the UI form shows them as a drop-down.
"""

from __future__ import annotations

# render.backend: one clip per scene (`models.base.RendererBackend`).
RENDERERS: dict[str, str] = {
    "animatic": "soundsight.models.render.animatic:BACKEND",
    "wan": "soundsight.models.render.diffusion:WAN_BACKEND",
    "mochi": "soundsight.models.render.diffusion:MOCHI_BACKEND",
}

# segment.beat_tracker: beats, downbeats and a confidence (`models.base.BeatTracker`).
BEAT_TRACKERS: dict[str, str] = {
    "librosa": "soundsight.models.audio.beats:BACKEND",
    "beat_this": "soundsight.models.audio.beat_this:BACKEND",
}

# analysis.backend: the paper's labels (`models.base.AnalyserBackend`).
ANALYSERS: dict[str, str] = {
    "features": "soundsight.models.analysis.features:BACKEND",
    "clap": "soundsight.models.analysis.clap:BACKEND",
}
# analysis.backend = "auto": the first of these that can run on this machine (CLAP when its checkpoint is here).
AUTO_ANALYSERS: tuple[str, ...] = ("clap", "features")

# script.backend: who writes pipeline 1's script (`models.base.ScriptWriterBackend`).
SCRIPT_WRITERS: dict[str, str] = {
    "template": "soundsight.models.script.template:BACKEND",
    "llm": "soundsight.models.script.llm:BACKEND",
}
# script.scene_writer: who splits pipeline 2's story into scenes (`models.base.SceneWriterBackend`).
SCENE_WRITERS: dict[str, str] = {
    "lalm": "soundsight.models.script.lalm:SCENE_WRITER",
    "llm": "soundsight.models.script.llm:SCENE_WRITER",
}

KINDS: dict[str, dict[str, str]] = {
    "renderer": RENDERERS,
    "beat tracker": BEAT_TRACKERS,
    "analyser": ANALYSERS,
    "script writer": SCRIPT_WRITERS,
    "scene writer": SCENE_WRITERS,
}
