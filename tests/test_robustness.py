"""Every fault a user can cause, survived: bad and hostile input, interruptions, missing services.

Each case is marked ``robustness(what=..., outcome=...)``; `docs/robustness.md` is generated from
these marks and the last run's results (the command is in tests/robustness_report.py: this file
and the other files with marked cases), and `test_the_robustness_doc_lists_every_case` keeps it
in step with the marks. Cases are parametrized so one failure never hides another.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from soundsight.media import ffmpeg_exe
from tests.support import PREFECT_DATABASE, copy_database, probe, render

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "robustness.md"
SMALL = ["--render.width", "64", "--render.height", "36"]


def case(what: str, outcome: str):
    """Mark a test (or a parameter) as one row of docs/robustness.md."""
    return pytest.mark.robustness(what=what, outcome=outcome)


def cli(*args: str, env: dict | None = None, timeout: float = 300, prefix: tuple[str, ...] = (), **kw):
    """`soundsight render ...` as a user runs it (after `prefix`, e.g. a privilege drop)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "soundsight.flows.cli", "render", *args],
        capture_output=True, text=True, cwd=ROOT, env=env or dict(os.environ), timeout=timeout, **kw,
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


# Most CLI runs below are seconds of imports on one core before the run renders or refuses. The
# ones a test only reads back (fixtures named in STARTED_TOGETHER) are started side by side on
# every core when the module's first test begins; each test then checks its own finished run.
STARTED_TOGETHER = ("bad_input_runs", "unknown_variable_run", "wan_without_weights_run", "logged_run")
_CLI_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="soundsight-cli")


class StartedCli:
    """`soundsight render SONG --output.runs_dir RUNS FLAGS...` (`cli`), started now on a thread;
    `result()` waits for the finished run."""

    def __init__(self, song: str, runs: Path, *flags: str, env: dict | None = None):
        self.runs = runs
        self._run = _CLI_THREADS.submit(cli, song, "--output.runs_dir", str(runs), *flags, env=env)

    def result(self) -> subprocess.CompletedProcess:
        return self._run.result()


@pytest.fixture(scope="module", autouse=True)
def cli_runs_side_by_side(request) -> None:
    """Start every STARTED_TOGETHER run a collected test of this module reads, and wait for all."""
    mine = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    wanted = {name for item in mine for name in getattr(item, "fixturenames", ())}
    started = [request.getfixturevalue(name) for name in STARTED_TOGETHER if name in wanted]
    for runs in started:
        for run in runs.values() if isinstance(runs, dict) else [runs]:
            run.result()


@pytest.fixture(scope="module")
def excerpt(music, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("songs") / "celtic_8s.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-ss", "12", "-t", "8", "-i", str(music / "celtic.ogg"), str(out)],
                   check=True)  # fmt: skip
    return out


# --- bad input files: one line naming the file and the problem, exit 2, nothing half-written ------


def make_bad_inputs(music: Path, tmp: Path) -> dict[str, Path]:
    empty = tmp / "empty.mp3"
    empty.write_bytes(b"")
    truncated = tmp / "truncated.ogg"
    truncated.write_bytes((music / "celtic.ogg").read_bytes()[:300_000])
    not_audio = tmp / "notes.ogg"
    not_audio.write_text("these are my notes, not a song\n" * 50)
    silent = tmp / "silent.wav"
    short = tmp / "short.flac"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "10",
                    str(silent)], check=True)  # fmt: skip
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(music / "celtic.ogg"), "-t", "2.5", str(short)], check=True)
    midi = tmp / "tune.mid"
    midi.write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
    return {"missing": tmp / "no-such-song.mp3", "empty": empty, "truncated": truncated, "not audio": not_audio,
            "silent": silent, "too short": short, "midi": midi}  # fmt: skip


@pytest.fixture(scope="module")
def bad_inputs(music, tmp_path_factory) -> dict[str, Path]:
    return make_bad_inputs(music, tmp_path_factory.mktemp("bad"))


