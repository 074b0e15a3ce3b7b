"""Deployments on real components: the session's Prefect server, a real process worker, runs
triggered over the API, states and artifacts read back from the server.

Resume is proven by counting task runs: after a failure (or a killed process) a retry - what the
UI's Retry button sends - executes only what had not finished, and everything else is `Cached`.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soundsight.flows.prefect_server import http_status
from soundsight.schemas import Segmentation
from soundsight.tasks.load import slugify
from tests.deploy_fixtures import (
    HEARTBEAT_SECONDS,
    NIGHTLY,
    RENDER_SONG,
    ROOT,
    artifacts,
    client,
    fault,
    fetch,
    retry_like_the_ui,
    task_states,
    trigger,
    wait_final,
    wait_heartbeat,
    wait_task_states,
)

UPSTREAM = ("load", "segment", "analyse", "script")


def run_dir_of(stack, song: Path) -> Path:
    (found,) = [p for p in stack.runs.iterdir() if p.name.startswith(song.stem.lower())]
    return found


def scene_mtimes(run_dir: Path) -> dict[str, int]:
    """render-scene-NNN -> mtime of every clip rendered in the run folder (the stage's own files: a
    crashed run never linked its finished scenes into scenes/)."""
    clips = (run_dir / ".stages" / "render").glob("*/scene_*.mp4")
    return {f"render-scene-{p.stem[-3:]}": p.stat().st_mtime_ns for p in clips}


# --- docker/: validated without a Docker engine ----------------------------------------------------


def compose_cli() -> list[str] | None:
    """`docker compose` (v2) when this machine has it, else None."""
    import shutil
    import subprocess

    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) is None:
            continue
        probe = subprocess.run([*cli, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and "v2." in probe.stdout:
            return cli
    return None


def test_compose_file_describes_the_production_stack():
    import os
    import subprocess

    import yaml

    compose = ROOT / "docker" / "compose.yaml"
    spec = yaml.safe_load(compose.read_text())
    services = spec["services"]
    assert {
        "postgres",
        "prefect-server",
        "deploy",
        "worker",
        "catalogue-worker",
        "vllm",
        "dask-scheduler",
        "gpu-worker",
        "media",
    } <= set(services)
    server = services["prefect-server"]["environment"]
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "PREFECT_SERVER_API_AUTH_STRING" in server and "PREFECT_UI_API_URL" in server
    worker = services["worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"] and "process" in worker["command"]
    # GPU hosts take songs one at a time; the catalogue runs (which wait for songs) never take their slot
    assert " ".join(worker["command"]).endswith("--work-queue songs --limit 1")
    assert services["catalogue-worker"]["command"][-2:] == ["--work-queue", "catalogue"]
    assert services["catalogue-worker"]["environment"] == worker["environment"]
    assert worker["environment"]["PREFECT_API_AUTH_STRING"] == server["PREFECT_SERVER_API_AUTH_STRING"]
    assert worker["environment"] == services["deploy"]["environment"]  # the form's defaults = the worker's
    assert worker["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert services["vllm"]["image"] == "vllm/vllm-openai:v0.32.0"  # the release the tests run (docker/vllm.md)
    assert services["dask-scheduler"]["image"] == services["gpu-worker"]["image"]
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / "docker" / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        for gpu in service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", []):
            assert gpu["capabilities"] == ["gpu"], name

    cli = compose_cli()
    if cli is not None:  # the real parser, when this machine has Compose v2
        env = dict(os.environ, POSTGRES_PASSWORD="x", PREFECT_AUTH="admin:x")
        checked = subprocess.run([*cli, "-f", str(compose), "config", "-q"], capture_output=True, text=True, env=env)
        assert checked.returncode == 0, checked.stderr


def test_images_install_exactly_as_readme_says():
    """docker/build_and_test.sh builds and runs these images for real (podman; docker/README.md has
    the results); here: what they install, and that the compose file builds them."""
    readme = (ROOT / "README.md").read_text()
    assert "./install.sh && .venv/bin/soundsight render --demo" in readme
    text = (ROOT / "docker" / "Dockerfile").read_text()
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    assert len(runs) == 1 and runs[0].startswith("RUN ./install.sh")
    assert [line for line in text.splitlines() if line.startswith("COPY ")] == ["COPY . /opt/soundsight/"]
    ignored = (ROOT / "docker" / "soundsight.dockerignore").read_text().split()
    assert {".git", ".venv", "runs"} <= set(ignored)
    for folder in ("soundsight", "flows", "tasks", "models", "prompts", "deployments"):
        assert (ROOT / folder).is_dir() and not any(folder == i.strip("/*") for i in ignored), folder
    for name in ("Dockerfile", "gpu-worker.Dockerfile"):  # Docker's per-Dockerfile ignore files: the same list
        assert (ROOT / "docker" / f"{name}.dockerignore").resolve() == (ROOT / "docker" / "soundsight.dockerignore")
    gpu = (ROOT / "docker" / "gpu-worker.Dockerfile").read_text()
    assert "import torch, diffusers, dask_cuda, distributed, soundsight.models.render.diffusion" in gpu


# --- prefect deploy --all on a server that requires authentication ---------------------------------


def test_prefect_deploy_all_on_a_server_with_auth(tmp_path, migrated_prefect_database):
    """README's `prefect deploy --all` against a server with PREFECT_SERVER_API_AUTH_STRING (as in
    docker/compose.yaml): clients without the credentials are refused; a worker with
    PREFECT_API_AUTH_STRING serves the catalogue queue and its run completes."""
    import os
    import secrets
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from soundsight.deployments.deploy import CRASH_AUTOMATION
    from tests.deploy_fixtures import Worker
    from tests.support import start_prefect_server, stop_process_group

    auth = "soundsight:" + secrets.token_hex(8)
    home = tmp_path / "home"
    home.mkdir()
    server, api = start_prefect_server(home, {"PREFECT_SERVER_API_AUTH_STRING": auth}, migrated_prefect_database)
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_API_AUTH_STRING=auth, PREFECT_HOME=str(home))
    worker = Worker("soundsight", env, tmp_path, args=("--work-queue", "catalogue"))

    def cli(*args: str, **overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "prefect", *args], env={**env, **overrides}, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    try:
        assert http_status(api + "/health") == 200  # probes need no credentials
        for credentials in ("", "soundsight:wrong"):
            assert http_status(api + "/deployments/filter", b"{}", credentials) == 401
        assert http_status(api + "/deployments/filter", b"{}", auth) == 200
        refused = cli("work-pool", "ls", PREFECT_API_AUTH_STRING="")
        assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr, refused

        created = cli("work-pool", "create", "soundsight", "--type", "process")
        assert created.returncode == 0, created.stdout + created.stderr
        deployed = cli("--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr

        with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            from prefect.automations import Automation

            with client() as c:
                song = c.read_deployment_by_name(RENDER_SONG)
                nightly = c.read_deployment_by_name(NIGHTLY)
            for deployment in (song, nightly):
                assert deployment.pull_steps == [
                    {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
                ]
            assert (song.work_queue_name, nightly.work_queue_name) == ("songs", "catalogue")
            assert song.job_variables["env"]["PREFECT_FLOWS_DEFAULT_RETRIES"] == "1"
            assert nightly.job_variables["env"] == {
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60",
                "PREFECT_LOGGING_EXTRA_LOGGERS": "soundsight",
            }
            (schedule,) = nightly.schedules
            assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
            assert "heartbeat" in Automation.read(name=CRASH_AUTOMATION).actions[0].message  # the build step

            worker.start()
            empty = tmp_path / "no-songs"
            empty.mkdir()
            run_id = trigger(NIGHTLY, {"catalogue": str(empty)})
            run = wait_final(run_id)
            assert run.state.is_completed(), run.state
            (table,) = [a for a in artifacts(run_id).values() if a.type == "table"]
            assert json.loads(table.data) == [{"song": "(no songs found)"}] and table.key == "catalogue-no-songs"
    finally:
        worker.stop()
        stop_process_group(server, grace=20)


# --- deployments on the session's server and a real worker -----------------------------------------


def test_deployments_offer_the_settings_form_and_a_nightly_schedule(stack):
    from prefect.exceptions import PrefectHTTPStatusError

    with client() as c:
        song = c.read_deployment_by_name(RENDER_SONG)
        nightly = c.read_deployment_by_name(NIGHTLY)
        pool = c.read_work_pool(stack.pool)
        assert pool.type == "process"
        assert song.work_pool_name == nightly.work_pool_name == stack.pool
        assert song.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
        assert (song.work_queue_name, nightly.work_queue_name) == ("songs", "catalogue")
        # deployments/prefect.yaml's job variables: heartbeats (crash detection) and the retry policy
        assert song.job_variables["env"] == {
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            "PREFECT_LOGGING_EXTRA_LOGGERS": "soundsight",  # soundsight's lines on the run's page
            "PREFECT_FLOWS_DEFAULT_RETRIES": "1",
            "PREFECT_FLOWS_DEFAULT_RETRY_DELAY_SECONDS": "10",
        }
        assert nightly.job_variables["env"] == {
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            "PREFECT_LOGGING_EXTRA_LOGGERS": "soundsight",
        }

        schema = song.parameter_openapi_schema
        assert schema["required"] == ["song"] and schema["properties"]["settings"]["$ref"] == "#/definitions/Settings"
        defs = schema["definitions"]
        assert set(defs["Settings"]["properties"]) >= {"pipeline", "segment", "analysis", "script", "render", "output"}
        render = defs["RenderSettings"]["properties"]
        assert {"width", "height", "seed", "backend"} <= set(render) and "wan" in render["backend"]["enum"]
        assert defs["OutputSettings"]["properties"]["force"]["items"]["enum"][0] == "load"
        # the form's defaults are the workers' settings (deployed with the same SOUNDSIGHT_* env)
        assert schema["properties"]["settings"]["default"]["render"]["width"] == 320

        (schedule,) = nightly.schedules
        assert (
            schedule.active and schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Paris"
        )
        assert nightly.parameters == {"catalogue": str(stack.catalogue)}

        # the server validates parameters against the form's schema: a bad value never reaches a worker
        with pytest.raises(PrefectHTTPStatusError, match="409|422"):
            c.create_flow_run_from_deployment(
                song.id, parameters={"song": "x.ogg", "settings": {"render": {"width": 3}}}
            )


def test_render_song_run_publishes_its_artifacts(stack):
    song = stack.songs["a"]
    run_id = trigger(RENDER_SONG, {"song": str(song), "settings": stack.settings()})
    run = wait_final(run_id)
    assert run.state.is_completed(), run.state
    run_dir = run_dir_of(stack, song)
    scenes = len(Segmentation.model_validate_json((run_dir / "segments.json").read_text()).segments)

    found = artifacts(run_id)
    assert {"script", "segments", "progress", "preview", "video", "timings"} <= set(found), sorted(found)
    script = found["script"].data
    assert "### Scene 1 ·" in script and f"### Scene {scenes} ·" in script and "**Characters:**" in script
    segments = json.loads(found["segments"].data)
    assert len(segments) == scenes and {"start", "end", "cut", "Instrumental intensity"} <= set(segments[0])
    assert found["progress"].data == 100.0 and found["progress"].description == f"Scenes: {scenes} of {scenes} finished"

    preview = found["preview"].data
    assert found["preview"].type == "image" and preview.startswith(stack.media_url)
    gif = fetch(preview)
    assert gif[:6] in (b"GIF87a", b"GIF89a") and len(gif) < 400_000
    assert (run_dir / "preview.gif").read_bytes() == gif
    # The link names this run's own video (its stage folder), which a later run with other
    # settings never replaces; run_dir/video.mp4 points at the same file for now.
    assert found["video"].type == "markdown"  # a link artifact
    video_url = re.search(r"\((http[^)]+\.mp4)\)", found["video"].data).group(1)
    assert video_url.startswith(f"{stack.media_url}/{run_dir.name}/.stages/assemble/")
    assert fetch(video_url) == (run_dir / "video.mp4").read_bytes()

    timings = {row["stage"]: row for row in json.loads(found["timings"].data)}
    stages = ["load", "segment", "lyrics", "analyse", "script", "render", "assemble", "total"]
    assert list(timings) == stages + [f"render-scene-{i:03d}" for i in range(scenes)]  # then one row per scene
    assert timings["render"]["task runs"] == scenes and timings["total"]["task runs"] == scenes + 6


def test_failed_scene_retry_runs_only_that_scene(stack):
    song = stack.songs["b"]
    run_id = trigger(RENDER_SONG, {"song": str(song), "settings": stack.settings()}, job_variables=fault("fail:1"))
    run = wait_final(run_id)
    assert run.state.is_failed() and "scene 1" in run.state.message, run.state
    first = task_states(run_id, attempt=1)
    assert first["render-scene-001"] == "Failed" and "assemble" not in first
    assert all(state == "Completed" for name, state in first.items() if name != "render-scene-001"), first
    rendered = scene_mtimes(run_dir_of(stack, song))

    # A failed flow's process exits 0, so its worker sends no late Crashed report to race the retry.
    retried_at = retry_like_the_ui(run_id)
    run = wait_final(run_id, after=retried_at)
    assert run.state.is_completed() and run.run_count == 2, run.state

    second = task_states(run_id, attempt=2)
    executed = sorted(name for name, state in second.items() if state != "Cached")
    assert executed == ["assemble", "render-scene-001"], second
    assert set(second) == set(first) | {"assemble"}
    after = scene_mtimes(run_dir_of(stack, song))
    assert all(after[name] == mtime for name, mtime in rendered.items()), "a finished scene was rendered again"
    assert artifacts(run_id)["progress"].data == 100.0


@pytest.mark.robustness(
    what="the flow-run process is killed mid-render (OOM killer), then the run is retried",
    outcome="the crashed attempt's in-flight scenes are closed as Crashed and its artifacts removed; "
    "only the retry's artifacts are listed",
)
def test_killed_worker_run_resumes_on_a_new_worker(stack):
    """The flow-run process is SIGKILLed mid-render (as the OOM killer would); the worker that ran
    it is then SIGKILLed too and a fresh worker resumes the run."""
    song = stack.songs["c"]
    run_id = trigger(RENDER_SONG, {"song": str(song), "settings": stack.settings()}, job_variables=fault("kill:2"))
    run = wait_final(run_id)
    assert run.state.is_crashed(), run.state
    stack.worker.kill()
    # What the server saw before the kill (events still in the killed process never arrive):
    first = task_states(run_id, attempt=1, final=False)
    done = {name for name, state in first.items() if state == "Completed" and name.startswith("render-scene-")}
    assert "render-scene-002" not in done and "assemble" not in first, first
    rendered = scene_mtimes(run_dir_of(stack, song))

    stack.worker.start()
    retried_at = retry_like_the_ui(run_id)
    run = wait_final(run_id, after=retried_at)
    assert run.state.is_completed() and run.run_count == 2, run.state

    second = task_states(run_id, attempt=2)
    scenes = {name for name in second if name.startswith("render-scene-")}
    assert all(second[stage] == "Cached" for stage in UPSTREAM), second
    assert all(second[name] == "Cached" for name in done), second
    executed = {name for name, state in second.items() if state != "Cached"}
    assert {"render-scene-002", "assemble"} <= executed <= (scenes - done) | {"assemble"}, second
    after = scene_mtimes(run_dir_of(stack, song))
    cached = {name for name in scenes if second[name] == "Cached"}
    assert cached and all(after[name] == rendered[name] for name in cached), "a finished scene was rendered again"
    # Nothing of the killed attempt is left open, and each artifact is listed once (the retry's).
    open_runs = {name: state for name, state in task_states(run_id, attempt=1, final=False).items()
                 if state not in ("Completed", "Cached", "Failed", "Crashed", "Cancelled")}  # fmt: skip
    assert not open_runs, open_runs
    keys = [a.key for a in run_artifacts(run_id)]
    assert len(keys) == len(set(keys)) and {k.rsplit("-", 1)[-1] for k in keys} >= {"script", "progress", "video"}


@pytest.mark.robustness(
    what="the worker's whole host dies mid-run (no one left to report)",
    outcome="heartbeats stop; an automation marks the run Crashed after 3 missed; Retry resumes it on another worker",
)
def test_a_lost_host_is_marked_crashed_and_resumes(stack, fast_heartbeats):
    heartbeat = fast_heartbeats  # seconds; the deployments' own (HEARTBEAT_SECONDS) would make this 3x slower
    song = stack.songs["e"]
    job = fault("stall:1", heartbeat_seconds=heartbeat)
    run_id = trigger(RENDER_SONG, {"song": str(song), "settings": stack.settings()}, job_variables=job)
    scenes: list[str] = []

    def only_scene_1_left(states: dict[str, str]) -> bool:
        """Scene 1 hangs; every other scene and every stage before the render has finished."""
        segments = next(stack.runs.glob(f"{slugify(song.stem)}-*/segments.json"), None)
        if not scenes and segments is not None:
            n = len(Segmentation.model_validate_json(segments.read_text()).segments)
            scenes.extend(f"render-scene-{i:03d}" for i in range(n))
        others = [name for name in scenes if name != "render-scene-001"]
        return (
            bool(others)
            and states.get("render-scene-001") == "Running"
            and all(states.get(name) == "Completed" for name in others)
        )

    wait_task_states(run_id, only_scene_1_left)
    wait_heartbeat(run_id)  # at least one heartbeat is out: the automation's window has started
    lost_at = datetime.now(UTC)
    stack.worker.kill_host()
    run = wait_final(run_id, timeout=4 * heartbeat + 120)
    assert run.state.is_crashed() and "heartbeat" in (run.state.message or ""), run.state
    assert (run.state.timestamp - lost_at).total_seconds() < 3 * heartbeat + 60
    first = task_states(run_id, attempt=1, final=False)

    stack.worker.start()
    retried_at = retry_like_the_ui(run_id)
    run = wait_final(run_id, after=retried_at)
    assert run.state.is_completed() and run.run_count == 2, run.state
    second = task_states(run_id, attempt=2)
    assert all(second[stage] == "Cached" for stage in UPSTREAM), second
    assert second["render-scene-001"] == "Completed", second
    done = {name for name, state in first.items() if state == "Completed" and name.startswith("render-scene-")}
    assert all(second[name] == "Cached" for name in done), (first, second)


# --- what a deployment run shows and how a user's error ends ----------------------------------------


def run_artifacts(flow_run_id) -> list:
    """Every artifact the flow run has (with a key), each version."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client() as c:
        found = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [a for a in found if a.key]


