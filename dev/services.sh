#!/usr/bin/env bash
# Local PostgreSQL and Redis for custodian's development runs and tests
# (and Debian's headless Chromium with its WebDriver, for the console test;
# schemathesis in a Python venv, for the API fuzzing test; tansu, a
# Kafka-compatible broker, for the fault tier in tests/it/faults/; s3s-fs,
# an S3-protocol server on the file system, for the object-store tests; and
# Karapace, a Confluent-compatible schema registry, for the Avro, Protobuf
# and JSON Schema formats).
#
#   dev/services.sh start   install (Debian packages) if missing, start, print env
#   dev/services.sh env     same as start; only the `export` lines go to stdout,
#                           so `eval "$(dev/services.sh env)"` works
#   dev/services.sh stop    stop them (PostgreSQL, Redis, s3s-fs, the schema
#                           registry and its broker)
#   dev/services.sh tansu   only install tansu (dev/test runs this in the
#                           background while custodian builds)
#   dev/services.sh s3      only install s3s-fs (the same, for its build)
#   dev/services.sh registry  only install Karapace
#
# DEV_TOOLS=0 skips the test-only tools (Chromium, schemathesis, and the
# schema registry unless DEV_SKIP_REGISTRY=0 asks for it): dev/bench uses it
# for its private instances.
#
# Private instances, on loopback only, data under $DEV_STATE_DIR
# (default /tmp/custodian-dev): PostgreSQL on $DEV_PG_PORT (55432, trust
# auth: development only), Redis on $DEV_REDIS_PORT (56379, append-only
# file with fsync on every write, as custodian expects in production).
# tansu is not started here: each fault test starts its own broker process
# (loopback, free port, SQLite storage under $DEV_STATE_DIR/tansu) so that it
# can SIGKILL and restart it. DEV_SKIP_TANSU=1 makes start/env skip its install.
#
# S3: s3s-fs on $DEV_S3_PORT (59000), path-style, SigV4 with one static
# development key pair, a bucket per directory under $DEV_STATE_DIR/s3/data;
# start/env create the bucket custodian-test and export its endpoint, keys,
# region and name as TEST_S3_*. s3s-fs is built once per machine
# like tansu. No Object Lock, versioning or lifecycle: a plain object store.
# DEV_SKIP_S3=1 makes start/env skip its install and start.
#
# Schema registry: Karapace 3.16.0 on $DEV_REGISTRY_PORT (58081), with a
# tansu broker of its own on $DEV_REGISTRY_KAFKA_PORT (59092) that holds its
# schemas in the topic _schemas (SQLite storage under
# $DEV_STATE_DIR/registry/kafka, so schemas and their ids outlive a
# restart of either); start/env export its URL as TEST_SCHEMA_REGISTRY_URL.
# Karapace is not on PyPI: it installs from the source archive in
# dev/vendor/ (see its README.md) with its dependencies from PyPI, once per
# machine into a venv in the cache beside tansu. It needs tansu's binary:
# with DEV_SKIP_TANSU=1 and tansu not built yet, start/env leave it stopped
# (and export no URL) until a later start/env. DEV_SKIP_REGISTRY=1 makes
# start/env skip its install and start (DEV_TOOLS=0 implies it, unless
# DEV_SKIP_REGISTRY=0).
#
# Output: one line per phase on stderr (installing, building tansu, starting
# a server), with its time and its log, $DEV_STATE_DIR/logs/<phase>.log, where
# apt-get, pip and cargo write; a failing phase shows the last lines of its
# log and the script exits non-zero (dev/lib/phase.sh).
set -euo pipefail

STATE=${DEV_STATE_DIR:-/tmp/custodian-dev}
PG_PORT=${DEV_PG_PORT:-55432}
REDIS_PORT=${DEV_REDIS_PORT:-56379}
S3_PORT=${DEV_S3_PORT:-59000}
REGISTRY_PORT=${DEV_REGISTRY_PORT:-58081}
REGISTRY_KAFKA_PORT=${DEV_REGISTRY_KAFKA_PORT:-59092}
if [ "${DEV_TOOLS:-1}" = 1 ]; then SKIP_REGISTRY=${DEV_SKIP_REGISTRY:-0}; else SKIP_REGISTRY=${DEV_SKIP_REGISTRY:-1}; fi
LOGS=$STATE/logs
log() { echo "services: $*" >&2; }

