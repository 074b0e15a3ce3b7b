#!/bin/bash
# As the image's user: a Prefect server on PostgreSQL with API auth, the deployments, a process
# worker, one render-song deployment run; the video is checked with ffprobe; an unauthenticated
# client must get 401, the authenticated one 200. Needs PREFECT_API_DATABASE_CONNECTION_URL,
# AUTH_STRING (user:password), DEPLOY_COMMAND.
set -euo pipefail
T0=${T0:-$(date +%s)}
say() { printf 'worker-check: [%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
: "${PREFECT_API_DATABASE_CONNECTION_URL:?}" "${AUTH_STRING:=admin:secret}"
: "${DEPLOY_COMMAND:=python -m soundsight.deployments.deploy --pool soundsight --paused}"
POOL=${POOL:-soundsight}
work=$(mktemp -d)
cd "$work"
export PREFECT_API_URL=http://127.0.0.1:4200/api PREFECT_SERVER_ANALYTICS_ENABLED=false
# Only the server needs the database URL; clients and the worker must not see it.
db_url=$PREFECT_API_DATABASE_CONNECTION_URL; unset PREFECT_API_DATABASE_CONNECTION_URL
export SOUNDSIGHT_OUTPUT__RUNS_DIR=$work/runs

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  sleep 3
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
dump() { echo "---- server.log (tail)"; tail -n 40 server.log || true; echo "---- worker.log (tail)"; tail -n 60 worker.log || true; }
trap 'rc=$?; [[ $rc -ne 0 ]] && dump; cleanup; exit $rc' EXIT

say "prefect server start on PostgreSQL (PREFECT_SERVER_API_AUTH_STRING set)"
PREFECT_API_DATABASE_CONNECTION_URL=$db_url PREFECT_SERVER_API_AUTH_STRING=$AUTH_STRING \
  setsid env -u PREFECT_API_URL prefect server start --host 127.0.0.1 --port 4200 >server.log 2>&1 &
pids+=($!)
python - <<'PY'
import time, urllib.request
for i in range(180):
    try:
        with urllib.request.urlopen("http://127.0.0.1:4200/api/health", timeout=2) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(1)
else:
    raise SystemExit("server not healthy after 180 s")
PY
say "server healthy (GET /api/health needs no auth)"
python - <<'PY'
import os
from soundsight.flows.prefect_server import http_status
url = "http://127.0.0.1:4200/api/deployments/filter"
auth = os.environ["AUTH_STRING"]
codes = {k: http_status(url, b"{}", a) for k, a in (("no auth", ""), ("wrong password", auth.split(":")[0] + ":wrong"), ("correct user:password", auth))}
for k, v in codes.items():
    print(f"worker-check:   POST /api/deployments/filter, {k}: HTTP {v}")
assert codes["no auth"] == 401 and codes["wrong password"] == 401 and codes["correct user:password"] == 200, codes
PY
if PREFECT_API_AUTH_STRING= prefect work-pool ls >noauth.txt 2>&1; then
  say "FAILED: the prefect CLI without PREFECT_API_AUTH_STRING was let in"; cat noauth.txt; exit 1
fi
grep -q "401 Unauthorized" noauth.txt || { say "FAILED: expected 401 from the CLI without auth"; cat noauth.txt; exit 1; }
say "prefect CLI (work-pool ls) without PREFECT_API_AUTH_STRING: refused, 401 Unauthorized"
PREFECT_API_AUTH_STRING=$AUTH_STRING prefect work-pool ls >auth.txt 2>&1 || { cat auth.txt; say "FAILED: the CLI with auth was refused"; exit 1; }
say "prefect CLI (work-pool ls) with PREFECT_API_AUTH_STRING set: accepted"

export PREFECT_API_AUTH_STRING=$AUTH_STRING
say "deploy: $DEPLOY_COMMAND"
(cd /opt/soundsight && $DEPLOY_COMMAND) | sed 's/^/  /'
prefect deployment ls | sed 's/^/worker-check:   /'

say "prefect worker start --pool $POOL --type process"
setsid prefect worker start --pool "$POOL" --type process >worker.log 2>&1 &
pids+=($!)

mkdir -p "$work/songs"
say "a song: the demo chorale synthesised to $work/songs/song.wav"
python -c "from pathlib import Path; from soundsight.flows.demo import demo_song; demo_song(Path('$work/songs/song.wav'))"

say "prefect deployment run render-song/render-song --param song=$work/songs/song.wav --watch"
if ! timeout 900 prefect deployment run render-song/render-song --param "song=$work/songs/song.wav" --watch >run.log 2>&1; then
  cat run.log; say "FAILED: the run did not complete"; exit 1
fi
grep -E "Created flow run|Flow run|finished|Completed|state" run.log | sed 's/^/  /' | tail -n 8
python - <<'PY'
import asyncio
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
async def main():
    async with get_client() as c:
        runs = await c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["render-song"])))
        for r in runs:
            print(f"worker-check:   flow run {r.name} ({r.id}): {r.state.type.value}, {r.total_run_time.total_seconds():.1f} s run time, "
                  f"worker-run infrastructure pid {r.infrastructure_pid}")
        assert runs and all(r.state.is_completed() for r in runs), [r.state for r in runs]
asyncio.run(main())
PY
video=$(ls -t "$SOUNDSIGHT_OUTPUT__RUNS_DIR"/*/video.mp4 | head -n 1)
sh /checks/check_video.sh "$video"
say "nightly-catalogue over $work/songs (the folder): one render-song child run, all stages cached"
python - "$work/songs" <<'PY'
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.deployments import run_deployment
run = run_deployment("render-catalogue/nightly-catalogue", parameters={"catalogue": sys.argv[1]}, timeout=900)
with get_client(sync_client=True) as c:
    children = c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
    found = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
table = next(json.loads(a.data) for a in found if a.type == "table")
print(f"worker-check:   catalogue run {run.name}: {run.state.type.value}; child runs: "
      + ", ".join(f"{r.name} {r.state.type.value}" for r in children))
for row in table:
    print(f"worker-check:   table row: {row['song']} | {row['status']} | scenes {row['scenes']} | {row['video']}")
assert run.state.is_completed() and len(children) == 1 and table[0]["status"] in ("Completed", "Cached"), (run.state, table)
PY
say "worker log:"; grep -E "Worker|flow run|Flow run|Submitting|Completed\(\)" worker.log | sed 's/^/worker-check:   /' | tail -n 6
