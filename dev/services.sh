#!/usr/bin/env bash
# Local PostgreSQL and Redis for custodian's development runs and tests
# (and Debian's headless Chromium with its WebDriver, for the console test;
# and schemathesis in a Python venv, for the API fuzzing test).
#
#   dev/services.sh start   install (Debian packages) if missing, start, print env
#   dev/services.sh env     same as start; only the `export` lines go to stdout,
#                           so `eval "$(dev/services.sh env)"` works
#   dev/services.sh stop    stop both
#
# DEV_TOOLS=0 skips the test-only tools (Chromium, schemathesis): dev/bench
# uses it for its private instances.
#
# Private instances, on loopback only, data under $DEV_STATE_DIR
# (default /tmp/custodian-dev): PostgreSQL on $DEV_PG_PORT (55432, trust
# auth: development only), Redis on $DEV_REDIS_PORT (56379, append-only
# file with fsync on every write, as custodian expects in production).
set -euo pipefail

STATE=${DEV_STATE_DIR:-/tmp/custodian-dev}
PG_PORT=${DEV_PG_PORT:-55432}
REDIS_PORT=${DEV_REDIS_PORT:-56379}
log() { echo "services: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else log "need root (or passwordless sudo) to run: $*"; exit 1
  fi
}

pg_bindir() {
  local initdb
  initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$initdb" ] && dirname "$initdb"
}

install_missing() {
  local packages=()
  [ -n "$(pg_bindir)" ] || packages+=(postgresql)
  command -v redis-server >/dev/null || packages+=(redis-server)
  command -v psql >/dev/null || packages+=(postgresql-client)
  if [ "${DEV_TOOLS:-1}" = 1 ]; then
    # Headless Chromium drives the console test (tests/console.rs).
    command -v chromedriver >/dev/null || packages+=(chromium chromium-driver)
    # .ci/check-compose validates docker-compose.yml against the Compose schema.
    python3 -c 'import yaml, jsonschema' 2>/dev/null || packages+=(python3 python3-yaml python3-jsonschema)
  fi
  if [ ${#packages[@]} -gt 0 ]; then
    log "installing ${packages[*]} (Debian packages)"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >&2
  fi
}

# schemathesis (PyPI) fuzzes the API against its OpenAPI document
# (tests/schemathesis.rs); a venv under the state dir keeps it off the system.
SCHEMATHESIS_VERSION='>=4.32,<5'
install_schemathesis() {
  local venv="$STATE/venv"
  [ -x "$venv/bin/st" ] && return 0
  log "installing schemathesis$SCHEMATHESIS_VERSION into $venv"
  mkdir -p "$STATE"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "schemathesis$SCHEMATHESIS_VERSION" >&2
}

# initdb and postgres refuse to run as root: use the package's postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local bin; bin=$(pg_bindir)
  mkdir -p "$STATE"
  chmod 755 "$STATE"
  if [ ! -s "$STATE/pg/PG_VERSION" ]; then
    mkdir -p "$STATE/pg"
    [ "$(id -u)" = 0 ] && chown postgres: "$STATE/pg"
    chmod 700 "$STATE/pg"
    log "initialising PostgreSQL in $STATE/pg"
    as_pg "$bin/initdb" -D "$STATE/pg" -U postgres -A trust -E UTF8 >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$STATE/pg" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$bin/pg_ctl" -D "$STATE/pg" -l "$STATE/pg/server.log" -w -t 60 start \
      -o "-p $PG_PORT -k $STATE/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=512MB -c wal_buffers=64MB -c max_wal_size=4GB -c checkpoint_timeout=15min" >&2
  fi
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='custodian'" | grep -q 1; then
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE custodian" >&2
  fi
}

start_redis() {
  mkdir -p "$STATE/redis"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:$REDIS_PORT (appendonly yes, appendfsync always)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
      --dir "$STATE/redis" --appendonly yes --appendfsync always --save "" \
      --logfile "$STATE/redis/redis.log" --pidfile "$STATE/redis/redis.pid" >&2
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

print_env() {
  cat <<ENV
export CUSTODIAN_POSTGRES__URL=postgres://postgres@127.0.0.1:$PG_PORT/custodian
export CUSTODIAN_REDIS__URL=redis://127.0.0.1:$REDIS_PORT
export TEST_POSTGRES_ADMIN_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export DEV_PG_PORT=$PG_PORT
export DEV_REDIS_PORT=$REDIS_PORT
export SCHEMATHESIS=$STATE/venv/bin/st
ENV
}

case "${1:-start}" in
  start|env)
    install_missing
    [ "${DEV_TOOLS:-1}" = 1 ] && install_schemathesis
    start_postgres
    start_redis
    print_env
    ;;
  stop)
    bin=$(pg_bindir || true)
    [ -n "$bin" ] && [ -d "$STATE/pg" ] && as_pg "$bin/pg_ctl" -D "$STATE/pg" -m fast stop >&2 || true
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
