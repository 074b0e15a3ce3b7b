"""Catalogue throughput: songs/hour on 1, 2 and 4 process workers, and the nightly re-run's cost.

A synthetic catalogue (excerpts of ../shared/music, a few seconds each, tiny frames) is rendered
through the real deployments on a Prefect server this script starts: nightly-catalogue runs on
its own worker (queue `catalogue`), its songs run as render-song deployment runs on N workers
(queue `songs`, `--limit 1` each: one worker per GPU host, as docs/production.md says).

The render is the animatic with a **SIMULATED slow GPU**: the render backend ``simulated-gpu``
(benchmarks/worker_hooks/simulated_gpu.py), which the processes this script starts register
through benchmarks/worker_hooks/sitecustomize.py, makes each scene sleep ``--sleep`` seconds first.
That sleep is what lets N workers overlap on a 2-core machine, the way N GPU hosts would; the CPU
work of a song (process start, load, segment, analyse, the animatic, assemble) still competes for
the cores, and that is what keeps the scaling under N.

    .venv/bin/python benchmarks/catalogue.py                  # 20 songs, 20 s per scene, 1/2/4 workers
    .venv/bin/python benchmarks/catalogue.py --songs 4 --workers 1 --sleep 2   # a quick look

Prints a markdown table (for benchmarks/RESULTS.md) and writes the measurements as JSON to
benchmarks/logs/catalogue-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import start_prefect_server, stop_process_group  # noqa: E402

MUSIC = ROOT.parent / "shared" / "music"
POOL = "bench"
NIGHTLY = "render-catalogue/nightly-catalogue"


def make_catalogue(folder: Path, songs: int, seconds: float) -> Path:
    """`songs` excerpts, `seconds` long, taken round-robin from the shared tracks; returns a manifest."""
    from soundsight.media import ffmpeg_exe

    tracks = sorted(p for p in MUSIC.iterdir() if p.suffix in (".ogg", ".opus"))
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(songs):
        track = tracks[i % len(tracks)]
        length = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                       str(track)], capture_output=True, text=True, check=True).stdout)  # fmt: skip
        start = (20 + 30 * (i // len(tracks))) % max(1.0, length - seconds - 1)  # always a full excerpt
        out = folder / f"{i:03d}-{track.stem}.wav"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-ss", str(start), "-t", str(seconds), "-i", str(track),
                        "-map_metadata", "-1", "-ac", "2", "-ar", "44100", str(out)], check=True)  # fmt: skip
        lines.append(f'[[songs]]\npath = "{out.name}"\n')
    manifest = folder / "catalogue.toml"
    manifest.write_text("\n".join(lines))
    return manifest


def start_worker(env: dict[str, str], logs: Path, name: str, queue: str, limit: int | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
            "--name", name, "--work-queue", queue] + (["--limit", str(limit)] if limit else [])  # fmt: skip
    log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - the worker owns it
    return subprocess.Popen(args, env=env, cwd=logs, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_online(names: list[str], timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            online = {w.name for w in client.read_workers_for_work_pool(POOL) if w.status.value == "ONLINE"}
            if set(names) <= online:
                return
            time.sleep(0.5)
    raise TimeoutError(f"workers {names} not online")


def run_catalogue(manifest: Path, settings: dict, recheck: bool = False) -> dict:
    """One nightly-catalogue run; its wall time, table and children's run times."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.deployments import run_deployment

    started = time.monotonic()
    run = run_deployment(NIGHTLY, parameters={"catalogue": str(manifest), "settings": settings, "recheck": recheck},
                         timeout=None, poll_interval=1)  # fmt: skip
    wall = time.monotonic() - started
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    (table,) = [a for a in found if a.type == "table"]
    rows = json.loads(table.data)
    return {
        "state": run.state.name,
        "wall_s": round(wall, 1),
        "catalogue_run_s": round(run.total_run_time.total_seconds(), 1),
        "children": len(children),
        "child_run_s": sorted(round(c.total_run_time.total_seconds(), 1) for c in children),
        "statuses": {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}},
        "scenes": sum(int(r["scenes"] or 0) for r in rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each excerpt")
    parser.add_argument("--sleep", type=float, default=20.0, help="SIMULATED GPU seconds per scene")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--size", default="64x36", help="frame size")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    workdir = Path(tempfile.mkdtemp(prefix="soundsight-catalogue-bench-"))
    home = workdir / "prefect"
    home.mkdir()
    server, api = start_prefect_server(home)
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="2")
    # Every process started from here (deploy, workers, flow runs) knows the simulated-GPU backend.
    hooks = str(ROOT / "benchmarks" / "worker_hooks")
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [hooks, env.get("PYTHONPATH")])))
    env["BENCH_SIMULATED_GPU_SECONDS"] = str(args.sleep)
    os.environ["PREFECT_API_URL"] = api
    workers: list[subprocess.Popen] = []
    results: dict = {"runs": []}
    try:
        manifest = make_catalogue(workdir / "songs", args.songs, args.seconds)
        deployed = subprocess.run([sys.executable, "-m", "soundsight.deployments.deploy", "--pool", POOL, "--paused",
                                   "--catalogue", str(manifest), "--heartbeat-seconds", "30"],
                                  env=env, cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        workers.append(start_worker(env, workdir, "catalogue", "catalogue", None))
        wait_online(["catalogue"])
        for n in [int(x) for x in args.workers.split(",")]:
            settings = {
                "segment": {"mode": "random", "seed": 1},
                "render": {"backend": "simulated-gpu", "width": width, "height": height, "fps": args.fps},
                "output": {"runs_dir": str(workdir / f"runs-{n}")},
            }
            song_workers = [start_worker(env, workdir, f"gpu-host-{n}-{i}", "songs", 1) for i in range(n)]
            workers += song_workers
            wait_online([f"gpu-host-{n}-{i}" for i in range(n)])
            first = run_catalogue(manifest, settings)
            first.update(workers=n, kind="fresh")
            first["songs_per_hour"] = round(args.songs / first["wall_s"] * 3600, 1)
            print(json.dumps(first), flush=True)
            results["runs"].append(first)
            again = run_catalogue(manifest, settings)  # the next night: nothing changed
            again.update(workers=n, kind="unchanged", per_song_s=round(again["wall_s"] / args.songs, 2))
            print(json.dumps(again), flush=True)
            results["runs"].append(again)
            if n == max(int(x) for x in args.workers.split(",")):  # the alternative: every song's run, all cached
                checked = run_catalogue(manifest, settings, recheck=True)
                checked.update(workers=n, kind="recheck", per_song_s=round(checked["wall_s"] / args.songs, 2))
                print(json.dumps(checked), flush=True)
                results["runs"].append(checked)
            for proc in song_workers:
                stop_process_group(proc, grace=10)
    finally:
        for proc in workers:
            stop_process_group(proc, grace=10)
        stop_process_group(server, grace=20)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    fresh = {r["workers"]: r for r in results["runs"] if r["kind"] == "fresh"}
    base = fresh[min(fresh)]["songs_per_hour"] / min(fresh)
    results.update(
        date=datetime.now(UTC).isoformat(timespec="minutes"),
        machine=f"{platform.node()}: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end",
        args=vars(args),
    )
    print(f"\n{args.songs} songs of {args.seconds:g} s, {args.size} at {args.fps} fps, animatic + SIMULATED GPU "
          f"{args.sleep:g} s/scene\n")  # fmt: skip
    print(
        "| song workers | wall | songs/hour | scaling vs 1 worker (goal ≥ 0.9·N) | scenes | render-song run, median |"
    )
    print("|---|---|---|---|---|---|")
    for n, r in sorted(fresh.items()):
        median = r["child_run_s"][len(r["child_run_s"]) // 2] if r["child_run_s"] else 0
        print(f"| {n} | {r['wall_s']:.0f} s | {r['songs_per_hour']:.0f} | {r['songs_per_hour'] / base:.2f} "
              f"({r['songs_per_hour'] / base / n:.2f}·N) | {r['scenes']} | {median:.0f} s |")  # fmt: skip
    print("\n| nightly re-run, nothing changed | workers | wall | per song (goal ≤ 2 s) | runs started |")
    print("|---|---|---|---|---|")
    for r in results["runs"]:
        if r["kind"] != "fresh":
            label = (
                "skip unchanged songs (default)"
                if r["kind"] == "unchanged"
                else "recheck: every song's run, all Cached"
            )
            print(f"| {label} | {r['workers']} | {r['wall_s']:.0f} s | {r['per_song_s']:.2f} s | {r['children']} |")
    out = ROOT / "benchmarks" / "logs" / f"catalogue-{datetime.now(UTC):%Y-%m-%d}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\n{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
