"""Create (or update) soundsight's deployments, their work pool and queues, and the crash automation.

    python -m soundsight.deployments.deploy                              # pool "soundsight", catalogue at 02:00 UTC
    python -m soundsight.deployments.deploy --pool gpu --catalogue /srv/music/catalogue.toml --timezone Europe/Paris

The deployments are defined in `deployments/prefect.yaml` (what `prefect deploy --all
--prefect-file deployments/prefect.yaml` deploys as is); this command reads that file and applies
what differs per installation:

render-song        one song. Parameters: `song` (a path on the worker) and `settings` (soundsight's
                   pydantic Settings: the UI shows them as a validated form). Work queue `songs`.
nightly-catalogue  `render-catalogue` over --catalogue (a folder, or a manifest with per-song
                   overrides) on a cron schedule, default 02:00 in --timezone. Work queue `catalogue`.

Workers run the flows from --workdir (default: this checkout; in the Docker image /opt/soundsight).
The pool and its queues are created when missing. Defaults come from SOUNDSIGHT_POOL,
SOUNDSIGHT_CATALOGUE, SOUNDSIGHT_CATALOGUE_CRON and SOUNDSIGHT_CATALOGUE_TIMEZONE.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from soundsight.environment import environment_variable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREFECT_FILE = HERE / "prefect.yaml"
RENDER_SONG, NIGHTLY = "render-song", "nightly-catalogue"
SONGS_QUEUE, CATALOGUE_QUEUE = "songs", "catalogue"
# Defaults of the flags below, for an installation that always deploys the same way.
POOL = environment_variable("SOUNDSIGHT_POOL", "default of --pool")
CATALOGUE = environment_variable("SOUNDSIGHT_CATALOGUE", "default of --catalogue")
CATALOGUE_CRON = environment_variable("SOUNDSIGHT_CATALOGUE_CRON", "default of --cron")
CATALOGUE_TIMEZONE = environment_variable("SOUNDSIGHT_CATALOGUE_TIMEZONE", "default of --timezone")
HEARTBEAT_SECONDS = environment_variable("SOUNDSIGHT_HEARTBEAT_SECONDS", "default of --heartbeat-seconds")


def ensure_pool(pool: str, max_songs: int | None = None) -> None:
    """Create process work pool `pool` and its queues `songs` and `catalogue` unless they exist.

    Parameters
    ----------
    pool : str
        Work pool name.
    max_songs : int, optional
        Concurrency limit of the `songs` queue: at most this many render-song runs at once,
        across every worker (None leaves the limit as it is; the workers' `--limit` still applies).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            print(f"created process work pool {pool!r}")
        for name in (SONGS_QUEUE, CATALOGUE_QUEUE):
            try:
                queue = client.read_work_queue_by_name(name, work_pool_name=pool)
            except ObjectNotFound:
                queue = client.create_work_queue(name, work_pool_name=pool)
            if name == SONGS_QUEUE and max_songs is not None:
                client.update_work_queue(queue.id, concurrency_limit=max_songs or None)


CRASH_AUTOMATION = "soundsight: mark runs whose heartbeats stop as crashed"


def ensure_crash_automation(heartbeat_seconds: int) -> None:
    """An automation that marks a flow run Crashed when its heartbeats stop.

    A worker reports a flow run that dies as Crashed, unless the worker's whole host died with
    it: then nobody does and the run would stay Running forever. Flow runs emit a heartbeat every
    `heartbeat_seconds` (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set in the deployments' job
    variables); three missed in a row mark the run Crashed, and the UI's Retry resumes it.
    """
    from prefect.automations import Automation
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    try:
        existing = Automation.read(name=CRASH_AUTOMATION)
    except ValueError:
        existing = None
    automation = Automation(
        name=CRASH_AUTOMATION,
        description="Flow runs whose worker host died: no one else reports them.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=3 * heartbeat_seconds,
        ),
        actions=[
            ChangeFlowRunState(
                state="CRASHED",
                message=f"no heartbeat for {3 * heartbeat_seconds} s: its worker host was lost; Retry resumes it",
            )
        ],
    )
    if existing is not None:
        automation.id = existing.id
        automation.update()
    else:
        automation.create()


def prepare(heartbeat_seconds: int | str = 60) -> dict[str, str]:
    """`prefect deploy`'s build step (deployments/prefect.yaml): the crash automation for `heartbeat_seconds`.

    Parameters
    ----------
    heartbeat_seconds : int or str
        Seconds between flow-run heartbeats (the deployments' PREFECT_FLOWS_HEARTBEAT_FREQUENCY).

    Returns
    -------
    dict
        The step's outputs: ``workdir``, this checkout.
    """
    ensure_crash_automation(int(heartbeat_seconds))
    return {"workdir": str(ROOT)}


