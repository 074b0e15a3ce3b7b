"""End to end on a GPU box: `soundsight render` twice (cold, then fully cached), and where the time goes.

Runs ``soundsight render SONG --render.backend wan --render.model MODEL --render.steps 50`` (plus
``--extra`` flags) against one Prefect server (PREFECT_API_URL, else one on 127.0.0.1:4200, else
one this script starts and stops), then again with nothing changed. It reads:

- the Prefect API: the flow run and every task run (state, start, end, run time);
- the renderer's own record (`soundsight.models.render.diffusion.stats`, which
  benchmarks/worker_hooks writes to a file with ``BENCH_RENDER_STATS``: one JSON line per pipeline
  build and per scene from every Dask worker, with ``render_s`` = the time inside the diffusers
  pipeline call);
- the CLI's progress lines (``[  12.3s] ...``) as a fallback timeline.

and prints: the per-stage timeline (first start and last end after the flow's start, task runs,
states, summed run time), the GPU time inside the renderer calls (per worker), the orchestration
overhead = flow wall time - the busiest worker's time inside pipeline calls (and the same per
render task: task run time - its scene's pipeline time), and the cached re-run's wall time. A
JSON report goes to ``--out``.

    python benchmarks/gpu/make_checkpoint.py /tmp/wan13-random
    python benchmarks/gpu_end_to_end.py --song ../shared/music/celtic.ogg --model /tmp/wan13-random \\
        --out /tmp/e2e.json
    python benchmarks/gpu_end_to_end.py --tiny --out /tmp/e2e-tiny.json    # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLI = "import sys; from soundsight.flows.cli import main; sys.exit(main())"
PROGRESS = re.compile(r"^\s*\[\s*([\d.]+)s\]\s*(.*)$")


def healthy(api: str) -> bool:
    """True when the Prefect server at `api` (``.../api``) answers its health check."""
    try:
        with urllib.request.urlopen(api.rstrip("/") + "/health", timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - anything but an answer means no server
        return False


def ensure_server(port: int) -> subprocess.Popen | None:
    """Point PREFECT_API_URL at a running server, starting one (returned, to stop) if there is none."""
    if os.environ.get("PREFECT_API_URL") and healthy(os.environ["PREFECT_API_URL"]):
        return None
    local = "http://127.0.0.1:4200/api"
    if healthy(local):
        os.environ["PREFECT_API_URL"] = local
        return None
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=tempfile.mkdtemp(prefix="pf-"))
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or shutil.which("prefect")
    cmd = [prefect] if prefect else [sys.executable, "-m", "prefect"]
    proc = subprocess.Popen(
        [*cmd, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    for _ in range(240):
        if healthy(api):
            os.environ["PREFECT_API_URL"] = api
            return proc
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"the Prefect server on port {port} did not become healthy")


def run_cli(song: str, flags: list[str], stats: Path) -> dict:
    """One `soundsight render`: wall seconds, exit status, progress lines (seconds, message), video path."""
    stats.unlink(missing_ok=True)
    env = dict(os.environ, SOUNDSIGHT_RENDER__SEED="0")
    # The CLI and its Dask workers append the renderer's records to `stats` (benchmarks/worker_hooks).
    hooks = str(ROOT / "benchmarks" / "worker_hooks")
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [hooks, env.get("PYTHONPATH")])), BENCH_RENDER_STATS=str(stats))
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CLI, "render", song, *flags], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    lines = []
    for line in p.stderr.splitlines():
        m = PROGRESS.match(line)
        if m:
            lines.append((float(m.group(1)), m.group(2)))
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-3000:])
    return {"wall_s": wall, "rc": p.returncode, "progress": lines, "video": p.stdout.strip().splitlines()[-1:]}


def flow_and_tasks() -> tuple[dict, list[dict]]:
    """The latest render-song flow run and its task runs, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["render-song"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        if not runs:
            return {}, []
        fr = runs[0]
        tasks, page = [], None
        while page is None or len(page) == 200:  # the API returns at most 200 per call
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])), limit=200, offset=len(tasks)
            )
            tasks += page
    t0 = fr.start_time
    flow = {
        "name": fr.name,
        "state": fr.state_name,
        "wall_s": (fr.end_time - fr.start_time).total_seconds() if fr.end_time and fr.start_time else None,
    }
    rows = []
    for t in tasks:
        rows.append(
            {
                "name": t.name,
                "state": t.state_name,
                "start_s": (t.start_time - t0).total_seconds() if t.start_time and t0 else None,
                "end_s": (t.end_time - t0).total_seconds() if t.end_time and t0 else None,
                "run_s": t.total_run_time.total_seconds() if t.total_run_time else 0.0,
            }
        )
    return flow, rows