# Phase lines go to stderr: stdout is only the `export` lines.
PHASE_FD=2
PHASE_SCRIPT=dev/services.sh
# shellcheck source=dev/lib/phase.sh
. "$(dirname "$0")/lib/phase.sh"
trap phase_stop EXIT

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
  # The fault tier edits a stopped tansu's SQLite store (tests/it/faults/).
  command -v sqlite3 >/dev/null || packages+=(sqlite3)
  # The S3 server's readiness check signs its request (curl --aws-sigv4);
  # the schema registry's asks its REST API.
  if [ "${DEV_SKIP_S3:-0}" != 1 ] || [ "$SKIP_REGISTRY" != 1 ]; then
    command -v curl >/dev/null || packages+=(curl)
  fi
  # Karapace's venv: Debian's python3 has venv in a package of its own.
  if [ "$SKIP_REGISTRY" != 1 ]; then
    python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
  fi
  if [ "${DEV_TOOLS:-1}" = 1 ]; then
    # Headless Chromium drives the console test (tests/it/console/).
    command -v chromedriver >/dev/null || packages+=(chromium chromium-driver)
    # .ci/check-compose validates docker-compose.yml against the Compose schema.
    python3 -c 'import yaml, jsonschema' 2>/dev/null || packages+=(python3 python3-yaml python3-jsonschema)
  fi
  if [ ${#packages[@]} -gt 0 ]; then
    phase "installing Debian packages: ${packages[*]}" "$LOGS/install.log" apt_install "${packages[@]}"
  fi
}

apt_install() {
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# schemathesis (PyPI) fuzzes the API against its OpenAPI document
# (tests/it/api/schemathesis.rs); a venv under the state dir keeps it off the system.
SCHEMATHESIS_VERSION='>=4.32,<5'
install_schemathesis() {
  local venv="$STATE/venv"
  [ -x "$venv/bin/st" ] && return 0
  mkdir -p "$STATE"
  phase "installing schemathesis$SCHEMATHESIS_VERSION into $venv (pip)" "$LOGS/schemathesis.log" pip_schemathesis "$venv"
}

pip_schemathesis() {
  python3 -m venv "$1"
  "$1/bin/pip" install --progress-bar off "schemathesis$SCHEMATHESIS_VERSION"
}

# tansu, pinned, built once per machine into a cache outside the repository
# (a stamp of version and features decides reuse). Only the libSQL (SQLite)
# storage is compiled in: it keeps topics and offsets across a broker restart
# with no server of its own. The profile overrides trade tansu's speed for
# build time (no LTO, opt-level 1, many codegen units): the cold build is
# the largest part of a fresh CI run, and the broker's speed is not under test.
TANSU_VERSION=0.6.0
TANSU_FEATURES=libsql
CACHE=${CUSTODIAN_CACHE:-$HOME/.cache/custodian}
TANSU_ROOT=$CACHE/tansu
TANSU_STAMP="tansu $TANSU_VERSION features=$TANSU_FEATURES"
install_tansu() {
  mkdir -p "$TANSU_ROOT"
  # Two callers (dev/test's background build and an `env`) wait for one build.
  exec 9>"$TANSU_ROOT/.lock"
  if ! flock -n 9; then
    # The other caller's build log, shown while it runs.
    phase_begin "waiting for the tansu build in progress" "$LOGS/tansu.log"
    flock 9
    phase_end 0
  fi
  if [ -x "$TANSU_ROOT/bin/tansu" ] && [ "$(cat "$TANSU_ROOT/stamp" 2>/dev/null)" = "$TANSU_STAMP" ]; then
    exec 9>&-
    return 0
  fi
  rm -f "$TANSU_ROOT/stamp"
  phase "building tansu $TANSU_VERSION into $TANSU_ROOT (once per machine: about 45 minutes on 2 cores)" \
    "$LOGS/tansu.log" cargo_install_tansu
  echo "$TANSU_STAMP" >"$TANSU_ROOT/stamp"
  exec 9>&-
}

cargo_install_tansu() {
  CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install --locked --force tansu --version "$TANSU_VERSION" \
      --no-default-features --features "$TANSU_FEATURES" --root "$TANSU_ROOT"
}

# s3s-fs (crates.io, the s3s project's file-system S3 server), pinned and
# built once per machine into the same cache as tansu, under the same kind of
# stamp and lock. 0.14.1 is the newest release whose rust-version (1.92) the
# machines' Rust meets: 0.15 and later ask for 1.96. The binary needs the
# crate's `binary` feature. Its own CARGO_TARGET_DIR, removed after the
# install, keeps the build away from any target dir set in the environment.
S3S_VERSION=0.14.1
S3S_FEATURES=binary
S3S_ROOT=$CACHE/s3s-fs
S3S_STAMP="s3s-fs $S3S_VERSION features=$S3S_FEATURES"
S3_DIR=$STATE/s3
S3_ACCESS_KEY=custodian-dev
S3_SECRET_KEY=custodian-dev-secret
S3_REGION=us-east-1
S3_BUCKET=custodian-test
install_s3s() {
  mkdir -p "$S3S_ROOT"
  exec 8>"$S3S_ROOT/.lock"
  if ! flock -n 8; then
    phase_begin "waiting for the s3s-fs build in progress" "$LOGS/s3s-fs.log"
    flock 8
    phase_end 0
  fi
  if [ -x "$S3S_ROOT/bin/s3s-fs" ] && [ "$(cat "$S3S_ROOT/stamp" 2>/dev/null)" = "$S3S_STAMP" ]; then
    exec 8>&-
    return 0
  fi
  rm -f "$S3S_ROOT/stamp"
  phase "building s3s-fs $S3S_VERSION into $S3S_ROOT (once per machine: about 2.5 minutes on 2 cores)" \
    "$LOGS/s3s-fs.log" cargo_install_s3s
  echo "$S3S_STAMP" >"$S3S_ROOT/stamp"
  exec 8>&-
}

cargo_install_s3s() {
  CARGO_TARGET_DIR=$S3S_ROOT/target \
  CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install --locked --force s3s-fs --version "$S3S_VERSION" \
      --features "$S3S_FEATURES" --root "$S3S_ROOT"
  rm -rf "$S3S_ROOT/target"
}

# A signed HEAD of the bucket: 200 only from our s3s-fs, with our keys and
# the bucket in place. s3s requires x-amz-content-sha256, which curl before
# 8.x does not send by itself (curl signs the value given here).
s3_ready() {
  curl -sf -o /dev/null -I --max-time 2 \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "http://127.0.0.1:$S3_PORT/$S3_BUCKET" 2>/dev/null
}

# The pid in the pid file, if that process is still an s3s-fs.
s3_pid() {
  local pid
  pid=$(cat "$S3_DIR/server.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q s3s-fs && echo "$pid"
}

start_s3() {
  # A bucket is a directory under the server's root.
  mkdir -p "$S3_DIR/data/$S3_BUCKET"
  s3_ready && return 0
  phase "starting s3s-fs on 127.0.0.1:$S3_PORT (bucket $S3_BUCKET in $S3_DIR/data)" "$LOGS/s3.log" s3_up
  STARTED=1
}

s3_up() {
  local pid
  # One that runs but does not answer (hung, or started with other keys).
  if pid=$(s3_pid); then
    echo "s3s-fs (pid $pid) runs but does not answer as expected: stopping it"
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # setsid: its own session, like the daemons above, so that it outlives
  # this script; it execs in place, so $! is the server's pid.
  RUST_LOG=${DEV_S3_LOG:-info} setsid "$S3S_ROOT/bin/s3s-fs" \
    --host 127.0.0.1 --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
    "$S3_DIR/data" </dev/null >>"$S3_DIR/server.log" 2>&1 &
  echo $! >"$S3_DIR/server.pid"
  for _ in $(seq 50); do
    s3_ready && return 0
    kill -0 "$(cat "$S3_DIR/server.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "s3s-fs does not answer on 127.0.0.1:$S3_PORT; $S3_DIR/server.log:"
  tail -n 20 "$S3_DIR/server.log"
  return 1
}

stop_s3() {
  local pid
  pid=$(s3_pid) || return 0
  kill "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$S3_DIR/server.pid"
}

# Karapace (Aiven's Confluent-compatible schema registry), pinned, installed
# once per machine into a venv in the cache, under the same kind of stamp
# and lock as tansu. It is not on PyPI: its source is the archive in
# dev/vendor/ (see its README.md for where it comes from and why 3.16.0),
# its dependencies come from PyPI at the versions Karapace pins. About 35
# seconds on 2 cores (wheels for every dependency but avro, a small
# pure-Python build).
KARAPACE_VERSION=3.16.0
KARAPACE_SRC=$(cd "$(dirname "$0")" && pwd)/vendor/karapace-$KARAPACE_VERSION.tar.gz
KARAPACE_REQUIREMENTS=${KARAPACE_SRC%.tar.gz}-requirements.txt
KARAPACE_ROOT=$CACHE/karapace
REGISTRY_DIR=$STATE/registry
install_registry() {
  mkdir -p "$KARAPACE_ROOT"
  exec 7>"$KARAPACE_ROOT/.lock"
  if ! flock -n 7; then
    phase_begin "waiting for the Karapace install in progress" "$LOGS/karapace.log"
    flock 7
    phase_end 0
  fi
  # The archive's and the pins' digests: a change in either reinstalls.
  local stamp
  stamp="karapace $KARAPACE_VERSION $(python3 --version 2>&1) $(cat "$KARAPACE_SRC" "$KARAPACE_REQUIREMENTS" | sha256sum | cut -c1-16)"
  if [ -x "$KARAPACE_ROOT/venv/bin/karapace" ] && [ "$(cat "$KARAPACE_ROOT/stamp" 2>/dev/null)" = "$stamp" ]; then
    exec 7>&-
    return 0
  fi
  rm -f "$KARAPACE_ROOT/stamp"
  phase "installing Karapace $KARAPACE_VERSION into $KARAPACE_ROOT (pip; once per machine: about 35 seconds)" \
    "$LOGS/karapace.log" pip_karapace
  echo "$stamp" >"$KARAPACE_ROOT/stamp"
  exec 7>&-
}

pip_karapace() {
  rm -rf "$KARAPACE_ROOT/venv"
  python3 -m venv "$KARAPACE_ROOT/venv"
  "$KARAPACE_ROOT/venv/bin/pip" install --progress-bar off -r "$KARAPACE_REQUIREMENTS"
  # Its setup.py takes the version from KARAPACE_VERSION where there is no git.
  KARAPACE_VERSION=$KARAPACE_VERSION "$KARAPACE_ROOT/venv/bin/pip" install --progress-bar off --no-deps "$KARAPACE_SRC"
  "$KARAPACE_ROOT/venv/bin/pip" check
  "$KARAPACE_ROOT/venv/bin/karapace" --version
}

# 200 once Karapace has read the schemas topic to its end (503 before).
registry_ready() {
  curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/subjects" 2>/dev/null
}

registry_kafka_listens() { (exec 3<>"/dev/tcp/127.0.0.1/$REGISTRY_KAFKA_PORT") 2>/dev/null; }

# The pid in $REGISTRY_DIR/NAME.pid, if that process still runs PROGRAM.
registry_pid() {
  local pid
  pid=$(cat "$REGISTRY_DIR/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$2" && echo "$pid"
}

# SIGTERM, then SIGKILL after 10 s (Karapace takes about 2 s to close).
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}

start_registry() {
  if [ ! -x "$TANSU_ROOT/bin/tansu" ] || [ "$(cat "$TANSU_ROOT/stamp" 2>/dev/null)" != "$TANSU_STAMP" ]; then
    phase_note "schema registry not started: it needs tansu $TANSU_VERSION, not built yet (dev/services.sh tansu)"
    return 0
  fi
  mkdir -p "$REGISTRY_DIR/kafka"
  # Karapace answers reads from memory with its broker gone: ask for both.
  if registry_ready && registry_kafka_listens; then
    REGISTRY_RUNNING=1
    return 0
  fi
  phase "starting the schema registry (Karapace $KARAPACE_VERSION) on 127.0.0.1:$REGISTRY_PORT, its tansu on 127.0.0.1:$REGISTRY_KAFKA_PORT" \
    "$LOGS/registry.log" registry_up
  REGISTRY_RUNNING=1
  STARTED=1
}

registry_up() {
  local pid
  # One that runs but does not answer, or whose broker went away.
  if pid=$(registry_pid karapace karapace); then
    echo "Karapace (pid $pid) runs, but it or its broker does not answer: stopping it"
    stop_pid "$pid"
  fi
  if ! { registry_pid tansu tansu >/dev/null && registry_kafka_listens; }; then
    if pid=$(registry_pid tansu tansu); then
      echo "the registry's tansu (pid $pid) does not listen: stopping it"
      stop_pid "$pid"
    fi
    # tansu 0.6 resolves a sqlite:// path against its working directory.
    # setsid: a session of its own, so that it outlives this script; it
    # execs in place, so $! is the broker's pid.
    (
      cd "$REGISTRY_DIR/kafka"
      RUST_LOG=${DEV_REGISTRY_KAFKA_LOG:-warn} exec setsid "$TANSU_ROOT/bin/tansu" broker \
        --listener-url "tcp://127.0.0.1:$REGISTRY_KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$REGISTRY_KAFKA_PORT" \
        --storage-engine sqlite://tansu.db
    ) </dev/null >>"$REGISTRY_DIR/tansu.log" 2>&1 &
    echo $! >"$REGISTRY_DIR/tansu.pid"
    for _ in $(seq 100); do
      registry_kafka_listens && break
      kill -0 "$(cat "$REGISTRY_DIR/tansu.pid")" 2>/dev/null || break
      sleep 0.1
    done
    if ! registry_kafka_listens; then
      echo "tansu does not listen on 127.0.0.1:$REGISTRY_KAFKA_PORT; $REGISTRY_DIR/tansu.log:"
      tail -n 20 "$REGISTRY_DIR/tansu.log"
      return 1
    fi
  fi
  # A group of its own on every start. Karapace elects its primary (the one
  # that writes) in a Kafka consumer group, and tansu 0.6 keeps a member in
  # the group after its Karapace stopped, even cleanly: a Karapace that
  # rejoined the group of its previous run joined as a follower of that
  # leader, got an empty assignment and never served. It reads _schemas
  # without a group, so nothing else depends on the group's name.
  cat >"$REGISTRY_DIR/karapace.json" <<JSON
{
  "bootstrap_uri": "127.0.0.1:$REGISTRY_KAFKA_PORT",
  "host": "127.0.0.1",
  "port": $REGISTRY_PORT,
  "advertised_hostname": "127.0.0.1",
  "advertised_port": $REGISTRY_PORT,
  "registry_host": "127.0.0.1",
  "registry_port": $REGISTRY_PORT,
  "karapace_registry": true,
  "karapace_rest": false,
  "topic_name": "_schemas",
  "replication_factor": 1,
  "group_id": "schema-registry-$(date +%s%N)",
  "log_level": "${DEV_REGISTRY_LOG:-INFO}"
}
JSON
  setsid "$KARAPACE_ROOT/venv/bin/karapace" "$REGISTRY_DIR/karapace.json" \
    </dev/null >>"$REGISTRY_DIR/karapace.log" 2>&1 &
  echo $! >"$REGISTRY_DIR/karapace.pid"
  for _ in $(seq 600); do
    registry_ready && return 0
    kill -0 "$(cat "$REGISTRY_DIR/karapace.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "Karapace does not answer GET /subjects on 127.0.0.1:$REGISTRY_PORT; $REGISTRY_DIR/karapace.log:"
  tail -n 30 "$REGISTRY_DIR/karapace.log"
  return 1
}

# Karapace first, then its broker.
stop_registry() {
  local pid
  if pid=$(registry_pid karapace karapace); then stop_pid "$pid"; fi
  if pid=$(registry_pid tansu tansu); then stop_pid "$pid"; fi
  rm -f "$REGISTRY_DIR/karapace.pid" "$REGISTRY_DIR/tansu.pid"
}

# initdb and postgres refuse to run as root: use the package's postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_running() { [ -s "$STATE/pg/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$STATE/pg" status >/dev/null 2>&1; }
pg_has_db() {
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='custodian'" 2>/dev/null | grep -q 1
}

# Sets STARTED=1 when it had something to do.
start_postgres() {
  PG_BIN=$(pg_bindir)
  mkdir -p "$STATE"
  chmod 755 "$STATE"
  pg_running && pg_has_db && return 0
  local label="starting PostgreSQL on 127.0.0.1:$PG_PORT"
  [ -s "$STATE/pg/PG_VERSION" ] || label+=" (a new cluster in $STATE/pg)"
  phase "$label" "$LOGS/postgres.log" postgres_up
  STARTED=1
}

postgres_up() {
  if [ ! -s "$STATE/pg/PG_VERSION" ]; then
    mkdir -p "$STATE/pg"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$STATE/pg"; fi
    chmod 700 "$STATE/pg"
    as_pg "$PG_BIN/initdb" -D "$STATE/pg" -U postgres -A trust -E UTF8
  fi
  if ! pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$STATE/pg" -l "$STATE/pg/server.log" -w -t 60 start \
      -o "-p $PG_PORT -k $STATE/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=512MB -c wal_buffers=64MB -c max_wal_size=4GB -c checkpoint_timeout=15min" || {
      echo "---- $STATE/pg/server.log:"
      tail -n 20 "$STATE/pg/server.log"
      return 1
    }
  fi
  pg_has_db || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE custodian"
}

start_redis() {
  mkdir -p "$STATE/redis"
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
  phase "starting Redis on 127.0.0.1:$REDIS_PORT (appendonly yes, appendfsync always)" "$LOGS/redis.log" redis_up
  STARTED=1
}

redis_up() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --dir "$STATE/redis" --appendonly yes --appendfsync always --save "" \
    --logfile "$STATE/redis/redis.log" --pidfile "$STATE/redis/redis.pid"
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "Redis does not answer on 127.0.0.1:$REDIS_PORT after 5 s; $STATE/redis/redis.log:"
  tail -n 20 "$STATE/redis/redis.log"
  return 1
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
export DEV_TANSU_BIN=$TANSU_ROOT/bin/tansu
export DEV_STATE_DIR=$STATE
ENV
  [ "${DEV_SKIP_S3:-0}" = 1 ] || cat <<ENV
export TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY
export TEST_S3_SECRET_KEY=$S3_SECRET_KEY
export TEST_S3_REGION=$S3_REGION
export TEST_S3_BUCKET=$S3_BUCKET
export DEV_S3_PORT=$S3_PORT
export TEST_S3_DATA_DIR=$STATE/s3/data
ENV
  [ "$REGISTRY_RUNNING" != 1 ] || cat <<ENV
export TEST_SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT
export DEV_REGISTRY_PORT=$REGISTRY_PORT
ENV
}

case "${1:-start}" in
  start|env)
    install_missing
    [ "${DEV_TOOLS:-1}" = 1 ] && install_schemathesis
    [ "${DEV_SKIP_TANSU:-0}" = 1 ] || install_tansu
    [ "${DEV_SKIP_S3:-0}" = 1 ] || install_s3s
    [ "$SKIP_REGISTRY" = 1 ] || install_registry
    STARTED=0
    REGISTRY_RUNNING=0
    start_postgres
    start_redis
    running=("PostgreSQL (127.0.0.1:$PG_PORT)" "Redis (127.0.0.1:$REDIS_PORT)")
    if [ "${DEV_SKIP_S3:-0}" != 1 ]; then
      start_s3
      running+=("s3s-fs (127.0.0.1:$S3_PORT)")
    fi
    if [ "$SKIP_REGISTRY" != 1 ]; then
      start_registry
      [ "$REGISTRY_RUNNING" != 1 ] || running+=("the schema registry (127.0.0.1:$REGISTRY_PORT)")
    fi
    if [ "$STARTED" != 1 ]; then
      last=${running[-1]}
      unset 'running[-1]'
      list=$(IFS=,; echo "${running[*]}")
      phase_note "${list//,/, } and $last already running"
    fi
    print_env
    ;;
  stop)
    bin=$(pg_bindir || true)
    [ -n "$bin" ] && [ -d "$STATE/pg" ] && as_pg "$bin/pg_ctl" -D "$STATE/pg" -m fast stop >&2 || true
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    stop_s3 || true
    stop_registry || true
    ;;
  tansu) install_tansu ;;
  s3) install_s3s ;;
  registry) install_registry ;;
  *) echo "usage: $0 start|env|stop|tansu|s3|registry" >&2; exit 2 ;;
esac