BAD_INPUTS = [
    pytest.param("missing", "not found", marks=case("a song path that does not exist", "exit 2: `<path>: file not found`")),
    pytest.param("empty", "empty", marks=case("an empty file", "exit 2: `<path>: file is empty`")),
    pytest.param("truncated", "truncated", marks=case("a truncated Ogg file (cut mid-download)", "exit 2: `damaged or truncated audio`")),
    pytest.param("not audio", "not an audio file", marks=case("a text file named .ogg", "exit 2: `not an audio file ffmpeg can read`")),
    pytest.param("silent", "silent", marks=case("10 s of digital silence", "exit 2: `song is silent`")),
    pytest.param("too short", "shorter than one segment", marks=case("a 2.5 s song (shorter than one segment)", "exit 2: `shorter than one segment`")),
    pytest.param("midi", "is a MIDI file", marks=case("a MIDI file", "exit 2: says MIDI is not audio and how to render it")),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_input_runs(request, bad_inputs, tmp_path_factory, prefect_server) -> dict[str, StartedCli]:
    """`soundsight render <bad input>` for every case a collected test checks, by case name."""
    names = {
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and item.originalname == "test_bad_input_fails_with_one_clear_line"
    }
    return {
        name: StartedCli(str(bad_inputs[name]), tmp_path_factory.mktemp("bad-input") / "runs") for name in sorted(names)
    }


@pytest.mark.parametrize("name, problem", BAD_INPUTS)
def test_bad_input_fails_with_one_clear_line(name, problem, bad_inputs, bad_input_runs):
    path = bad_inputs[name]
    run = bad_input_runs[name]
    proc = run.result()
    errors = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1, proc.stderr
    assert str(path) in errors[0] and problem in errors[0], errors[0]
    assert not list(run.runs.rglob("video.mp4")) and not list(run.runs.rglob("*.part*"))


@case("a URL instead of a file", "exit 2: `URLs are not supported; download the song and give the file's path`")
def test_a_url_is_refused(tmp_path):
    proc = cli("https://example.com/song.mp3", "--output.runs_dir", str(tmp_path))
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        "soundsight: error: https://example.com/song.mp3: URLs are not supported; download the song and give the "
        "file's path"
    ]


NOT_FILES = [
    pytest.param("device", "is a character device", marks=case(
        "`/dev/zero` as the song (it never ends)", "exit 2 at once: `/dev/zero: is a character device, not a song file`")),
    pytest.param("pipe", "is a pipe", marks=case(
        "a pipe as the song (`<(cat song.ogg)`)", "exit 2 at once: `is a pipe, not a song file`; the pipe is not read")),
    pytest.param("folder", "is a folder", marks=case("a folder as the song", "exit 2 at once: `is a folder, not a song file`")),
]  # fmt: skip


@pytest.mark.parametrize("kind, problem", NOT_FILES)
def test_what_is_not_a_regular_file_is_refused(kind, problem, excerpt, tmp_path, prefect_server):
    writer = None
    if kind == "device":
        song = Path("/dev/zero")
    elif kind == "folder":
        song = tmp_path / "album"
        song.mkdir()
    else:  # what bash's <(cat song.ogg) gives: a pipe with a writer behind it
        song = tmp_path / "fd63"
        os.mkfifo(song)
        writer = subprocess.Popen(["sh", "-c", f"cat '{excerpt}' > '{song}'"], start_new_session=True)
    try:
        started = time.monotonic()
        proc = cli(str(song), "--output.runs_dir", str(tmp_path / "runs"), timeout=120)
        assert proc.returncode == 2 and time.monotonic() - started < 60, proc.stderr
        assert error_lines(proc.stderr) == [f"soundsight: error: {song}: {problem}, not a song file; save the song to "
                                            "a file and give that file's path"], proc.stderr  # fmt: skip
        assert not (tmp_path / "runs").exists()
        if writer is not None:
            assert writer.poll() is None  # nobody opened the pipe: the writer still waits
    finally:
        if writer is not None:
            os.killpg(writer.pid, signal.SIGKILL)
            writer.wait()


