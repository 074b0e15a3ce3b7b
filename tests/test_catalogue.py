"""The catalogue: discovery (folder or manifest), and the nightly-catalogue deployment run by a real
worker - one render-song subflow per song, failures reported and not contagious, and only what
changed recomputed."""

from __future__ import annotations

import json
from pathlib import Path

from soundsight.flows.catalogue import discover
from soundsight.settings import Settings
from tests.deploy_fixtures import NIGHTLY, artifacts, child_runs, task_states, trigger, wait_final

UPSTREAM = ("load", "segment", "analyse", "script")


def test_a_folder_catalogue_is_every_audio_file_under_it(tmp_path):
    for name in ("b.mp3", "a.WAV", "live/c.flac", ".trash/d.ogg", "notes.txt", "cover.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    entries = discover(str(tmp_path), Settings())
    assert [e.name for e in entries] == ["a.WAV", "b.mp3", "live/c.flac"]
    assert all(Path(e.song).is_absolute() and e.settings == Settings() for e in entries)


def test_a_manifest_merges_defaults_and_per_song_overrides(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "defaults:\n  render: {width: 320, height: 180}\n"
        "songs:\n  - one.ogg\n  - path: /abs/two.flac\n    render: {seed: 9}\n    segment: {mode: random}\n"
        "  - path: three.ogg\n    render: {fps: 0}\n"
    )
    base = Settings.model_validate({"render": {"fps": 30}})
    one, two, three = discover(str(tmp_path / "m.yaml"), base)
    assert one.song == str(tmp_path / "one.ogg") and two.song == "/abs/two.flac"
    assert (one.settings.render.width, one.settings.render.fps, one.settings.render.seed) == (320, 30, 0)
    assert (two.settings.render.width, two.settings.render.seed, two.settings.segment.mode) == (320, 9, "random")
    assert three.settings is None and "render.fps" in three.error


def write_manifest(path: Path, stack, d_seed: int) -> None:
    a, d, b = stack.songs["a"], stack.songs["d"], stack.songs["b"]
    path.write_text(f"""
[defaults]
render = {{ width = 320, height = 180 }}
output = {{ runs_dir = "{stack.runs}" }}

[[songs]]
path = "{a}"

[[songs]]
path = "{d}"
render = {{ seed = {d_seed} }}

[[songs]]
path = "missing.wav"

[[songs]]
path = "{b}"
render = {{ width = 4 }}
""")


def test_nightly_catalogue_renders_each_song_and_only_what_changed(stack):
    write_manifest(stack.catalogue, stack, d_seed=0)  # the deployment's own default catalogue
    a, d = stack.songs["a"], stack.songs["d"]

    run_id = trigger(NIGHTLY)  # what the 02:00 schedule creates: the deployment's parameters
    run = wait_final(run_id)
    assert run.state.is_failed(), run.state  # two songs fail; the others still render
    assert "2 of 4 songs failed" in run.state.message and "missing.wav" in run.state.message

    table = {row["song"]: row for row in json.loads(artifacts(run_id)["catalogue"].data)}
    assert list(table) == [str(a), str(d), "missing.wav", str(stack.songs["b"])]
    for song in (a, d):
        row = table[str(song)]
        assert row["status"] == "Completed" and row["scenes"] >= 2 and Path(row["video"]).is_file(), row
        assert row["duration"].endswith(" s") and row["time spent"].endswith(" s")
    assert table["missing.wav"]["status"] == "Failed" and "not found" in table["missing.wav"]["message"]
    assert (
        table[str(stack.songs["b"])]["status"] == "Failed" and "render.width" in table[str(stack.songs["b"])]["message"]
    )
    assert set(child_runs(run_id)) >= {a.stem, d.stem, "missing"}

    # Change one song's settings: that song re-renders its scenes, the other recomputes nothing.
    write_manifest(stack.catalogue, stack, d_seed=5)
    run_id = trigger(NIGHTLY)
    run = wait_final(run_id)
    children = child_runs(run_id)
    unchanged = task_states(children[a.stem].id)
    changed = task_states(children[d.stem].id)
    assert unchanged and all(state == "Cached" for state in unchanged.values()), unchanged
    assert all(changed[stage] == "Cached" for stage in UPSTREAM), changed
    assert all(state == "Completed" for name, state in changed.items() if name not in UPSTREAM), changed
    table = {row["song"]: row for row in json.loads(artifacts(run_id)["catalogue"].data)}
    assert table[str(a)]["status"] == table[str(d)]["status"] == "Completed"


def test_the_example_manifest_is_valid():
    from tests.deploy_fixtures import ROOT

    entries = discover(str(ROOT / "deployments" / "catalogue.example.toml"), Settings())
    assert [e.name for e in entries] == ["celtic.ogg", "urban_bolero.ogg", "elvish_theme.ogg"]
    assert all(e.settings is not None and e.settings.render.width == 1280 for e in entries)
    assert entries[1].settings.segment.mode == "random" and entries[1].settings.script.characters
