"""The catalogue flow: one `render-song` deployment run per changed song, and a table of every song.

For each song the flow computes its *song key*: the sha256 of the song file's bytes, of its
settings (those that change a render, plus where it goes: the runs folder) and of soundsight's
code (the installed package's files). Then:

- **unchanged** (cached): a song whose key rendered to a video before (recorded in
  ``<runs>/.catalogue/<key>.json``; the video still has the size and mtime recorded) starts no
  run at all: its row says ``Cached``. That costs reading the file once (about 2 ms per MB here).
- **changed**: one `render-song` run through the deployment (`run_deployment`, a child of this
  run in the UI), with the song key as its idempotency key, so a retried or re-run catalogue
  finds the run it submitted (still queued, running, or done) instead of submitting another. A
  song whose previous run failed, or whose video has gone, gets a new run keyed
  ``<key>:<this catalogue run>``. Inside the child every stage still hits the content-addressed
  cache where it can: a song with new render settings re-renders its scenes only.

How many songs render at once is up to the workers of the deployment's queue (`songs`: one
worker per GPU host with ``--limit 1``) and the queue's concurrency limit (`python -m
soundsight.deployments.deploy --max-songs N`); this flow submits every changed song at once and
waits, updating a progress artifact (queued, running, done, failed, cached). A failed song is
retried per the deployment's policy (its job variables: PREFECT_FLOWS_DEFAULT_RETRIES) and reported
in the final table artifact; the others go on, and the run ends Failed naming the failed songs.

The song key sees the song, its settings and soundsight's code, not a new checkpoint revision
under the same model id: ``recheck=True`` sends every song through its render-song run (each
stage's cache, which includes the backend's identity, decides what recomputes).

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

import hashlib
import json
import logging
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.runtime import flow_run as this_run
from prefect.states import Failed, State
from pydantic import BaseModel, ValidationError

from soundsight.cache import canonical
from soundsight.flows.attempts import attempt
from soundsight.flows.report import CatalogueProgress, publish_catalogue
from soundsight.media import sha256_file
from soundsight.settings import Settings

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".mka"}
MANIFEST_SUFFIXES = {".toml", ".yaml", ".yml", ".json"}
RENDER_SONG = "render-song/render-song"
INDEX_FOLDER = ".catalogue"  # inside the runs folder: one record per song key that rendered
log = logging.getLogger("soundsight.catalogue")


@flow(name="render-catalogue", log_prints=True)
def render_catalogue(
    catalogue: str,
    settings: Settings = Settings(),
    recheck: bool = False,
    deployment: str = RENDER_SONG,
    poll_seconds: float = 2.0,
) -> list[dict[str, Any]] | State:
    """Render every song of a catalogue, one `render-song` deployment run per changed song.

    Returns one row per song (also the table artifact), or a Failed state naming the failed songs.
    (Google-style Args: Prefect reads the UI form's parameter descriptions from them.)

    Args:
        catalogue: A folder of audio files, or a manifest (.toml, .yaml, .json) listing songs with
            per-song overrides of the settings; a path on the machine that runs the flow.
        settings: Settings for every song (a manifest's defaults and overrides go on top).
        recheck: Send every song through its render-song run, changed or not (the stage caches decide).
        deployment: The deployment that renders one song (flow/deployment).
        poll_seconds: Seconds between looks at the songs' runs (each look updates the progress artifact).
    """
    with attempt():  # logs to the server, an earlier attempt closed, a user's error not retried
        return render_songs(catalogue, settings, recheck, deployment, poll_seconds)


def render_songs(
    catalogue: str, settings: Settings, recheck: bool, deployment: str, poll_seconds: float
) -> list[dict[str, Any]] | State:
    """The catalogue flow's body (see `render_catalogue`)."""
    songs = [Song.plan(entry) for entry in discover(catalogue, settings)]
    code = code_fingerprint()
    run_id = str(this_run.id or "local")
    progress = CatalogueProgress(catalogue, len(songs))
    for song in songs:
        song.key_with(code)
        if song.status == "" and not (recheck or song.settings.output.force):
            song.reuse_rendered()
    submit_changed(songs, deployment, run_id, recheck)
    wait_for_songs(songs, progress, run_id, deployment, poll_seconds)
    rows = [song.row() for song in songs]
    publish_catalogue(catalogue, rows)
    failed = [row["song"] for row in rows if row["status"] not in ("Completed", "Cached")]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("Completed", "Cached")}
    print(f"{len(rows)} songs: {counts['Completed']} rendered, {counts['Cached']} unchanged, {len(failed)} failed")
    if failed:
        return Failed(message=f"{len(failed)} of {len(rows)} songs failed: {', '.join(failed)}")
    return rows


class Entry(BaseModel):
    """One song of the catalogue: its path and settings, or why they are unusable."""

    song: str
    name: str
    settings: Settings | None = None
    error: str = ""


# --- one song ----------------------------------------------------------------------------------------


@dataclass
class Song:
    """A song's way through the catalogue run: its key, its render-song run, its row."""

    entry: Entry
    status: str = ""  # "" while undecided; Completed, Cached, Failed, Crashed, Cancelled
    message: str = ""
    key: str = ""
    run: Any = None  # the render-song FlowRun
    own_run: bool = False  # the run was submitted by this catalogue run (its key says so)
    fresh: bool = False  # submitted or looked up in this attempt: a Completed state is this night's render
    info: dict[str, Any] = field(default_factory=dict)  # scenes, duration, video, seconds

    @classmethod
    def plan(cls, entry: Entry) -> Song:
        """A song with its settings checked; an unusable entry is Failed at once."""
        song = cls(entry)
        if entry.settings is None:
            song.status, song.message = "Failed", entry.error
        elif not Path(entry.song).is_file():
            song.status, song.message = "Failed", f"{entry.name}: not found ({entry.song})"
        return song

    @property
    def settings(self) -> Settings:
        """The song's merged settings (only for songs that have them)."""
        assert self.entry.settings is not None
        return self.entry.settings

    @property
    def runs_dir(self) -> Path:
        """The song's runs folder, absolute, as this process sees it."""
        return Path(self.settings.output.runs_dir).expanduser().resolve()

    def key_with(self, code: str) -> None:
        """Compute the song key (module docstring); a song that cannot be read is Failed."""
        if self.status:
            return
        try:
            audio = sha256_file(Path(self.entry.song))
        except OSError as e:
            self.status, self.message = "Failed", f"{self.entry.name}: cannot read it: {e.strerror or e}"
            return
        self.key = song_key(audio, self.settings, code)

    def record_path(self) -> Path:
        """Where the song key's render is recorded."""
        return self.runs_dir / INDEX_FOLDER / f"{self.key}.json"

    def reuse_rendered(self) -> bool:
        """Cached when this key rendered before and its video is intact; True if so."""
        try:
            record = json.loads(self.record_path().read_text())
            video = Path(record["video"])
            stat = video.stat()
        except (OSError, ValueError, KeyError):
            return False
        if (stat.st_size, stat.st_mtime_ns) != (record.get("size"), record.get("mtime_ns")):
            return False
        self.status, self.info = "Cached", record
        self.info["seconds"] = 0.0
        return True

    def remember(self) -> None:
        """Record this key's video, for the next run's `reuse_rendered` (best effort)."""
        video = Path(self.info.get("video") or "/nonexistent")
        try:
            stat = video.stat()
            path = self.record_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {k: self.info.get(k) for k in ("video", "scenes", "duration")}
            record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns, song=self.entry.song, flow_run=str(self.run.id))
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(path)
        except OSError as e:
            log.warning("%s: not recording its render for the next run: %s", self.entry.name, e)

    def video_intact(self) -> bool:
        """Whether the run's video (from its artifact) is a file this process sees."""
        return bool(self.info.get("video")) and Path(self.info["video"]).is_file()

    def parameters(self) -> dict[str, Any]:
        """The render-song run's parameters."""
        return {"song": self.entry.song, "settings": self.settings.model_dump(mode="json")}

    def row(self) -> dict[str, Any]:
        """The song's row of the catalogue table."""
        seconds = self.info.get("seconds")
        return {
            "song": self.entry.name,
            "status": self.status or "Unknown",
            "scenes": self.info.get("scenes", ""),
            "duration": f"{self.info['duration']:.1f} s" if self.info.get("duration") is not None else "",
            "time spent": f"{seconds:.1f} s" if seconds is not None else "",
            "video": self.info.get("video", ""),
            "run": self.run.name if self.run is not None else "",
            "message": self.message[:300],
        }