def load_definitions(prefect_file: Path = PREFECT_FILE) -> dict[str, dict[str, Any]]:
    """The deployments of `prefect_file`, by name."""
    import yaml

    data = yaml.safe_load(prefect_file.read_text())
    return {d["name"]: d for d in data["deployments"]}


def deploy(
    pool: str,
    catalogue: str,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    workdir: Path = ROOT,
    schedule_active: bool = True,
    heartbeat_seconds: int = 60,
    max_songs: int | None = None,
) -> list[UUID]:
    """The deployments of deployments/prefect.yaml with this installation's values; returns their ids.

    Parameters
    ----------
    pool : str
        Process work pool (created, with its queues, when missing).
    catalogue : str
        nightly-catalogue's `catalogue` parameter, as the workers see it.
    cron, timezone : str
        nightly-catalogue's schedule.
    workdir : Path
        The soundsight checkout on the workers' machines.
    schedule_active : bool
        False creates the schedule paused.
    heartbeat_seconds : int
        Flow-run heartbeat period; three missed mark a run Crashed (`ensure_crash_automation`).
    max_songs : int, optional
        Concurrency limit of the `songs` queue (`ensure_pool`).

    Returns
    -------
    list of UUID
        The deployments' ids.
    """
    from prefect import deploy as prefect_deploy
    from prefect import flow
    from prefect.schedules import Cron

    from soundsight import __version__

    ZoneInfo(timezone)  # fail here, not at 02:00, on a misspelt zone
    ensure_pool(pool, max_songs)
    prepare(heartbeat_seconds)
    source = str(Path(workdir).resolve())
    deployments = []
    for name, spec in load_definitions().items():
        spec = copy.deepcopy(spec)
        job_variables = spec["work_pool"].get("job_variables") or {}
        job_variables.setdefault("env", {})["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(heartbeat_seconds)
        parameters = dict(spec.get("parameters") or {})
        schedules = []
        description = " ".join(spec.get("description", "").split())
        if name == NIGHTLY:
            parameters["catalogue"] = catalogue
            schedules = [Cron(cron, timezone=timezone, active=schedule_active)]
            description += f" Catalogue: {catalogue}, {cron} ({timezone})."
        deployments.append(
            flow.from_source(source, spec["entrypoint"]).to_deployment(
                name=name,
                version=__version__,
                tags=spec.get("tags"),
                parameters=parameters,
                job_variables=job_variables,
                work_queue_name=spec["work_pool"].get("work_queue_name"),
                schedules=schedules or None,
                description=description,
            )
        )
    return prefect_deploy(*deployments, work_pool_name=pool, print_next_steps_message=False, ignore_warnings=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m soundsight.deployments.deploy`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m soundsight.deployments.deploy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--pool", default=POOL.get("soundsight"), help="process work pool (created when missing)")
    parser.add_argument(
        "--catalogue",
        default=CATALOGUE.get("catalogue"),
        help="folder of songs or manifest (.toml/.yaml/.json) for nightly-catalogue, as the worker sees it",
    )
    parser.add_argument("--cron", default=CATALOGUE_CRON.get("0 2 * * *"), help="nightly-catalogue's schedule")
    parser.add_argument("--timezone", default=CATALOGUE_TIMEZONE.get("UTC"), help="IANA zone of the schedule")
    parser.add_argument("--workdir", default=str(ROOT), help="soundsight checkout on the workers' machines")
    parser.add_argument("--paused", action="store_true", help="create the nightly schedule inactive")
    parser.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=int(HEARTBEAT_SECONDS.get("60")),
        help="seconds between flow-run heartbeats (at least 30); a run that misses three is marked Crashed",
    )
    parser.add_argument(
        "--max-songs",
        type=int,
        default=None,
        help="at most this many render-song runs at once across all workers (the songs queue's limit; 0: none)",
    )
    args = parser.parse_args(argv)
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(
            f"deploy: error: unknown time zone {args.timezone!r} (an IANA name such as Europe/Paris)", file=sys.stderr
        )
        return 2
    if args.heartbeat_seconds < 30:
        print("deploy: error: --heartbeat-seconds must be at least 30 (Prefect's minimum)", file=sys.stderr)
        return 2
    ids = deploy(
        args.pool,
        args.catalogue,
        args.cron,
        args.timezone,
        Path(args.workdir),
        not args.paused,
        args.heartbeat_seconds,
        args.max_songs,
    )
    print(
        f"deployed {RENDER_SONG} and {NIGHTLY} ({args.cron}, {args.timezone}) on pool {args.pool!r}: "
        f"{', '.join(map(str, ids))}\nstart a worker:  prefect worker start --pool {args.pool} --type process"
        f"   (GPU hosts: --work-queue {SONGS_QUEUE} --limit 1; one more with --work-queue {CATALOGUE_QUEUE})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
