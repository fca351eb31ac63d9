#!/usr/bin/env bash
# Installs (Debian packages) and starts the real services some tests use:
#   PostgreSQL 15 on 127.0.0.1:5432 (user postgres, trust auth, data in /tmp/modelbuilder-pg)
#   Chromium for the portal's browser tests.
# Idempotent: safe to run again. Needs root (apt) the first time.
set -euo pipefail

need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PGBIN=/usr/lib/postgresql/15/bin
PGDATA=/tmp/modelbuilder-pg
if ! su postgres -c "$PGBIN/pg_ctl -D $PGDATA status" >/dev/null 2>&1; then
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA"
    su postgres -c "$PGBIN/initdb -D $PGDATA -A trust -U postgres" >/dev/null
  fi
  # PostgreSQL refuses to run as root: start it as the postgres user, on loopback only.
  su postgres -c "$PGBIN/pg_ctl -D $PGDATA -o '-k /tmp -c listen_addresses=127.0.0.1 -p 5432 -c fsync=off' \
    -l /tmp/modelbuilder-pg.log -w start" >/dev/null
fi
echo "services: PostgreSQL on 127.0.0.1:5432, chromium at $(command -v chromium)"