def song_key(audio_sha256: str, settings: Settings, code: str) -> str:
    """The song key: its bytes, the settings that change its render, its runs folder, the code."""
    identity = canonical(settings)  # minus operational fields and locations...
    identity["output"]["runs_dir"] = str(Path(settings.output.runs_dir).expanduser().resolve())  # ...but where
    identity["output"]["run_name"] = settings.output.run_name
    blob = json.dumps({"audio": audio_sha256, "settings": identity, "code": code}, sort_keys=True)
    return "song-" + hashlib.sha256(blob.encode()).hexdigest()[:40]


_CODE: dict[str, str] = {}


def code_fingerprint() -> str:
    """sha256 of soundsight's installed code and data files (any edit changes every song key)."""
    if "sha" not in _CODE:
        import soundsight
        import soundsight.flows
        import soundsight.models
        import soundsight.prompts
        import soundsight.tasks

        h = hashlib.sha256()
        for package in (soundsight, soundsight.flows, soundsight.tasks, soundsight.models, soundsight.prompts):
            root = Path(package.__path__[0])
            # soundsight/ itself: its own files only (installed, the other packages live inside it)
            files = root.glob("*") if package is soundsight else root.rglob("*")
            for path in sorted(p for p in files if p.suffix in (".py", ".toml", ".txt", ".json")):
                if "__pycache__" not in path.parts:
                    h.update(f"{package.__name__}/{path.relative_to(root)}".encode())
                    h.update(path.read_bytes())
        _CODE["sha"] = h.hexdigest()[:16]
    return _CODE["sha"]


