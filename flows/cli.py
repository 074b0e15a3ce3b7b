"""`soundsight`: render songs into music videos from the command line.

    soundsight render song.mp3                 # any format ffmpeg reads
    soundsight render --demo                   # a public-domain chorale, synthesised offline
    soundsight render song.ogg --segment.mode random --render.fps 30

Every field of `soundsight.settings.Settings` is a flag (`--<group>.<field>`), and an env var
(`SOUNDSIGHT_<GROUP>__<FIELD>`). The CLI uses the Prefect server in PREFECT_API_URL, else a
server already running on 127.0.0.1:4200, else a temporary one (slower to start).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import urllib.request
from pathlib import Path

from pydantic import BaseModel, ValidationError

LOCAL_SERVER = "http://127.0.0.1:4200/api"


def settings_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Add one `--group.field` option per settings field; returns their dotted names."""
    from soundsight.settings import Settings

    names = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            group = parser.add_argument_group(f"{name} settings")
            for sub, subfield in annotation.model_fields.items():
                dotted = f"{name}.{sub}"
                group.add_argument(
                    f"--{dotted}",
                    dest=dotted,
                    metavar="VALUE",
                    default=None,
                    help=(subfield.description or "") + f" (default: {subfield.default!r})",
                )
                names.append(dotted)
        else:
            parser.add_argument(f"--{name}", dest=name, metavar="VALUE", default=None, help=field.description)
            names.append(name)
    return names


def settings_from_args(args: argparse.Namespace, names: list[str]):
    """`Settings` from environment variables, overridden by the flags given."""
    from soundsight.settings import Settings

    values: dict = {}
    for dotted in names:
        value = getattr(args, dotted)
        if value is None:
            continue
        if dotted == "output.force":
            value = [v for v in value.split(",") if v]
        group, _, field = dotted.partition(".")
        if field:
            values.setdefault(group, {})[field] = value
        else:
            values[group] = value
    # Flags override env vars group by group: start from the env-derived model and update it.
    base = Settings().model_dump()
    for key, value in values.items():
        if isinstance(value, dict):
            base[key].update(value)
        else:
            base[key] = value
    return Settings.model_validate(base)


def server_healthy(api_url: str, timeout: float = 0.5) -> bool:
    """Whether a Prefect server answers at `api_url` within `timeout` seconds."""
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def choose_prefect_server(say) -> None:
    """Use PREFECT_API_URL, else a server on 127.0.0.1:4200, else a temporary one."""
    if os.environ.get("PREFECT_API_URL"):
        return
    if server_healthy(LOCAL_SERVER):
        os.environ["PREFECT_API_URL"] = LOCAL_SERVER
        say(f"using the Prefect server at {LOCAL_SERVER}")
        return
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    say(
        "no Prefect server found: starting a temporary one (about 15 s). "
        "To skip this on every run, start one once:  prefect server start"
    )


class ProgressPrinter(logging.Handler):
    """Prints progress records as one timestamped line each."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.t0 = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record's message with the seconds since the run started."""
        self.stream.write(f"  [{time.monotonic() - self.t0:6.1f}s] {record.getMessage()}\n")
        self.stream.flush()


def render_command(args: argparse.Namespace, names: list[str]) -> int:
    """`soundsight render`: 0 and the video's path on stdout, else one error line and 1 or 2."""
    from soundsight.errors import SoundsightError

    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"soundsight: {msg}", file=sys.stderr))
    try:
        settings = settings_from_args(args, names)
    except ValidationError as e:
        first = e.errors()[0]
        print(f"soundsight: error: setting {'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    if args.demo == (args.song is not None):
        print("soundsight: error: give a song path or --demo (not both)", file=sys.stderr)
        return 2

    song = args.song
    if args.demo:
        from soundsight.flows.demo import DEMO_PIECE, demo_song

        song = str(demo_song(Path(settings.output.runs_dir) / "demo" / "bach-chorale-bwv66.6.wav"))
        say(f"demo song: {DEMO_PIECE} (public domain), synthesised to {song}")
    elif not Path(song).expanduser().exists():
        print(f"soundsight: error: {song}: file not found", file=sys.stderr)
        return 2

    choose_prefect_server(say)
    if not args.verbose:
        os.environ["PREFECT_LOGGING_LEVEL"] = "CRITICAL"
        os.environ["PREFECT_LOGGING_SERVER_LEVEL"] = "CRITICAL"
    progress = logging.getLogger("soundsight.progress")
    progress.setLevel(logging.INFO)
    progress.propagate = False
    if not args.quiet:
        progress.addHandler(ProgressPrinter(sys.stderr))

    from soundsight.flows.music_video import render_song

    try:
        video = render_song(song, settings)
    except SoundsightError as e:
        print(f"soundsight: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a stage failed: one line here, details in the Prefect UI / --verbose
        print(f"soundsight: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(video)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `soundsight` command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="soundsight", description="Turn songs into AI-authored music videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render one song into runs/<song>-<hash>/video.mp4")
    render.add_argument("song", nargs="?", help="audio file (mp3, wav, flac, ogg, opus, m4a, ...)")
    render.add_argument("--demo", action="store_true", help="render a synthesised public-domain chorale")
    render.add_argument("--verbose", action="store_true", help="show Prefect's own logs")
    render.add_argument("--quiet", action="store_true", help="print only the video path")
    names = settings_flags(render)
    args = parser.parse_args(argv)
    if args.command == "render":
        return render_command(args, names)
    return 2


if __name__ == "__main__":
    sys.exit(main())