def run_logs(flow_run_id) -> list:
    """The flow run's log records as the server has them (its task runs' included)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with client() as c:
        return c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))


@pytest.mark.robustness(
    what="a render-song run from the UI (a deployment run on a worker)",
    outcome="its page's logs show soundsight's own lines: each stage as it finishes, and its warnings",
)
def test_a_deployment_run_shows_soundsights_lines_and_warnings(stack):
    song = stack.songs["d"]
    settings = stack.settings()
    settings["segment"] = {"warn_confidence": 1.0}  # every tracker confidence is below it: the run warns
    run_id = trigger(RENDER_SONG, {"song": str(song), "settings": settings})
    run = wait_final(run_id)
    assert run.state.is_completed(), run.state
    deadline = time.monotonic() + 30  # logs arrive in batches
    while True:
        logs = run_logs(run_id)
        ours = [(log.name, log.level, log.message) for log in logs if log.name.startswith("soundsight")]
        if any("assemble: Completed" in m for _, _, m in ours) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert any(name == "soundsight.progress" and message == "segment: Completed" for name, _, message in ours), ours
    assert any(level >= 30 and "confidence" in message for _, level, message in ours), ours


@pytest.mark.robustness(
    what="a deployment run whose checkpoint folder does not exist (a user's error)",
    outcome="fails once (the retry policy is not applied), in one sentence naming the folder and the command; "
    "no traceback in its logs",
)
def test_a_users_error_fails_once_in_one_sentence(stack, tmp_path):
    missing = tmp_path / "no-such-wan"
    settings = stack.settings(backend="wan", model=str(missing))
    run_id = trigger(RENDER_SONG, {"song": str(stack.songs["a"]), "settings": settings})
    run = wait_final(run_id, timeout=120)
    assert run.state.is_failed() and run.run_count == 1, (run.state, run.run_count)
    time.sleep(12)  # the deployment's retry would have started by now (10 s)
    with client() as c:
        again = c.read_flow_run(run_id)
    assert again.run_count == 1 and again.state.is_failed(), again.state
    expected = (
        f"model checkpoint {missing}: no such folder; download one into it with: hf download "
        f"Wan-AI/Wan2.1-T2V-1.3B-Diffusers --local-dir {missing}"
    )
    assert expected in run.state.message, run.state.message
    messages = [log.message for log in run_logs(run_id)]
    assert not any("Traceback" in m or "Engine execution exited" in m for m in messages), messages
