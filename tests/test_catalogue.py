"""The catalogue: discovery (folder or manifest), and the nightly-catalogue deployment run by a real
worker - one render-song deployment run per changed song, failures retried, reported and not
contagious, unchanged songs skipped, and no song submitted twice."""

from __future__ import annotations

import json
from pathlib import Path

from soundsight.flows.catalogue import discover
from soundsight.settings import Settings
from tests.deploy_fixtures import NIGHTLY, artifacts, child_runs, task_states, trigger, wait_final

UPSTREAM = ("load", "segment", "lyrics", "analyse", "script")


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


def write_manifest(path: Path, stack, d_seed: int, corrupt: Path | None = None) -> None:
    a, d, b = stack.songs["a"], stack.songs["d"], stack.songs["b"]
    text = f"""
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
"""
    if corrupt is not None:
        text += f'\n[[songs]]\npath = "{corrupt}"\n'
    path.write_text(text)


def test_nightly_catalogue_renders_each_changed_song_as_its_own_run(stack, tmp_path):
    a, d, b = stack.songs["a"], stack.songs["d"], stack.songs["b"]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 64)  # not audio: its render-song run fails, twice
    write_manifest(stack.catalogue, stack, d_seed=0, corrupt=corrupt)  # the deployment's own default catalogue

    run_id = trigger(NIGHTLY)  # what the 02:00 schedule creates: the deployment's parameters
    run = wait_final(run_id, timeout=420)
    assert run.state.is_failed(), run.state  # three songs fail; the others still render
    assert "3 of 5 songs failed" in run.state.message and "missing.wav" in run.state.message

    found = artifacts(run_id)
    table = {row["song"]: row for row in json.loads(found["catalogue"].data)}  # the run page's table
    assert list(table) == [str(a), str(d), "missing.wav", str(b), str(corrupt)]
    for song in (a, d):
        row = table[str(song)]
        assert row["status"] == "Completed" and row["scenes"] >= 2 and Path(row["video"]).is_file(), row
        assert row["duration"].endswith(" s") and row["time spent"].endswith(" s") and row["run"] == song.stem
    assert table["missing.wav"]["status"] == "Failed" and "not found" in table["missing.wav"]["message"]
    assert table[str(b)]["status"] == "Failed" and "render.width" in table[str(b)]["message"]
    assert table[str(corrupt)]["status"] == "Failed" and table[str(corrupt)]["run"] == "corrupt"
    assert found["progress"].data == 100.0
    assert found["progress"].description == "Songs: 5 · 0 queued · 0 running · 2 done · 3 failed · 0 cached"

    # Each song that could render is its own render-song run, a child of the catalogue run; the
    # corrupt one failed once: a bad file is a user's error, which a retry would repeat, so the
    # deployment's retry policy is not applied to it (flows/attempts.py). Songs unusable up front get no run.
    children = child_runs(run_id)
    assert set(children) == {a.stem, d.stem, "corrupt"}, sorted(children)
    assert all(child.deployment_id == children[a.stem].deployment_id for child in children.values())
    assert children["corrupt"].run_count == 1 and children["corrupt"].state.is_failed()

    # Next night, one song's settings changed: only that song gets a run (its scenes re-render,
    # the stages before are cached); the unchanged one costs a file hash and shows as Cached.
    write_manifest(stack.catalogue, stack, d_seed=5)
    run_id = trigger(NIGHTLY)
    run = wait_final(run_id)
    table = {row["song"]: row for row in json.loads(artifacts(run_id)["catalogue"].data)}
    assert table[str(a)]["status"] == "Cached" and table[str(a)]["run"] == "", table[str(a)]
    assert table[str(a)]["video"] == json.loads(found["catalogue"].data)[0]["video"]
    assert table[str(d)]["status"] == "Completed"
    children = child_runs(run_id)
    assert set(children) == {d.stem}, sorted(children)
    changed = task_states(children[d.stem].id)
    assert all(changed[stage] == "Cached" for stage in UPSTREAM), changed
    assert all(state == "Completed" for name, state in changed.items() if name not in UPSTREAM), changed


def test_a_rerun_of_a_catalogue_run_never_submits_a_song_twice(stack, tmp_path):
    """What a retried catalogue run does: it finds the render-song run its first attempt submitted
    (through the run's idempotency key) instead of submitting another."""
    from soundsight.flows.catalogue import Entry, Song, code_fingerprint, submit_changed

    settings = Settings.model_validate(stack.settings())
    (song,) = [Song.plan(Entry(song=str(stack.songs["a"]), name="a", settings=settings))]
    song.key_with(code_fingerprint())
    submit_changed([song], "render-song/render-song", run_id="attempt-test", recheck=True)
    first = song.run
    again = Song.plan(Entry(song=str(stack.songs["a"]), name="a", settings=settings))
    again.key_with(code_fingerprint())
    submit_changed([again], "render-song/render-song", run_id="attempt-test", recheck=True)
    assert again.run.id == first.id and again.own_run
    assert first.idempotency_key == f"{song.key}:attempt-test"
    assert wait_final(first.id).state.is_completed()


def test_the_example_manifest_is_valid():
    from tests.deploy_fixtures import ROOT

    entries = discover(str(ROOT / "deployments" / "catalogue.example.toml"), Settings())
    assert [e.name for e in entries] == ["celtic.ogg", "urban_bolero.ogg", "elvish_theme.ogg"]
    assert all(e.settings is not None and e.settings.render.width == 1280 for e in entries)
    assert entries[1].settings.segment.mode == "random" and entries[1].settings.script.characters