def stage_of(task_name: str) -> str:
    """`render-scene-007` -> `render-scene`; other task runs keep their name up to a trailing ``-N``."""
    return re.sub(r"(-\d+|-[0-9a-f]{3})+$", "", task_name)


def timeline(tasks: list[dict]) -> list[dict]:
    """Per stage: first start, last end (seconds after the flow started), task runs, states, summed run time."""
    by: dict[str, list[dict]] = {}
    for t in tasks:
        by.setdefault(stage_of(t["name"]), []).append(t)
    rows = []
    for stage, ts in by.items():
        starts = [t["start_s"] for t in ts if t["start_s"] is not None]
        ends = [t["end_s"] for t in ts if t["end_s"] is not None]
        states: dict[str, int] = {}
        for t in ts:
            states[t["state"]] = states.get(t["state"], 0) + 1
        rows.append(
            {
                "stage": stage,
                "first_start_s": round(min(starts), 2) if starts else None,
                "last_end_s": round(max(ends), 2) if ends else None,
                "task_runs": len(ts),
                "states": ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
                "run_s": round(sum(t["run_s"] for t in ts), 2),
            }
        )
    return sorted(rows, key=lambda r: (r["first_start_s"] is None, r["first_start_s"] or 0))


def read_stats(path: Path) -> tuple[list[dict], list[dict]]:
    """The renderer's build and scene records."""
    if not path.is_file():
        return [], []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in recs if r.get("event") == "build"], [r for r in recs if r.get("event") == "scene"]


def analyse(run: dict, flow: dict, tasks: list[dict], builds: list[dict], scenes: list[dict]) -> dict:
    """Orchestration overhead: flow wall - the busiest worker's pipeline time; and per render task."""
    per_worker: dict[int, float] = {}
    for s in scenes:
        per_worker[s["pid"]] = per_worker.get(s["pid"], 0.0) + s["render_s"]
    busiest_pid = max(per_worker, key=per_worker.get, default=None)
    busiest = per_worker.get(busiest_pid, 0.0)
    busiest_build = sum(b["build_s"] for b in builds if b["pid"] == busiest_pid)
    wall = flow.get("wall_s") or run["wall_s"]
    by_index = {s["index"]: s for s in scenes}
    per_task = []
    for t in tasks:
        m = re.match(r"render-scene-(\d+)", t["name"])
        if m and int(m.group(1)) in by_index and t["state"] == "Completed":
            per_task.append(t["run_s"] - by_index[int(m.group(1))]["render_s"])
    return {
        "cli_wall_s": round(run["wall_s"], 2),
        "flow_wall_s": None if flow.get("wall_s") is None else round(flow["wall_s"], 2),
        "scenes_rendered": len(scenes),
        "workers": len(per_worker),
        "pipeline_builds": [
            {"pid": b["pid"], "quality": b["quality"], "build_s": round(b["build_s"], 2)} for b in builds
        ],
        "gpu_s_in_renderer_calls": round(sum(per_worker.values()), 2),
        "busiest_worker_gpu_s": round(busiest, 2),
        "orchestration_overhead_s": round(wall - busiest, 2),
        "overhead_without_pipeline_builds_s": round(wall - busiest - busiest_build, 2),
        "overhead_share": round((wall - busiest) / wall, 3) if wall else None,
        "overhead_per_render_task_s": {
            "median": round(statistics.median(per_task), 3) if per_task else None,
            "mean": round(statistics.fmean(per_task), 3) if per_task else None,
            "max": round(max(per_task), 3) if per_task else None,
            "tasks": len(per_task),
        },
        "first_scene_s": [round(s["total_s"], 2) for s in scenes[: len(per_worker)]],
    }


