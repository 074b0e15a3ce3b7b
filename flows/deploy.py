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


def deploy(
    pool: str,
    catalogue: str,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    workdir: Path = ROOT,
    schedule_active: bool = True,
) -> list[UUID]:
    """Both deployments on `pool`; returns their ids."""
    from prefect import deploy as prefect_deploy
    from prefect import flow
    from prefect.schedules import Cron

    from soundsight import __version__

    ZoneInfo(timezone)  # fail here, not at 02:00, on a misspelt zone
    ensure_pool(pool)
    source = str(Path(workdir).resolve())
    song = flow.from_source(source, "flows/music_video.py:render_song").to_deployment(
        name=RENDER_SONG,
        version=__version__,
        tags=["soundsight"],
        description="Render one song into a music video. `song` is a path on the worker's machine.",
    )
    nightly = flow.from_source(source, "flows/catalogue.py:render_catalogue").to_deployment(
        name=NIGHTLY,
        version=__version__,
        tags=["soundsight"],
        parameters={"catalogue": catalogue},
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
    args = parser.parse_args(argv)
    try:
        ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(
            f"deploy: error: unknown time zone {args.timezone!r} (an IANA name such as Europe/Paris)", file=sys.stderr
        )
        return 2
    ids = deploy(args.pool, args.catalogue, args.cron, args.timezone, Path(args.workdir), not args.paused)
    print(
        f"deployed {RENDER_SONG} and {NIGHTLY} ({args.cron}, {args.timezone}) on pool {args.pool!r}: "
        f"{', '.join(map(str, ids))}\nstart a worker:  prefect worker start --pool {args.pool} --type process"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
