"""`soundsight`: render songs into music videos from the command line.

    soundsight render song.mp3                 # any format ffmpeg reads
    soundsight render --demo                   # a public-domain chorale, synthesised offline
    soundsight render song.ogg --segment.mode random --render.fps 30
    soundsight warm                            # compile the CPU stages' numba code once (install.sh does)

Every field of `soundsight.settings.Settings` is a flag (`--<group>.<field>`), and an env var
(`SOUNDSIGHT_<GROUP>__<FIELD>`). The CLI uses the Prefect server in PREFECT_API_URL, else a
server already running on 127.0.0.1:4200, else a temporary one (slower to start).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ValidationError

from soundsight.flows.prefect_server import server_healthy, server_usable, temporary_server

LOCAL_SERVER = "http://127.0.0.1:4200/api"


def _default_text(field) -> str:
    """A field's default as a user types it (not ``PydanticUndefined`` or ``PosixPath('runs')``)."""
    from pydantic_core import PydanticUndefined

    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    if value == "":
        return "(empty)"
    return str(value)


def settings_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Add one `--group.field` option per settings field; returns their dotted names."""
    from soundsight.settings import Settings

    names = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            group = parser.add_argument_group(f"{name} settings ({annotation.__doc__.splitlines()[0].rstrip('.')})")
            for sub, subfield in annotation.model_fields.items():
                dotted = f"{name}.{sub}"
                kind = "true/false (also yes/no, on/off, 1/0)" if subfield.annotation is bool else "VALUE"
                description = subfield.description or subfield.title or sub.replace("_", " ")
                group.add_argument(
                    f"--{dotted}",
                    dest=dotted,
                    metavar=kind if subfield.annotation is not bool else "BOOL",
                    default=None,
                    help=f"{description} (default: {_default_text(subfield)})"
                    + (f"; {kind}" if subfield.annotation is bool else ""),
                )
                names.append(dotted)
        else:
            parser.add_argument(
                f"--{name}",
                dest=name,
                metavar="VALUE",
                default=None,
                help=f"{field.description} (default: {_default_text(field)})",
            )
            names.append(name)
    return names


def settings_from_args(args: argparse.Namespace, names: list[str]):
    """`Settings` from environment variables, overridden by the flags given."""
    from soundsight.settings import Settings

    values: dict = {}
    list_fields = {f"{g}.{n}" for g, f in Settings.model_fields.items()
                   for n, sub in getattr(f.annotation, "model_fields", {}).items()
                   if getattr(sub.annotation, "__origin__", None) is list}  # fmt: skip
    for dotted in names:
        value = getattr(args, dotted)
        if value is None:
            continue
        if dotted in list_fields:
            value = [v.strip() for v in value.split(",") if v.strip()]
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


class ProgressPrinter(logging.Handler):
    """Prints records as one timestamped line each."""

    t0 = time.monotonic()

    def __init__(self, stream, prefix: str = ""):
        super().__init__()
        self.stream, self.prefix = stream, prefix

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record's message with the seconds since the CLI started."""
        self.stream.write(f"  [{time.monotonic() - self.t0:6.1f}s] {self.prefix}{record.getMessage()}\n")
        self.stream.flush()


def check_song_argument(song: str) -> str:
    """Why `song` cannot be rendered before any work starts ('' when it can): one line naming it."""
    from soundsight.media import song_file_problem

    problem = song_file_problem(song)
    return f"{song}: {problem}" if problem else ""


def quiet_prefect_console(verbose: bool) -> None:
    """Keep the terminal for soundsight's own lines; Prefect still sends every log to the server.

    Must run before Prefect is imported. The console handler alone is silenced (not the
    loggers), so a run's page in the UI shows its logs; soundsight's own loggers go to the server
    as well (PREFECT_LOGGING_EXTRA_LOGGERS).
    """
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "soundsight")
    if not verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # Dask workers log to their own stderr
        os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def terminal_logging(quiet: bool) -> None:
    """Progress lines (Completed / Cached per stage and scene) and soundsight's warnings on stderr."""
    printer = ProgressPrinter(sys.stderr)
    progress = logging.getLogger("soundsight.progress")
    progress.setLevel(logging.INFO)
    progress.propagate = False
    if not quiet:
        progress.addHandler(printer)
    warnings = logging.getLogger("soundsight")
    warnings.setLevel(logging.INFO)
    handler = ProgressPrinter(sys.stderr, prefix="warning: ")
    handler.setLevel(logging.WARNING)
    warnings.addHandler(handler)