def report(name: str, run: dict, flow: dict, tasks: list[dict], builds: list[dict], scenes: list[dict]) -> dict:
    """Print and return one run's timeline and overhead."""
    out = {"run": name, "rc": run["rc"], "video": run["video"], "flow": flow, "timeline": timeline(tasks)}
    out["overhead"] = analyse(run, flow, tasks, builds, scenes)
    if not tasks:  # no API: the CLI's own progress lines
        out["progress"] = run["progress"]
    print(f"\n== {name}: exit {run['rc']}, CLI wall {run['wall_s']:.1f} s, flow {flow.get('wall_s')} s")
    print(f"{'stage':<22}{'start s':>9}{'end s':>9}{'runs':>6}{'run s':>10}  states")
    for r in out["timeline"]:
        print(
            f"{r['stage']:<22}{r['first_start_s'] or 0:>9.1f}{r['last_end_s'] or 0:>9.1f}"
            f"{r['task_runs']:>6}{r['run_s']:>10.1f}  {r['states']}"
        )
    for t, msg in out.get("progress", []):
        print(f"{t:>9.1f} s  {msg}")
    for k, v in out["overhead"].items():
        print(f"  {k}: {v}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--song", default=str(ROOT.parent / "shared" / "music" / "celtic.ogg"))
    ap.add_argument("--model", default="", help="pipeline folder (benchmarks/gpu/make_checkpoint.py makes one)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--runs-dir", default="", help="default: a fresh temporary folder")
    ap.add_argument("--extra", default="", help="more CLI flags, e.g. '--render.quality draft'")
    ap.add_argument("--port", type=int, default=4321, help="for a server this script starts")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny checkpoint, 32x32, 2 steps")
    ap.add_argument("--out", type=Path, default=None, help="JSON report")
    args = ap.parse_args(argv)

    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="soundsight-e2e-"))
    model = args.model
    flags = ["--render.backend", "wan", "--output.runs_dir", str(runs)]
    if args.tiny:
        from benchmarks.gpu.make_checkpoint import make_checkpoint

        model = model or str(runs / "tiny-wan")
        if not (Path(model) / "model_index.json").is_file():
            make_checkpoint(Path(model), tiny=True)
        flags += ["--render.model_width", "32", "--render.model_height", "32", "--render.dtype", "float32"]
        flags += ["--render.device", "cpu", "--render.steps", "2"]
    else:
        flags += ["--render.steps", str(args.steps)]
    if not model:
        ap.error("--model is required (a pipeline folder; benchmarks/gpu/make_checkpoint.py makes one)")
    flags += ["--render.model", model, *args.extra.split()]

    server = ensure_server(args.port)
    results = {"song": args.song, "flags": flags, "api": os.environ.get("PREFECT_API_URL"), "runs": []}
    try:
        for name in ("cold", "cached"):
            stats = runs / f"render_stats_{name}.jsonl"
            run = run_cli(args.song, flags, stats)
            try:
                flow, tasks = flow_and_tasks()
            except Exception as exc:  # noqa: BLE001 - report without the API
                print(f"(Prefect API unreadable: {exc})")
                flow, tasks = {}, []
            results["runs"].append(report(name, run, flow, tasks, *read_stats(stats)))
            if run["rc"] != 0:
                break
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    if len(results["runs"]) == 2:
        cold, cached = results["runs"]
        results["cached_rerun_s"] = cached["overhead"]["cli_wall_s"]
        print(f"\ncold run {cold['overhead']['cli_wall_s']} s, cached re-run {results['cached_rerun_s']} s")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0 if all(r["rc"] == 0 for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