# --- submitting and waiting --------------------------------------------------------------------------


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def runs_by_key(deployment_id: UUID, keys: list[str]) -> dict[str, Any]:
    """The deployment's flow runs with these idempotency keys, by key."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterIdempotencyKey,
    )

    found: dict[str, Any] = {}
    with _client() as client:
        for i in range(0, len(keys), 100):
            chunk = keys[i : i + 100]
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=chunk)),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                limit=len(chunk),
            ):
                found[run.idempotency_key] = run
    return found


def submit_changed(songs: list[Song], deployment: str, run_id: str, recheck: bool) -> None:
    """Give every undecided song its render-song run: the one its key already has, or a new one."""
    from prefect.deployments import run_deployment

    todo = [s for s in songs if not s.status]
    if not todo:
        return
    with _client() as client:
        deployment_id = client.read_deployment_by_name(deployment).id
    existing = runs_by_key(deployment_id, [k for s in todo for k in (s.key, f"{s.key}:{run_id}")])
    for song in todo:
        own = existing.get(f"{song.key}:{run_id}")  # this catalogue run submitted it (an earlier attempt)
        prior = existing.get(song.key)
        if own is not None:
            song.run, song.own_run = own, True
        elif prior is not None and not recheck and not prior.state.is_final():
            song.run = prior  # still queued or running for an earlier catalogue run: wait for it, never twice
        elif prior is not None and not recheck and prior.state.is_completed():
            song.run = prior  # rendered, but not recorded here: its video decides (wait_for_songs)
        else:
            own_key = prior is not None or recheck or bool(song.settings.output.force)
            song.run = run_deployment(
                deployment,
                parameters=song.parameters(),
                flow_run_name=Path(song.entry.song).stem,
                idempotency_key=f"{song.key}:{run_id}" if own_key else song.key,
                timeout=0,
                as_subflow=True,
            )
            song.own_run, song.fresh = own_key, True
        song.fresh = song.fresh or not song.run.state.is_final()


def wait_for_songs(songs: list[Song], progress: CatalogueProgress, run_id: str, deployment: str, poll: float) -> None:
    """Poll the songs' runs until every one is final, updating the progress artifact."""
    with _client() as client:
        while True:
            waiting = [s for s in songs if not s.status]
            ids = [s.run.id for s in waiting]
            for i in range(0, len(ids), 200):
                runs = {r.id: r for r in client.read_flow_runs(flow_run_filter=_ids(ids[i : i + 200]), limit=200)}
                for song in waiting[i : i + 200]:
                    song.run = runs.get(song.run.id, song.run)
            finished = [s for s in waiting if s.run.state and s.run.state.is_final()]
            harvest(client, finished)
            for song in finished:
                if song.status == "" and not song.own_run:  # a prior run's video has gone: render again
                    resubmit(song, deployment, run_id)
            progress.update(songs)
            if all(s.status for s in songs):
                return
            time.sleep(poll)