# The tests run as root, who reads any file: the CLI runs without the capabilities that let it.
AS_A_USER = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search")


@case("a song the user cannot read (mode 0000)", "exit 2: `<path>: cannot be read (permission denied)`")
def test_an_unreadable_song_is_refused(excerpt, tmp_path):
    song = tmp_path / "private.wav"
    song.write_bytes(excerpt.read_bytes())
    song.chmod(0o000)
    proc = cli(str(song), "--output.runs_dir", str(tmp_path / "runs"), prefix=AS_A_USER)
    assert proc.returncode == 2, proc.stderr
    assert error_lines(proc.stderr) == [f"soundsight: error: {song}: cannot be read (permission denied)"]


# --- settings a user can get wrong -----------------------------------------------------------------

BAD_SETTINGS = [
    pytest.param(["--render.width", "641"], "render: width must be even for H.264 video, got 641 (use 640 or 642)",
                 marks=case("an odd frame width (641)", "exit 2 before any work: `width must be even ... (use 640 or 642)`")),
    pytest.param(["--output.run_name", "../x"], "output.run_name: must be a single folder name",
                 marks=case("`--output.run_name ../x`", "exit 2: must be a single folder name inside runs_dir")),
    pytest.param(["--output.run_name", "/tmp/abs"], "output.run_name: must be a single folder name",
                 marks=case("an absolute `--output.run_name`", "exit 2: must be a single folder name inside runs_dir")),
    pytest.param(["--render.fps", "many"], "render.fps: Input should be a valid integer",
                 marks=case("a non-number where a number goes", "exit 2: names the setting and what it should be")),
    pytest.param(["--output.run_name", "two\nlines"], "output.run_name: must be printable",
                 marks=case("a newline in `--output.run_name`", "exit 2 before any work: must be printable")),
    pytest.param(["--output.run_name", "\x1b[31mred"], "output.run_name: must be printable",
                 marks=case("a terminal escape (control bytes) in `--output.run_name`", "exit 2 before any work: must be printable")),
    pytest.param(["--output.run_name", "x" * 300], "output.run_name: must be at most 255 bytes long",
                 marks=case("a 300-character `--output.run_name`", "exit 2 before any work: at most 255 bytes (a folder name)")),
]  # fmt: skip


@pytest.mark.parametrize("flags, message", BAD_SETTINGS)
def test_bad_settings_are_refused_up_front(flags, message, excerpt, tmp_path):
    started = time.monotonic()
    proc = cli(str(excerpt), "--output.runs_dir", str(tmp_path / "runs"), *flags)
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and message in proc.stderr, proc.stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def unknown_variable_run(excerpt, tmp_path_factory, prefect_server) -> StartedCli:
    env = dict(os.environ, SOUNDSIGHT_RENDER__FPSS="30")
    return StartedCli(str(excerpt), tmp_path_factory.mktemp("runs"), *SMALL, env=env)


@case("a misspelt `SOUNDSIGHT_RENDER__FPSS=30`", "a warning naming the variable; the render goes on")
def test_an_unknown_environment_variable_is_named(unknown_variable_run):
    proc = unknown_variable_run.result()
    assert proc.returncode == 0, proc.stderr
    assert "warning: SOUNDSIGHT_RENDER__FPSS is not a soundsight setting; it is ignored" in proc.stderr


