"""Backends that only the tests know: each joins its table in `soundsight.backends` and nothing else.

A test adds one with ``monkeypatch.setitem(backends.ANALYSERS, "house", "tests.table_backends:ANALYSER")``
and names it in the settings; the flow then runs it like any other, which is what adding a
backend to soundsight takes: one file plus one table line. They build on the embedded backends
under their own names, so what they write is real work, not canned output.
"""

from __future__ import annotations

from soundsight.models.analysis.features import FeatureAnalyser
from soundsight.models.script.template import TemplateScriptWriter
from soundsight.prompts import load_vocabulary
from soundsight.settings import AnalysisSettings, ChatEndpoint, ScriptSettings, Settings


class HouseAnalyser(FeatureAnalyser):
    """The feature analyser, under another name and identity."""

    name = "house"
    backend_id = "house-features-v1"


class HouseAnalyserBackend:
    """An `AnalyserBackend` of one step, always available."""

    name = "house"
    fans_out = False
    hears_vocals = False

    def available(self, settings: AnalysisSettings) -> bool:
        return True

    def analyser(self, settings: AnalysisSettings) -> HouseAnalyser:
        return HouseAnalyser(load_vocabulary())


class HouseWriter(TemplateScriptWriter):
    """The template writer, under another name and identity."""

    name = "house"
    writer_id = "house-writer-v1"


class HouseWriterBackend:
    """A `ScriptWriterBackend` (and `SceneWriterBackend`) that needs no server."""

    name = "house"
    credit = "lalm+house"
    scene_source = "writer"
    concurrency_limit = ""
    unavailable_hint = ""

    def writer(self, settings: ScriptSettings) -> HouseWriter:
        return HouseWriter()

    def endpoint(self, settings: ScriptSettings) -> ChatEndpoint | None:
        return None

    def script_settings(self, settings: Settings) -> ScriptSettings:
        return settings.script


ANALYSER = HouseAnalyserBackend()
WRITER = HouseWriterBackend()
