#!/bin/bash
# As root inside the build: Debian's PostgreSQL installed and started here, then the Prefect part
# (worker_check.sh) as the image's user. Everything started here is stopped before the RUN ends.
set -euo pipefail
export T0=$(date +%s)
say() { printf 'worker-check: [%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

say "apt-get install postgresql"
apt-get update -qq >/dev/null
# The package's postinst creates cluster <ver>/main; starting it from postinst fails in a chroot: fine.
apt-get install -y -qq postgresql >/dev/null 2>&1 || apt-get install -y -qq postgresql
ver=$(ls /etc/postgresql | sort -n | tail -n 1)
say "PostgreSQL $ver; clusters: $(pg_lsclusters -h | awk '{print $1"/"$2}' | tr '\n' ' ')"
[[ -d /etc/postgresql/$ver/main ]] || pg_createcluster "$ver" main
# No systemd here; the build's /dev/shm may be tiny or absent: use mmap for dynamic shared memory.
cat >/etc/postgresql/$ver/main/conf.d/check.conf <<CONF
listen_addresses = '127.0.0.1'
port = 5432
dynamic_shared_memory_type = mmap
CONF
pg_ctlcluster "$ver" main start
trap 'say "stopping PostgreSQL"; pg_ctlcluster "$ver" main stop -m fast || true' EXIT
pg_lsclusters
pw=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c "CREATE ROLE prefect LOGIN PASSWORD '$pw'" \
  -c "CREATE DATABASE prefect OWNER prefect"
say "database prefect ready"

export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://prefect:$pw@127.0.0.1:5432/prefect"
runuser -u soundsight -- env HOME=/home/soundsight bash /checks/worker_check.sh
say "what the server wrote to PostgreSQL:"
runuser -u postgres -- psql -d prefect -At -F ' ' -c "SELECT 'deployments', count(*) FROM deployment" \
  -c "SELECT 'flow runs', state_type, count(*) FROM flow_run GROUP BY state_type" \
  -c "SELECT 'task runs', count(*) FROM task_run" | sed 's/^/worker-check:   /'
say "PASSED"