def render_command(args: argparse.Namespace, names: list[str]) -> int:
    """`soundsight render`: 0 and the video's path on stdout, else one error line and 1, 2 or 130."""
    from soundsight.errors import SoundsightError

    def error(message: str, status: int) -> int:
        print(f"soundsight: error: {message}", file=sys.stderr)
        return status

    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"soundsight: {msg}", file=sys.stderr))
    try:
        settings = settings_from_args(args, names)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first["loc"])) or "settings"
        return error(f"setting {where}: {first['msg'].removeprefix('Value error, ')}", 2)
    if args.demo == (args.song is not None):
        return error("give a song path or --demo (not both)", 2)

    song = args.song
    if args.demo:
        from soundsight.flows.demo import DEMO_PIECE, demo_song

        song = str(demo_song(Path(settings.output.runs_dir) / "demo" / "bach-chorale-bwv66.6.wav"))
        say(f"demo song: {DEMO_PIECE} (public domain), synthesised to {song}")
    elif problem := check_song_argument(song):
        return error(problem, 2)

    quiet_prefect_console(args.verbose)
    terminal_logging(args.quiet)
    with contextlib.ExitStack() as resources:
        try:
            if not os.environ.get("PREFECT_API_URL"):
                if server_usable(LOCAL_SERVER):
                    os.environ["PREFECT_API_URL"] = LOCAL_SERVER
                    say(f"using the Prefect server at {LOCAL_SERVER}")
                else:
                    if server_healthy(LOCAL_SERVER):
                        say(f"the Prefect server at {LOCAL_SERVER} refuses this client (set PREFECT_API_AUTH_STRING)")
                    say(
                        "no Prefect server found: starting a temporary one (about 15 s). "
                        "To skip this on every run, start one once:  prefect server start"
                    )
                    resources.enter_context(temporary_server(while_starting=import_flow))
            from soundsight.flows.music_video import render_song

            # Ctrl-C is handled here, not as a KeyboardInterrupt: raised inside Prefect's engine,
            # one can be absorbed by its bookkeeping and the run goes on to the end. A closed
            # terminal (SIGHUP) stops the render the same way.
            for signum in (signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, lambda signum, _: interrupted(resources, signum))
            video = render_song(song, settings)
        except KeyboardInterrupt:
            interrupted(resources, signal.SIGINT)
        except SoundsightError as e:
            return error(str(e), 2)
        except Exception as e:  # a stage failed: one line here, its logs in the Prefect UI
            return error(
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                "(the run's logs are in the Prefect UI; --verbose shows them here)",
                1,
            )
    print(video)
    return 0


def import_flow(api_url: str) -> None:
    """Point Prefect at `api_url`, then import the flow while a temporary server starts there.

    The import takes seconds (Prefect, numpy, scipy, ...), as does the server's start: they overlap.
    Prefect reads PREFECT_API_URL when it is imported, so that comes first.
    """
    os.environ["PREFECT_API_URL"] = api_url
    import soundsight.flows.music_video  # noqa: F401 - imported for the time it takes


def interrupted(resources: contextlib.ExitStack, signum: int) -> None:
    """Ctrl-C or a closed terminal: one line, the run marked Cancelled, exit 128 + signal number.

    The flow run and its unfinished task runs are marked Cancelled on the server first (a server
    that outlives the CLI would otherwise show them Running forever); the temporary server, if
    any, is stopped; render threads are not waited for.
    """
    from soundsight.flows.attempts import cancel_interrupted_run

    why = "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"interrupted ({signal.Signals(signum).name})"
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        # os.write, not print: inside a flow run Prefect's log_prints turns print into a log record.
        os.write(2, f"soundsight: {why}: finished stages stay cached; the same command resumes the run\n".encode())
    cancel_interrupted_run(f"{why}; finished stages stay cached, the same command resumes the run")
    resources.close()
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """The `soundsight` command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="soundsight", description="Turn songs into AI-authored music videos.")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="render one song into runs/<song>-<hash>/video.mp4")
    render.add_argument("song", nargs="?", help="audio file (mp3, wav, flac, ogg, opus, m4a, ...)")
    render.add_argument("--demo", action="store_true", help="render a synthesised public-domain chorale")
    render.add_argument("--verbose", action="store_true", help="show Prefect's and Dask's logs here too")
    render.add_argument("--quiet", action="store_true", help="print only the video path")
    names = settings_flags(render)
    sub.add_parser("warm", help="compile the CPU stages' numba code into its cache now (install.sh runs this once)")
    args = parser.parse_args(argv)
    if args.command == "render":
        return render_command(args, names)
    if args.command == "warm":
        from soundsight.tasks.segment import compile_ahead

        print(
            f"soundsight: the segment and analyse stages' numba code is compiled and cached ({compile_ahead():.1f} s)"
        )
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