@case("`soundsight render --help`", "every flag described, defaults as typed (no PydanticUndefined, no PosixPath)")
def test_help_shows_every_setting_plainly():
    proc = subprocess.run([sys.executable, "-m", "soundsight.flows.cli", "render", "--help"], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    text = " ".join(proc.stdout.split())
    assert "PydanticUndefined" not in text and "PosixPath" not in text
    assert (
        "--output.runs_dir VALUE Each song gets a folder in runs_dir named SLUG-HASH8 (its title, its audio's hash). (default: runs)"
        in text
    )
    assert "(default: false); true/false (also yes/no, on/off, 1/0)" in text
    from soundsight.settings import Settings

    for group, field in Settings.model_fields.items():
        for name, sub in getattr(field.annotation, "model_fields", {}).items():
            assert f"--{group}.{name}" in text and sub.description, f"{group}.{name} has no description"


# --- hostile input ---------------------------------------------------------------------------------


@case("a runs folder whose path contains `'`", "renders; the clip list given to ffmpeg is quoted")
def test_a_quote_in_the_runs_folder(excerpt, tmp_path, prefect_server):
    video, _ = render(excerpt, tmp_path / "it's mine", render={"width": 64, "height": 36})
    assert video.is_file() and "it's mine" in str(video)


@case("song tags of 5 KB with markdown, links and an image beacon",
      "tags capped at 200 characters, escaped in the UI's markdown, never in the LLM prompt")  # fmt: skip
def test_hostile_tags_are_capped_escaped_and_kept_from_the_prompt(excerpt, tmp_path, prefect_server, ffprobe):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    title = "**Pwn** ![b](http://evil.example/beacon.png) <img src=x onerror=alert(1)> [click](http://x) " * 60
    song = tmp_path / "tagged.flac"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(excerpt), "-metadata", f"title={title}",
                    "-metadata", "artist=Mallory", str(song)], check=True)  # fmt: skip
    video, _ = render(song, tmp_path / "runs", render={"width": 64, "height": 36})
    run = video.parent
    meta = json.loads((run / "song.json").read_text())
    assert len(meta["title"]) <= 200 and meta["artist"] == "Mallory"
    assert "Pwn" not in (run / "prompt.txt").read_text() and "Mallory" not in (run / "prompt.txt").read_text()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{run.name}-script"]))
        )
    markdown = max(found, key=lambda a: a.created).data
    assert "![" not in markdown and "<img" not in markdown and "](http" not in markdown
    assert r"\!\[b\]" in markdown  # shown as text
    tags = probe(ffprobe, video)
    assert tags  # the container still opens; its title tag is the capped one
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=title", "-of", "json", str(video)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert len(json.loads(out.stdout)["format"]["tags"]["title"]) <= 200


@case("a umask of 022 (the usual)", "output files are 0644 (not a temporary file's 0600)")
def test_output_files_respect_the_umask(excerpt, tmp_path, prefect_server):
    video, _ = render(excerpt, tmp_path, render={"width": 64, "height": 36})
    old = os.umask(0o022)
    os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in video.parent.rglob("*") if p.is_file() and not p.is_symlink()}
    assert modes and set(modes.values()) == {0o666 & ~old}, modes


# --- interruptions ----------------------------------------------------------------------------------


def temporary_server_env(tmp_path: Path, database: Path | None) -> dict[str, str]:
    """No PREFECT_API_URL: the CLI starts its own temporary server (PREFECT_HOME keeps it apart),
    on a copy of `database` (a migrated one: conftest's `migrated_prefect_database`) when given."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    home = tmp_path / "prefect-home"
    home.mkdir()
    if database is not None:
        copy_database(database, home / PREFECT_DATABASE)
    env["PREFECT_HOME"] = str(home)
    return env


def servers_of(home: Path) -> list[int]:
    """Pids of temporary Prefect servers whose environment uses PREFECT_HOME=`home`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"prefect.server.api.server:create_app" in cmd and f"PREFECT_HOME={home}".encode() in environ:
            pids.append(int(proc.name))
    return pids


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if needle in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"{needle!r} never came:\n{seen}")


@case("Ctrl-C during a render with the temporary server",
      "stops within seconds with one line, exit 130; no server left; the same command resumes")  # fmt: skip