def _ids(ids: list[UUID]):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=ids))


def resubmit(song: Song, deployment: str, run_id: str) -> None:
    """A new render-song run for `song`, keyed to this catalogue run."""
    from prefect.deployments import run_deployment

    song.run = run_deployment(
        deployment,
        parameters=song.parameters(),
        flow_run_name=Path(song.entry.song).stem,
        idempotency_key=f"{song.key}:{run_id}",
        timeout=0,
        as_subflow=True,
    )
    song.own_run = song.fresh = True
    song.info = {}


LINK = re.compile(r"^\[(?P<text>.*)\]\((?P<url>[^)]*)\)$", re.S)


def harvest(client, finished: list[Song]) -> None:
    """Rows for finished runs: video and scenes from their artifacts, the record for next time.

    A completed run of an earlier catalogue run whose video has gone is left undecided (resubmitted).
    """
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    done = [s for s in finished if s.run.state.is_completed()]
    for i in range(0, len(done), 50):
        chunk = done[i : i + 50]
        ids = [s.run.id for s in chunk]
        found: dict[tuple[UUID, str], Any] = {}
        for what in ("video", "segments"):
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=ids), key=ArtifactFilterKey(like_=f"%-{what}")
                ),
                limit=200,
            )
            for artifact in sorted(artifacts, key=lambda a: a.created):  # the newest of a retried run wins
                found[(artifact.flow_run_id, what)] = artifact
        for song in chunk:
            song.info["seconds"] = song.run.total_run_time.total_seconds()
            if (link := found.get((song.run.id, "video"))) and (m := LINK.match(link.data or "")):
                song.info["video"] = m.group("text")
            if segments := found.get((song.run.id, "segments")):
                try:
                    rows = json.loads(segments.data)
                    song.info.update(scenes=len(rows), duration=float(rows[-1]["end"]) if rows else 0.0)
                except (ValueError, KeyError, TypeError):
                    pass
            if song.own_run or song.fresh or song.video_intact():
                song.status = "Completed" if (song.own_run or song.fresh) else "Cached"
                if song.video_intact():
                    song.remember()
            # else: an earlier run's video has gone; wait_for_songs resubmits it
    for song in finished:
        if not song.run.state.is_completed():
            song.status = song.run.state.name
            song.message = f"{song.entry.name}: {song.run.state.message or song.run.state.name}"
            song.info["seconds"] = song.run.total_run_time.total_seconds()
    _close_links(client, [s for s in finished if s.status and (s.own_run or s.fresh)])


def _close_links(client, songs: list[Song]) -> None:
    """The task runs that link children to this run in the UI's graph take their child's final state."""
    from prefect.client.schemas.objects import State as StateObject

    for song in songs:
        link = song.run.parent_task_run_id
        if link is None:
            continue
        try:
            state = song.run.state
            client.set_task_run_state(
                link, StateObject(type=state.type, name=state.name, message=state.message), force=True
            )
        except Exception as e:  # noqa: BLE001 - cosmetic: the UI's graph
            log.debug("could not close the link of %s: %s", song.entry.name, e)


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
