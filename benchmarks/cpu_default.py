"""Wall time of `soundsight render` on the embedded CPU backends, cold and warm.

    .venv/bin/python benchmarks/cpu_default.py [--song ../shared/music/urban_bolero.ogg]

Runs the real CLI as a user would, against a running local Prefect server (started here for the
benchmark if none answers on 127.0.0.1:4200, and not counted). Cold: an empty runs folder, so no
cache. Warm: the same command again, every task cached. Prints both as a ratio of the song's
duration, side by side with the goals (cold <= 0.3x song, warm <= 5 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from soundsight.flows.cli import LOCAL_SERVER, server_healthy  # noqa: E402


def ensure_server() -> subprocess.Popen | None:
    if os.environ.get("PREFECT_API_URL") and server_healthy(os.environ["PREFECT_API_URL"]):
        return None
    if server_healthy(LOCAL_SERVER):
        os.environ["PREFECT_API_URL"] = LOCAL_SERVER
        return None
    print("starting a Prefect server for the benchmark (not timed) ...", file=sys.stderr)
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=tempfile.mkdtemp())
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not server_healthy(LOCAL_SERVER):
        if time.monotonic() > deadline:
            raise SystemExit("Prefect server did not start")
        time.sleep(0.5)
    os.environ["PREFECT_API_URL"] = LOCAL_SERVER
    return proc


def timed_render(song: Path, runs: Path, extra: list[str]) -> float:
    cmd = [
        str(ROOT / ".venv" / "bin" / "soundsight"),
        "render",
        str(song),
        "--quiet",
        "--output.runs_dir",
        str(runs),
        *extra,
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--song", type=Path, default=ROOT.parent / "shared" / "music" / "urban_bolero.ogg")
    parser.add_argument("--warm-runs", type=int, default=3)
    args, extra = parser.parse_known_args()
    from soundsight.media import decode_audio

    duration = len(decode_audio(args.song, 8000)) / 8000
    server = ensure_server()
    runs = Path(tempfile.mkdtemp(prefix="soundsight-bench-"))
    try:
        cold = timed_render(args.song, runs, extra)
        warm = min(timed_render(args.song, runs, extra) for _ in range(args.warm_runs))
    finally:
        shutil.rmtree(runs, ignore_errors=True)
        if server is not None:
            server.terminate()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; song: {args.song.name} ({duration:.1f} s)")
    print(f"{'run':<6}{'wall s':>9}{'x song':>9}{'goal':>12}  ok")
    print(f"{'cold':<6}{cold:9.1f}{cold / duration:9.3f}{'<= 0.300x':>12}  {'yes' if cold / duration <= 0.3 else 'NO'}")
    print(f"{'warm':<6}{warm:9.1f}{warm / duration:9.3f}{'<= 5.0 s':>12}  {'yes' if warm <= 5.0 else 'NO'}")
    print(f"warm / cold = {warm / cold:.3f}")


if __name__ == "__main__":
    main()
