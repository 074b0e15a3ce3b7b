"""The catalogue flow: render every song of a folder or a manifest, one `render-song` subflow each.

Nothing is special-cased for "already rendered": each song's stages hit the content-addressed
cache unless the song's audio, its settings or a stage's code version changed, so a nightly run
over an unchanged catalogue recomputes nothing. A song that fails does not stop the others; the
run ends Failed, naming it, after the table artifact lists every song.

A manifest (`.toml`, `.yaml`/`.yml` or `.json`) lists songs, paths relative to the manifest, with
optional per-song setting overrides on top of optional catalogue-wide defaults:

    [defaults]                       # any Settings groups, for every song
    render = { width = 1280, height = 720 }

    [[songs]]
    path = "celtic.ogg"

    [[songs]]
    path = "live/bolero.flac"
    segment = { mode = "random", seed = 7 }
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import Failed, State
from pydantic import BaseModel, ValidationError

from soundsight.flows.music_video import render_song
from soundsight.schemas import Segmentation
from soundsight.settings import Settings
from soundsight.tasks.report import publish_catalogue

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mka"}
MANIFEST_SUFFIXES = {".toml", ".yaml", ".yml", ".json"}


@flow(name="render-catalogue", log_prints=True)
def render_catalogue(catalogue: str, settings: Settings = Settings()) -> list[dict[str, Any]] | State:
    """Render every song of a catalogue.

    Render every song of `catalogue` (a folder of audio files, or a manifest listing songs with
    per-song overrides of `settings`); ends with a table artifact of what happened to each song.
    """
    rows = [render_entry(entry) for entry in discover(catalogue, settings)]
    publish_catalogue(catalogue, rows)
    failed = [row["song"] for row in rows if row["status"] != "Completed"]
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} songs failed: {', '.join(failed)}")
    return rows


class Entry(BaseModel):
    """One song of the catalogue: its path and settings, or why they are unusable."""

    song: str
    name: str
    settings: Settings | None = None
    error: str = ""


def render_entry(entry: Entry) -> dict[str, Any]:
    """One `render-song` subflow; a failure becomes a row, never an exception."""
    row: dict[str, Any] = {
        "song": entry.name,
        "status": "Failed",
        "scenes": "",
        "duration": "",
        "time spent": "",
        "video": "",
        "message": entry.error,
    }
    if entry.settings is None:
        return row
    started = time.monotonic()
    state = render_song.with_options(flow_run_name=Path(entry.song).stem)(entry.song, entry.settings, return_state=True)
    row["time spent"] = f"{time.monotonic() - started:.1f} s"
    if not state.is_completed():
        row["status"] = state.name
        row["message"] = (state.message or "")[:300]
        return row
    video = Path(state.result())
    segmentation = Segmentation.model_validate_json((video.parent / "segments.json").read_text())
    row.update(
        status="Completed",
        scenes=len(segmentation.segments),
        duration=f"{segmentation.duration:.1f} s",
        video=str(video),
        message="",
    )
    return row


# --- discovery -------------------------------------------------------------------------------------


def discover(catalogue: str, settings: Settings) -> list[Entry]:
    """The catalogue's songs, in a stable order, each with its merged settings."""
    path = Path(catalogue).expanduser()
    if path.is_dir():
        songs = sorted(
            p
            for p in path.rglob("*")
            if p.suffix.lower() in AUDIO_SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        return [Entry(song=str(p.resolve()), name=str(p.relative_to(path)), settings=settings) for p in songs]
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return from_manifest(path, settings)
    raise FileNotFoundError(
        f"{catalogue}: not a folder of songs or a manifest ({', '.join(sorted(MANIFEST_SUFFIXES))})"
    )


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest's data (TOML, JSON or YAML by suffix)."""
    text = path.read_text()
    if path.suffix.lower() == ".toml":
        return tomllib.loads(text)
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied group by group (a nested dict updates, anything else replaces)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def from_manifest(path: Path, settings: Settings) -> list[Entry]:
    """The manifest's songs (paths relative to it), each with defaults and its own overrides applied."""
    data = load_manifest(path)
    base = merged(settings.model_dump(mode="json"), data.get("defaults") or {})
    entries = []
    for item in data.get("songs") or []:
        item = {"path": item} if isinstance(item, str) else dict(item)
        name = str(item.pop("path", ""))
        song = Path(name).expanduser()
        song = str(song if song.is_absolute() else (path.parent / song).resolve())
        try:
            entries.append(Entry(song=song, name=name, settings=Settings.model_validate(merged(base, item))))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(map(str, first["loc"]))
            entries.append(Entry(song=song, name=name, error=f"{path.name}: setting {where}: {first['msg']}"))
    return entries