def test_ctrl_c_stops_cleanly_and_resumes(excerpt, tmp_path, migrated_prefect_database):
    env = temporary_server_env(tmp_path, migrated_prefect_database)
    # The stages after segment take half a second at this size; scene 0 stalling in this first run
    # (tests/faults) keeps the run busy when the signal comes, instead of racing its end.
    stalled = dict(env, TESTS_FAULT="stall:0", PYTHONPATH=str(ROOT / "tests" / "faults"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundsight.flows.cli", "render", str(excerpt), "--output.runs_dir",
         str(tmp_path / "runs"), *SMALL],
        cwd=ROOT, env=stalled, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_line(proc, "segment: Completed", 300)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - started < 15, err
    assert err.count("interrupted") == 1 and "Traceback" not in err, err
    deadline = time.monotonic() + 1
    while servers_of(tmp_path / "prefect-home") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert servers_of(tmp_path / "prefect-home") == []
    again = cli(str(excerpt), "--output.runs_dir", str(tmp_path / "runs"), *SMALL, env=env)
    assert again.returncode == 0, again.stderr
    assert "load: Cached" in again.stderr and "segment: Cached" in again.stderr


def flow_run_of(runs_dir: Path):
    """The one flow run whose settings name `runs_dir`, and its task runs, as the session's server has them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200, sort="START_TIME_DESC")
        (run,) = [
            r for r in runs if r.parameters.get("settings", {}).get("output", {}).get("runs_dir") == str(runs_dir)
        ]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return run, tasks


@pytest.mark.parametrize("signum, status", [
    pytest.param(signal.SIGINT, 130, marks=case("Ctrl-C during a render on a running Prefect server",
                                                "exit 130; the run and its unfinished tasks are marked Cancelled on the server")),
    pytest.param(signal.SIGHUP, 129, marks=case("the terminal closes (SIGHUP) during a render on a running Prefect server",
                                                "exit 129; the run and its unfinished tasks are marked Cancelled on the server")),
])  # fmt: skip
def test_an_interrupted_render_is_cancelled_on_the_server(signum, status, excerpt, tmp_path, prefect_server):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundsight.flows.cli", "render", str(excerpt), "--output.runs_dir", str(runs), *SMALL],
        cwd=ROOT, env=dict(os.environ, TESTS_FAULT="stall:0", PYTHONPATH=str(ROOT / "tests" / "faults")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_line(proc, "script: Completed", 300)
    time.sleep(1)  # scenes are rendering (scene 0 stalls: tests/faults)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status and err.count("interrupted") == 1 and "Traceback" not in err, err
    run, tasks = flow_run_of(runs)
    assert run.state.is_cancelled(), run.state
    assert tasks and all(t.state.is_final() for t in tasks), [(t.name, t.state.name) for t in tasks]


# --- a user's edit that cannot be used ---------------------------------------------------------------


@case("a garbled edit of script.json", "exit 2 naming the file that holds the edit; deleting that file starts over")
def test_a_garbled_script_edit_names_its_file_and_deleting_it_starts_over(excerpt, tmp_path, prefect_server):
    runs = tmp_path / "runs"
    video, _ = render(excerpt, runs, render={"width": 64, "height": 36})
    (video.parent / "script.json").write_text('{"scenes": [garbled')  # through the link, as most editors do
    proc = cli(str(excerpt), "--output.runs_dir", str(runs), *SMALL)
    (line,) = error_lines(proc.stderr)
    assert proc.returncode == 2 and "your edit of script.json cannot be used" in line, proc.stderr
    named = Path(line.removeprefix("soundsight: error: ").split(": your edit")[0])
    assert named.is_file() and named.parent.parent.name == "script" and "garbled" in named.read_text(), named
    named.unlink()
    again = cli(str(excerpt), "--output.runs_dir", str(runs), *SMALL)
    assert again.returncode == 0, again.stderr
    assert json.loads((video.parent / "script.json").read_text())["scenes"]


@case(
    "`kill -9` of the CLI mid-render", "its temporary server ends with it; the next run sweeps the stale `.part` files"
)
def test_a_killed_cli_leaves_no_server_and_no_temporary_files(excerpt, tmp_path, migrated_prefect_database):
    env = temporary_server_env(tmp_path, migrated_prefect_database)
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundsight.flows.cli", "render", str(excerpt), "--output.runs_dir",
         str(tmp_path / "runs"), *SMALL],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_line(proc, "load: Completed", 300)
    assert servers_of(tmp_path / "prefect-home")
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    stale = run_dir / ".stages" / "render" / f".scene_000.{proc.pid}.abc123.part.mp4"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a clip")  # what the killed process was writing
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while servers_of(tmp_path / "prefect-home") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert servers_of(tmp_path / "prefect-home") == []
    again = cli(str(excerpt), "--output.runs_dir", str(tmp_path / "runs"), *SMALL, env=env)
    assert again.returncode == 0, again.stderr
    assert not stale.exists() and not list((tmp_path / "runs").rglob("*.part*"))


# --- services and models that are not there ---------------------------------------------------------


@case("an LLM endpoint nobody listens on", "fails in seconds, one line naming the URL, `after 1 attempt`")
def test_an_unreachable_llm_fails_fast(excerpt, tmp_path, prefect_server):
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    proc = cli(str(excerpt), "--output.runs_dir", str(tmp_path), *SMALL, "--script.backend", "llm",
               "--script.llm_base_url", url)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 60  # of which the CLI's own start-up is most
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and url in errors[0] and "after 1 attempt " in errors[0], proc.stderr


@pytest.fixture(scope="module")
def wan_without_weights_run(excerpt, tmp_path_factory, prefect_server) -> StartedCli:
    folder = tmp_path_factory.mktemp("runs")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(folder / "empty-hf-cache"))
    return StartedCli(str(excerpt), folder, *SMALL, "--render.backend", "wan", env=env)


@case(
    "`--render.backend wan` without its weights", "one line naming the checkpoint and the download command; no cluster"
)
def test_a_gpu_backend_without_weights_says_how_to_get_them(wan_without_weights_run):
    proc = wan_without_weights_run.result()
    assert proc.returncode == 2, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    assert (
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in errors[0] and "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in errors[0]
    )
    assert "distributed" not in proc.stderr and "dask" not in proc.stderr.lower()


@pytest.fixture(scope="module")
def logged_run(excerpt, tmp_path_factory, prefect_server) -> StartedCli:
    env = dict(os.environ, PREFECT_LOGGING_LEVEL="INFO")  # Prefect's default (the suite runs at WARNING)
    return StartedCli(str(excerpt), tmp_path_factory.mktemp("runs"), *SMALL, env=env)


@case("a CLI run (that may fail)", "its logs are on the Prefect server, where the error line sends the user")
def test_cli_runs_send_their_logs_to_the_server(logged_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    proc = logged_run.result()
    assert proc.returncode == 0, proc.stderr
    assert "INFO" not in proc.stderr and "Finished in state" not in proc.stderr  # the terminal stays quiet
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200, sort="START_TIME_DESC")
        mine = [
            r
            for r in runs
            if r.parameters.get("settings", {}).get("output", {}).get("runs_dir") == str(logged_run.runs)
        ]
        assert len(mine) == 1
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[mine[0].id])))
    messages = [log.message for log in logs]
    assert any("Finished in state Completed" in m for m in messages), messages


# --- the generated table ----------------------------------------------------------------------------


def test_the_robustness_doc_lists_every_case(request):
    rows = DOC.read_text() if DOC.is_file() else ""
    marks = [m for item in request.session.items for m in item.iter_markers("robustness")]
    missing = sorted({m.kwargs["what"] for m in marks if m.kwargs["what"] not in rows})
    assert not missing, f"docs/robustness.md is stale: regenerate it (see this module's docstring); missing {missing}"
