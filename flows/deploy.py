"""Create (or update) soundsight's deployments on a process work pool.

    python -m soundsight.flows.deploy                                   # pool "soundsight", catalogue at 02:00 UTC
    python -m soundsight.flows.deploy --pool gpu --catalogue /srv/music/catalogue.toml --timezone Europe/Paris

render-song        one song. Parameters: `song` (a path on the worker) and `settings` (soundsight's
                   pydantic Settings: the UI shows them as a validated form).
nightly-catalogue  `render-catalogue` over --catalogue (a folder, or a manifest with per-song
                   overrides) on a cron schedule, default 02:00 in --timezone.

Workers run the flows from --workdir (default: this checkout; in the Docker image /opt/soundsight).
The pool is created when missing. Defaults come from SOUNDSIGHT_POOL, SOUNDSIGHT_CATALOGUE,
SOUNDSIGHT_CATALOGUE_CRON and SOUNDSIGHT_CATALOGUE_TIMEZONE.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ROOT = Path(__file__).resolve().parent.parent
RENDER_SONG, NIGHTLY = "render-song", "nightly-catalogue"


def ensure_pool(pool: str) -> None:
    """Create process work pool `pool` unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            print(f"created process work pool {pool!r}")


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


def deploy(
    pool: str,
    catalogue: str,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    workdir: Path = ROOT,
    schedule_active: bool = True,
    heartbeat_seconds: int = 60,
) -> list[UUID]:
    """Both deployments on `pool`, and the automation that crashes runs of lost hosts; returns the ids."""
    from prefect import deploy as prefect_deploy
    from prefect import flow
    from prefect.schedules import Cron

    from soundsight import __version__

    ZoneInfo(timezone)  # fail here, not at 02:00, on a misspelt zone
    ensure_pool(pool)
    ensure_crash_automation(heartbeat_seconds)
    heartbeats = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat_seconds)}}
    source = str(Path(workdir).resolve())
    song = flow.from_source(source, "flows/music_video.py:render_song").to_deployment(
        name=RENDER_SONG,
        version=__version__,
        tags=["soundsight"],
        job_variables=heartbeats,
        description="Render one song into a music video. `song` is a path on the worker's machine.",
    )
    nightly = flow.from_source(source, "flows/catalogue.py:render_catalogue").to_deployment(
        name=NIGHTLY,
        version=__version__,
        tags=["soundsight"],
        parameters={"catalogue": catalogue},
        job_variables=heartbeats,
        schedules=[Cron(cron, timezone=timezone, active=schedule_active)],
        description=f"Render the catalogue {catalogue} every day ({cron}, {timezone}); unchanged songs recompute nothing.",
    )
    return prefect_deploy(song, nightly, work_pool_name=pool, print_next_steps_message=False, ignore_warnings=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m soundsight.flows.deploy`; returns the exit status."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m soundsight.flows.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pool", default=env("SOUNDSIGHT_POOL", "soundsight"), help="process work pool (created when missing)"
    )
    parser.add_argument(
        "--catalogue",
        default=env("SOUNDSIGHT_CATALOGUE", "catalogue"),
        help="folder of songs or manifest (.toml/.yaml/.json) for nightly-catalogue, as the worker sees it",
    )
    parser.add_argument(
        "--cron", default=env("SOUNDSIGHT_CATALOGUE_CRON", "0 2 * * *"), help="nightly-catalogue's schedule"
    )
    parser.add_argument(
        "--timezone", default=env("SOUNDSIGHT_CATALOGUE_TIMEZONE", "UTC"), help="IANA zone of the schedule"
    )
    parser.add_argument("--workdir", default=str(ROOT), help="soundsight checkout on the workers' machines")
    parser.add_argument("--paused", action="store_true", help="create the nightly schedule inactive")
    parser.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=int(env("SOUNDSIGHT_HEARTBEAT_SECONDS", "60")),
        help="seconds between flow-run heartbeats (at least 30); a run that misses three is marked Crashed",
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
        args.pool, args.catalogue, args.cron, args.timezone, Path(args.workdir), not args.paused, args.heartbeat_seconds
    )
    print(
        f"deployed {RENDER_SONG} and {NIGHTLY} ({args.cron}, {args.timezone}) on pool {args.pool!r}: "
        f"{', '.join(map(str, ids))}\nstart a worker:  prefect worker start --pool {args.pool} --type process"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
