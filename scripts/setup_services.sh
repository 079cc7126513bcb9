#!/usr/bin/env bash
# Install the services that the multi-machine tests start on loopback ports: PostgreSQL (run and event
# storage) and Redis (the Celery broker), from Debian's packages.
#   bash scripts/setup_services.sh
# Idempotent and quiet: installs only what is missing, prints nothing when all is there. The tests start
# and stop their own instances in temporary folders; the packaged services are not used (and are stopped
# again if installing them started them). Without apt-get or root it says so and exits 0: the tests that
# need the services then skip, naming what is missing.
set -euo pipefail

need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
[ "${#need[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "setup_services: no apt-get here; install ${need[*]} yourself (the Postgres/Celery test skips meanwhile)" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "setup_services: not root and no password-less sudo; install ${need[*]} yourself" >&2
    exit 0
  fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
       && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
     >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup_services: installing ${need[*]} failed" >&2
  exit 1
fi
for svc in postgresql redis-server; do  # the tests run their own instances; do not keep the packaged ones
  "${sudo[@]}" service "$svc" stop >/dev/null 2>&1 || true
done
