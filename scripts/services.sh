#!/usr/bin/env bash
# Install, start, stop and inspect the services Plop needs, on loopback only:
#   redis  Redis from Debian's redis-server package
#   kafka  Apache Kafka (KRaft, broker + controller in one JVM), jars from Maven Central
#   mongo  FerretDB 1.x, built from scripts/ferretdb, on its own PostgreSQL
#          cluster (Debian's postgresql package); PLOP_FERRETDB_BACKEND=sqlite
#          selects FerretDB's SQLite backend instead
#
# Usage: scripts/services.sh {install|start|stop|restart|status|env} [redis] [kafka] [mongo]
#        (no service names = all three). See docs/services.md.
#
# Environment:
#   PLOP_REDIS_PORT (6379)  PLOP_KAFKA_PORT (9092)  PLOP_KAFKA_CONTROLLER_PORT (9093)
#   PLOP_MONGO_PORT (27017) PLOP_MONGO_DEBUG_PORT (28088) PLOP_POSTGRES_PORT (15432)
#   PLOP_FERRETDB_BACKEND   postgresql (default) or sqlite
#   PLOP_SERVICES_DIR       run state (data, logs, pid files); default <repo>/.services
#   PLOP_SERVICES_TIMEOUT   readiness timeout in seconds for `start` (default per service)
#   XDG_CACHE_HOME          installed jars/binaries go to ${XDG_CACHE_HOME:-~/.cache}/plop
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
ALL_SERVICES=(redis kafka mongo)

REDIS_PORT=${PLOP_REDIS_PORT:-6379}
KAFKA_PORT=${PLOP_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${PLOP_KAFKA_CONTROLLER_PORT:-9093}
MONGO_PORT=${PLOP_MONGO_PORT:-27017}
MONGO_DEBUG_PORT=${PLOP_MONGO_DEBUG_PORT:-28088}
POSTGRES_PORT=${PLOP_POSTGRES_PORT:-15432}
MONGO_BACKEND=${PLOP_FERRETDB_BACKEND:-postgresql}

if [[ -z ${HOME:-} ]]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/plop
STATE_ROOT=${PLOP_SERVICES_DIR:-$REPO_DIR/.services}

# Versions come from the files that pin them, so they cannot drift apart.
KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$SCRIPT_DIR/kafka/pom.xml")
FERRETDB_VERSION=$(awk '$1 == "github.com/FerretDB/FerretDB" { sub(/^v/, "", $2); print $2 }' \
  "$SCRIPT_DIR/ferretdb/go.mod")
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
FERRETDB_HOME=$CACHE_DIR/ferretdb-$FERRETDB_VERSION
FERRETDB_BIN=$FERRETDB_HOME/bin/ferretdb

# File descriptors used for locks; closed in every spawned daemon.
INSTALL_LOCK_FD=8
SERVICE_LOCK_FD=9

log() { printf '%s\n' "services: $*" >&2; }
die() { printf '%s\n' "services: error: $*" >&2; exit 1; }

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

usage() {
  cat >&2 <<'EOF'
usage: scripts/services.sh {install|start|stop|restart|status|env} [redis] [kafka] [mongo]
  install  install what is missing (idempotent; per-user cache ~/.cache/plop)
  start    install if needed, start, wait until ready (idempotent)
  stop     TERM, wait up to 30 s, then KILL (idempotent; data is kept)
  restart  stop then start
  status   one line per service; exit 0 only if all named services are running
  env      print export lines for PLOP_REDIS_URL, PLOP_BROKER_URL, PLOP_MONGO_URL
No service names means all three. "mongo" is FerretDB (and, with the default
PostgreSQL backend, the PostgreSQL cluster under it).
EOF
}

check_port() { # name value
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < 1 || 10#$2 > 65535)); then
    die "$1=$2 is not a TCP port"
  fi
}

state_dir() { # svc -> absolute run-state directory of the service
  local root=$STATE_ROOT
  mkdir -p -- "$root/$1"
  root=$(cd -- "$root" && pwd -P)
  printf '%s/%s' "$root" "$1"
}

service_file() { # svc ext: <state>/<svc>/<program>.<ext>, e.g. mongo pid -> .../mongo/ferretdb.pid
  local dir
  dir=$(state_dir "$1")
  case $1 in
    redis) printf '%s/redis.%s' "$dir" "$2" ;;
    kafka) printf '%s/kafka.%s' "$dir" "$2" ;;
    mongo) printf '%s/ferretdb.%s' "$dir" "$2" ;;
  esac
}

# ---------------------------------------------------------------- processes

pid_alive() { # pid: true if it runs (a zombie waiting to be reaped does not count)
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != [ZX] ]]
}

# Prints the pid recorded for svc if that process is alive and is really the
# service (pid files can outlive a reboot and their pid be reused).
service_pid() { # svc
  local svc=$1 pidfile pid cmdline pattern
  pidfile=$(service_file "$svc" pid)
  case $svc in
    redis) pattern=redis-server ;;
    kafka) pattern=kafka.Kafka ;;
    mongo) pattern=ferretdb ;;
  esac
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  pid_alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$pattern"* ]] || return 1
  printf '%s' "$pid"
}

# Starts "$@" detached (own session, stdin from /dev/null, output appended to
# logfile, lock fds closed) and writes its pid to pidfile.
spawn() { # pidfile logfile cmd...
  local pidfile=$1 logfile=$2
  shift 2
  rm -f -- "$pidfile"
  # shellcheck disable=SC2016 # $$ and $1 are for the inner shell
  setsid sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && shift && exec "$@"' sh "$pidfile" "$@" \
    </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.05
  done
  die "could not start $*"
}

stop_pid() { # name pid
  local name=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) still running 30 s after TERM: sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) survived KILL"
}

# ------------------------------------------------------------------- probes

# The probes below run in a child bash (under `timeout`); their single-quoted
# scripts expand $1 there, on purpose.
# shellcheck disable=SC2016
tcp_open() { # port: something accepts TCP connections on 127.0.0.1:port
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

port_holder() { # port: describe who listens there
  local out
  out=$(ss -Hltnp "sport = :$1" 2>/dev/null |
    sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\),.*/\1, pid \2/p' | head -n 1) || true
  printf '%s' "${out:-unknown process}"
}

redis_ping() { # port
  [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

# shellcheck disable=SC2016
# Kafka ApiVersions v0 request (correlation id 1, client id "plop"); a broker
# that accepts clients answers with correlation id 1 and error code 0.
kafka_ping() { # port
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x01\x00\x04plop" >&3
    reply=$(head -c 10 <&3 | od -An -tx1 | tr -d " \n")
    [[ ${reply:8:12} == 000000010000 ]]' _ "$1" 2>/dev/null
}

# shellcheck disable=SC2016
# MongoDB OP_MSG {ping: 1, $db: "admin"}; the reply must contain ok: 1.0.
mongo_ping() { # port
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x33\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00" >&3
    printf "\x00\x00\x00\x00\x00\x1e\x00\x00\x00\x10ping\x00\x01\x00\x00\x00" >&3
    printf "\x02\$db\x00\x06\x00\x00\x00admin\x00\x00" >&3
    h=$(head -c 4 <&3 | od -An -tx1 | tr -d " \n")
    [[ ${#h} == 8 ]] || exit 1
    len=$((16#${h:6:2}${h:4:2}${h:2:2}${h:0:2}))
    ((len > 4 && len < 65536)) || exit 1
    body=$(head -c $((len - 4)) <&3 | od -An -tx1 | tr -d " \n")
    [[ $body == *016f6b00000000000000f03f* ]]' _ "$1" 2>/dev/null
}

ferretdb_live() { # debug port
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$1/debug/livez" 2>/dev/null
}

service_port() { # svc
  case $1 in
    redis) printf '%s' "$REDIS_PORT" ;;
    kafka) printf '%s' "$KAFKA_PORT" ;;
    mongo) printf '%s' "$MONGO_PORT" ;;
  esac
}

service_ports() { # svc: every port the service listens on
  case $1 in
    redis) printf '%s\n' "$REDIS_PORT" ;;
    kafka) printf '%s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" ;;
    mongo) printf '%s\n' "$MONGO_PORT" "$MONGO_DEBUG_PORT" ;;
  esac
}


# What a running instance must have been started with to be reused: its ports
# and, for mongo, its PostgreSQL port (none with the SQLite backend, so a change
# of backend reads as a change of ports and `start` restarts FerretDB).
service_signature() { # svc
  service_ports "$1"
  if [[ $1 == mongo && $MONGO_BACKEND == postgresql ]]; then
    printf '%s\n' "$POSTGRES_PORT"
  fi
}

recorded_ports() { # svc: the ports the running instance was started with
  local f
  f=$(service_file "$1" ports)
  [[ -f $f ]] && tr '\n' ' ' <"$f" | sed 's/ $//'
  return 0
}

ports_match() { # svc: the running instance uses the ports configured now
  [[ $(recorded_ports "$1") == "$(service_signature "$1" | tr '\n' ' ' | sed 's/ $//')" ]]
}

service_ready() { # svc
  local dir
  case $1 in
    redis) redis_ping "$REDIS_PORT" ;;
    kafka)
      dir=$(state_dir kafka)
      grep -q 'Kafka Server started' "$dir/kafka.log" 2>/dev/null && kafka_ping "$KAFKA_PORT"
      ;;
    mongo) ferretdb_live "$MONGO_DEBUG_PORT" && mongo_ping "$MONGO_PORT" ;;
  esac
}

default_timeout() { # svc
  case $1 in
    redis) printf 15 ;;
    kafka) printf 120 ;;
    mongo) printf 30 ;;
  esac
}

# ------------------------------------------------------------------ install

SUDO=()
APT_UPDATED=0
apt_install() { # packages...
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    SUDO=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    "${SUDO[@]}" apt-get -q -o DPkg::Lock::Timeout=300 update </dev/null >&2 8>&- 9>&-
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  # The lock fds are closed so that a daemon a package's maintainer script
  # starts cannot inherit (and hold) our locks.
  "${SUDO[@]}" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends "$@" \
    </dev/null >&2 8>&- 9>&-
}

fingerprint() { # files...
  cat -- "$@" | sha256sum | cut -c1-16
}

with_install_lock() { # name cmd...: run cmd holding a per-install lock
  local name=$1
  shift
  mkdir -p -- "$CACHE_DIR"
  eval "exec $INSTALL_LOCK_FD>\"\$CACHE_DIR/.\$name.lock\""
  flock "$INSTALL_LOCK_FD"
  "$@"
  eval "exec $INSTALL_LOCK_FD>&-"
}

redis_installed() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }

install_redis() {
  redis_installed && return 0
  local had_service=0
  [[ -e /etc/init.d/redis-server || -e /lib/systemd/system/redis-server.service ]] && had_service=1
  apt_install redis-server
  redis_installed || die "redis-server still missing after apt-get install"
  # The Debian package starts a system redis on 6379 where an init system
  # runs. Plop runs its own redis (own port, state dir), so stop the system one
  # this script just brought in and keep it from starting at boot.
  if ((had_service == 0)); then
    if [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now redis-server.service >&2 || true
    elif [[ -x /etc/init.d/redis-server ]] && [[ -s /run/redis/redis-server.pid ]]; then
      "${SUDO[@]}" /etc/init.d/redis-server stop >&2 || true
    fi
  fi
}

kafka_fingerprint() { printf '%s %s' "$KAFKA_VERSION" "$(fingerprint "$SCRIPT_DIR/kafka/pom.xml")"; }
kafka_installed() {
  [[ -f $KAFKA_HOME/.installed && $(<"$KAFKA_HOME/.installed") == "$(kafka_fingerprint)" ]]
}

java_ok() {
  command -v java >/dev/null || return 1
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
  [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17))
}

do_install_kafka() {
  kafka_installed && return 0
  local t0 tmp
  t0=$(now)
  local pkgs=()
  java_ok || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  java_ok || die "Kafka $KAFKA_VERSION needs Java 17 or newer"
  log "kafka: fetching Kafka $KAFKA_VERSION jars with Maven"
  tmp=$KAFKA_HOME.tmp.$$
  rm -rf -- "$tmp"
  mkdir -p -- "$tmp/libs"
  # Output goes to a file: Maven 3.8 prints stray colour codes even with -B -q.
  if ! mvn -B -ntp -f "$SCRIPT_DIR/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DoutputDirectory="$tmp/libs" -DincludeScope=runtime </dev/null >"$tmp/mvn.log" 2>&1; then
    grep -E 'ERROR|BUILD' "$tmp/mvn.log" | tail -n 30 >&2 || true
    rm -rf -- "$tmp"
    die "kafka: mvn could not fetch the jars"
  fi
  rm -f -- "$tmp/mvn.log"
  [[ -f $tmp/libs/kafka_2.13-$KAFKA_VERSION.jar ]] || { rm -rf -- "$tmp"; die "kafka: jars missing"; }
  kafka_fingerprint >"$tmp/.installed"
  rm -rf -- "$KAFKA_HOME"
  mv -- "$tmp" "$KAFKA_HOME"
  log "kafka: installed $KAFKA_HOME in $(elapsed "$t0") s"
}

ferretdb_fingerprint() {
  printf '%s %s' "$FERRETDB_VERSION" "$(fingerprint "$SCRIPT_DIR/ferretdb/go.mod" "$SCRIPT_DIR/ferretdb/go.sum")"
}
ferretdb_installed() {
  [[ -x $FERRETDB_BIN && -f $FERRETDB_HOME/.installed &&
    $(<"$FERRETDB_HOME/.installed") == "$(ferretdb_fingerprint)" ]]
}

do_install_ferretdb() {
  ferretdb_installed && return 0
  local t0 tmp src mod
  t0=$(now)
  command -v go >/dev/null || die "mongo: FerretDB is built from source and needs Go >= 1.21 (go not found)"
  [[ -n $FERRETDB_VERSION ]] || die "mongo: no FerretDB version in scripts/ferretdb/go.mod"
  log "mongo: building FerretDB v$FERRETDB_VERSION (CGO_ENABLED=0; SQLite and PostgreSQL backends)"
  tmp=$FERRETDB_HOME.tmp.$$
  rm -rf -- "$tmp"
  mkdir -p -- "$tmp/bin" "$tmp/build"
  local -x GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
  # FerretDB's build/version package panics at start-up unless the binary's
  # main module is FerretDB itself and carries build/version/version.txt (a
  # generated file, not in the published module). Build against a writable
  # copy of the module that has the file, through a replace in a scratch copy
  # of the committed go.mod/go.sum.
  go -C "$SCRIPT_DIR/ferretdb" mod download github.com/FerretDB/FerretDB >&2 ||
    { rm -rf -- "$tmp"; die "mongo: go mod download failed"; }
  mod=$(go -C "$SCRIPT_DIR/ferretdb" list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
  src=$tmp/build/FerretDB
  cp -R -- "$mod" "$src"
  chmod -R u+w -- "$src"
  printf 'v%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  printf 'plop\n' >"$src/build/version/package.txt"
  cp -- "$SCRIPT_DIR/ferretdb/go.mod" "$tmp/build/go.mod"
  cp -- "$SCRIPT_DIR/ferretdb/go.sum" "$tmp/build/go.sum"
  go -C "$SCRIPT_DIR/ferretdb" mod edit -modfile="$tmp/build/go.mod" \
    -replace="github.com/FerretDB/FerretDB=$src"
  go -C "$SCRIPT_DIR/ferretdb" build -modfile="$tmp/build/go.mod" -trimpath -ldflags='-s -w' \
    -o "$tmp/bin/ferretdb" github.com/FerretDB/FerretDB/cmd/ferretdb >&2 ||
    { rm -rf -- "$tmp"; die "mongo: go build of FerretDB failed"; }
  rm -rf -- "$tmp/build"
  "$tmp/bin/ferretdb" --version >/dev/null 2>&1 ||
    { rm -rf -- "$tmp"; die "mongo: the built ferretdb does not run"; }
  ferretdb_fingerprint >"$tmp/.installed"
  rm -rf -- "$FERRETDB_HOME"
  mv -- "$tmp" "$FERRETDB_HOME"
  log "mongo: installed $FERRETDB_BIN in $(elapsed "$t0") s"
}

# PostgreSQL server binaries of the newest major version installed the Debian
# way (/usr/lib/postgresql/<major>/bin), else the directory of `initdb` on PATH.
pg_bindir_ok() { # dir
  local b
  for b in postgres initdb pg_ctl pg_isready psql; do
    [[ -x $1/$b ]] || return 1
  done
}

pg_bindir() {
  local d v best='' bestv=-1
  for d in /usr/lib/postgresql/*/bin; do
    v=${d#/usr/lib/postgresql/}
    v=${v%/bin}
    if [[ $v =~ ^[0-9]+$ ]] && ((10#$v > bestv)) && pg_bindir_ok "$d"; then
      best=$d
      bestv=$((10#$v))
    fi
  done
  if [[ -z $best ]] && d=$(command -v initdb 2>/dev/null); then
    d=$(dirname -- "$(readlink -f -- "$d")")
    pg_bindir_ok "$d" && best=$d
  fi
  [[ -n $best ]] && printf '%s' "$best"
}

PG_BIN=
postgres_installed() {
  [[ -n $PG_BIN ]] || PG_BIN=$(pg_bindir) || return 1
  # As root the cluster runs as the postgres user (initdb and postgres refuse root).
  ((EUID != 0)) || getent passwd postgres >/dev/null
}

do_install_postgres() {
  postgres_installed && return 0
  local t0 had_service=0 ver cluster port status rest
  t0=$(now)
  [[ -e /etc/init.d/postgresql || -e /lib/systemd/system/postgresql.service ]] && had_service=1
  apt_install postgresql
  postgres_installed || die "mongo: PostgreSQL server binaries still missing after apt-get install"
  # The Debian package creates a "main" cluster on 5432 and starts it where an
  # init system runs. Plop runs its own cluster (own port, state dir), so stop
  # the system one this script just brought in and keep it from starting at boot.
  if ((had_service == 0)); then
    if [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now postgresql.service >&2 || true
    elif command -v pg_lsclusters >/dev/null; then
      while read -r ver cluster port status rest; do
        [[ $status == online ]] || continue
        log "mongo: stopping the system PostgreSQL cluster $ver/$cluster (port $port)"
        "${SUDO[@]}" pg_ctlcluster "$ver" "$cluster" stop >&2 8>&- 9>&- || true
      done < <(pg_lsclusters -h 2>/dev/null)
    fi
  fi
  log "mongo: PostgreSQL from $PG_BIN installed in $(elapsed "$t0") s"
}

install_kafka() { kafka_installed || with_install_lock "kafka-$KAFKA_VERSION" do_install_kafka; }
install_mongo() {
  if [[ $MONGO_BACKEND == postgresql ]] && ! postgres_installed; then
    with_install_lock postgresql do_install_postgres
  fi
  ferretdb_installed || with_install_lock "ferretdb-$FERRETDB_VERSION" do_install_ferretdb
}

service_installed() { # svc
  case $1 in
    redis) redis_installed ;;
    kafka) kafka_installed ;;
    mongo) ferretdb_installed && { [[ $MONGO_BACKEND == sqlite ]] || postgres_installed; } ;;
  esac
}

cmd_install() { # svcs...
  local svc
  for svc in "$@"; do
    if service_installed "$svc"; then
      log "$svc: already installed"
    else
      "install_$svc"
    fi
  done
}

# --------------------------------------------- postgresql (backend of mongo)

# The mongo service's own PostgreSQL cluster lives in the mongo state dir:
#   pg/           data directory (owned by the cluster owner, mode 0700)
#   pg-run/       its unix socket directory
#   postgres.log  server log (the previous start's: postgres.log.1)
# Every client of the script talks to it over TCP on 127.0.0.1:PLOP_POSTGRES_PORT.
pg_paths() { # sets PG_DATA PG_RUN PG_LOG
  local dir
  dir=$(state_dir mongo)
  PG_DATA=$dir/pg
  PG_RUN=$dir/pg-run
  PG_LOG=$dir/postgres.log
}

as_pg() { # cmd...: run as the cluster owner (postgres when we are root, else ourselves)
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

postmaster_field() { # n: line n of the running cluster's postmaster.pid (1 pid, 4 port)
  sed -n "$1p" "$PG_DATA/postmaster.pid" 2>/dev/null
}

postgres_pid() { # pid of our cluster's postmaster, if it runs
  local pid cmdline
  pg_paths
  pid=$(postmaster_field 1)
  pid_alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *postgres* ]] || return 1
  printf '%s' "$pid"
}

pg_ready() { # our cluster accepts connections on POSTGRES_PORT
  postgres_installed &&
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -t 2 \
      </dev/null >/dev/null 2>&1
}

pg_fail() { # what: report a failure with the end of the PostgreSQL log
  printf '%s\n' "services: error: mongo: PostgreSQL $1; last lines of $PG_LOG:" >&2
  tail -n 60 -- "$PG_LOG" >&2 || true
}

# initdb and postgres run as the postgres user, which must be able to reach the
# state dir. Where a parent directory is closed to others (e.g. a checkout under
# a 0700 home), grant it o+x (traverse only: no listing, no reading).
pg_grant_traverse() { # dir
  local dir=$1 path='' part parts
  ((EUID == 0)) || return 0
  as_pg test -x "$dir" 2>/dev/null && return 0
  IFS=/ read -ra parts <<<"${dir#/}"
  for part in "${parts[@]}"; do
    [[ -n $part ]] || continue
    path=$path/$part
    if ! as_pg test -x "$path" 2>/dev/null; then
      log "mongo: chmod o+x $path (the postgres user must reach $dir)"
      chmod o+x -- "$path" || return 1
    fi
  done
  as_pg test -x "$dir" 2>/dev/null
}

pg_init() { # create the cluster: built in pg.init, then renamed, so a cut-short initdb leaves no half cluster
  local tmp=$PG_DATA.init opts=(-A trust -U postgres -E UTF8 --locale=C --no-sync)
  if [[ -e $PG_DATA ]]; then
    printf '%s\n' "services: error: mongo: $PG_DATA exists but is not a PostgreSQL data directory (no PG_VERSION); remove it" >&2
    return 1
  fi
  log "mongo: initdb $PG_DATA ($("$PG_BIN/postgres" --version 2>/dev/null))"
  rm -rf -- "$tmp"
  mkdir -m 700 -- "$tmp" || return 1
  if ((EUID == 0)); then chown postgres: -- "$tmp" || return 1; fi
  [[ $("$PG_BIN/initdb" --help 2>/dev/null) == *--no-instructions* ]] && opts+=(--no-instructions)
  if ! as_pg "$PG_BIN/initdb" -D "$tmp" "${opts[@]}" </dev/null >>"$PG_LOG" 2>&1 8>&- 9>&-; then
    pg_fail "initdb failed"
    rm -rf -- "$tmp"
    return 1
  fi
  printf "\n# Plop: port, sockets and test-only settings, rewritten at every start.\ninclude_if_exists = 'plop.conf'\n" \
    >>"$tmp/postgresql.conf"
  mv -- "$tmp" "$PG_DATA"
}

pg_write_conf() {
  local sock=$PG_RUN
  # A unix socket path has at most 107 bytes; under a very deep state dir the
  # cluster listens on TCP only (nothing here uses the socket).
  ((${#sock} + 20 <= 107)) || sock=
  {
    printf '# Written by scripts/services.sh at every start of the mongo service.\n'
    printf '# A throwaway test cluster: durability is traded for speed.\n'
    printf "listen_addresses = '127.0.0.1'\n"
    printf 'port = %s\n' "$POSTGRES_PORT"
    printf "unix_socket_directories = '%s'\n" "${sock//\'/\'\'}"
    printf 'unix_socket_permissions = 0700\n'
    printf 'fsync = off\n'
    printf 'synchronous_commit = off\n'
    printf 'full_page_writes = off\n'
    printf 'jit = off\n'
  } >"$PG_DATA/plop.conf" || return 1
  if ((EUID == 0)); then chown postgres: -- "$PG_DATA/plop.conf" || return 1; fi
}

pg_ensure_database() { # the database FerretDB stores everything in
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -tA)
  [[ $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" </dev/null 2>>"$PG_LOG") == 1 ]] &&
    return 0
  "${psql[@]}" -c 'CREATE DATABASE ferretdb' </dev/null >>"$PG_LOG" 2>&1 ||
    { pg_fail "could not create database ferretdb"; return 1; }
}

# postmaster.pid of a server that is gone. PostgreSQL refuses to start while the
# pid in it exists, which includes a killed postmaster that is still a zombie
# (here pid 1 reaps orphans only about a second later): wait for it to go, and
# drop the file if its pid now belongs to some other program.
pg_clear_stale_pidfile() {
  local pid i cmdline
  pid=$(postmaster_field 1)
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  for ((i = 0; i < 100; i++)); do
    if [[ ! -e /proc/$pid ]] || pid_alive "$pid"; then break; fi
    sleep 0.1 # a zombie
  done
  pid_alive "$pid" || return 0
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
  if [[ $cmdline != *postgres* ]]; then
    log "mongo: removing stale $PG_DATA/postmaster.pid (pid $pid is now: ${cmdline:0:60})"
    rm -f -- "$PG_DATA/postmaster.pid"
  fi
}

start_postgres() { # timeout: start our cluster unless it already runs on POSTGRES_PORT
  local timeout=$1 pid t0 deadline
  pg_paths
  postgres_installed || { printf '%s\n' "services: error: mongo: PostgreSQL is not installed" >&2; return 1; }
  if pid=$(postgres_pid); then
    if [[ $(postmaster_field 4) == "$POSTGRES_PORT" ]] && pg_ready; then
      pg_ensure_database
      return
    fi
    log "mongo: PostgreSQL (pid $pid, port $(postmaster_field 4)) is not serving port $POSTGRES_PORT; restarting it"
    stop_postgres || return 1
  fi
  if tcp_open "$POSTGRES_PORT"; then
    printf '%s\n' "services: error: mongo: port 127.0.0.1:$POSTGRES_PORT is held by another process ($(port_holder "$POSTGRES_PORT")); stop it or choose another PLOP_POSTGRES_PORT" >&2
    return 1
  fi
  t0=$(now)
  pg_grant_traverse "$(dirname -- "$PG_DATA")" ||
    { printf '%s\n' "services: error: mongo: the postgres user cannot reach $(dirname -- "$PG_DATA"); set PLOP_SERVICES_DIR elsewhere" >&2; return 1; }
  [[ -f $PG_LOG ]] && mv -f -- "$PG_LOG" "$PG_LOG.1"
  : >"$PG_LOG"
  mkdir -p -- "$PG_RUN"
  if ((EUID == 0)); then chown postgres: -- "$PG_LOG" "$PG_RUN" || return 1; fi
  if [[ ! -s $PG_DATA/PG_VERSION ]]; then
    pg_init || return 1
  fi
  pg_write_conf || { printf '%s\n' "services: error: mongo: cannot write $PG_DATA/plop.conf" >&2; return 1; }
  pg_clear_stale_pidfile
  # pg_ctl detaches the server (setsid, stdin from /dev/null, output to the
  # log); the lock fds are closed so that the server cannot hold our locks.
  # shellcheck disable=SC2094 # pg_ctl and the server only append to the log, as we do
  if ! as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t "$timeout" -s \
    </dev/null >>"$PG_LOG" 2>&1 8>&- 9>&-; then
    pg_fail "did not start"
    return 1
  fi
  deadline=$((SECONDS + timeout))
  until pg_ready; do
    if ((SECONDS >= deadline)) || ! postgres_pid >/dev/null; then
      pg_fail "not accepting connections on 127.0.0.1:$POSTGRES_PORT"
      return 1
    fi
    sleep 0.1
  done
  log "mongo: PostgreSQL ready on 127.0.0.1:$POSTGRES_PORT (pid $(postgres_pid)) in $(elapsed "$t0") s"
  pg_ensure_database
}

stop_postgres() { # stop our cluster if it runs (fast shutdown: clients are cut off)
  local pid t0
  pg_paths
  pid=$(postgres_pid) || return 0
  t0=$(now)
  if ! { postgres_installed &&
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 -s </dev/null >>"$PG_LOG" 2>&1 8>&- 9>&-; }; then
    log "mongo: pg_ctl stop failed; signalling PostgreSQL (pid $pid)"
    stop_pid postgres "$pid"
  fi
  log "mongo: PostgreSQL stopped (pid $pid) in $(elapsed "$t0") s"
}

# -------------------------------------------------------------------- start

kafka_java() { # -> KAFKA_JAVA array
  KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$SCRIPT_DIR/kafka/log4j2.properties"
    -cp "$KAFKA_HOME/libs/*")
}

launch_redis() { # dir
  local dir=$1
  spawn "$dir/redis.pid" "$dir/redis.log" \
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --save '' --appendonly no --dir "$dir" --daemonize no
}

launch_kafka() { # dir
  local dir=$1 data=$1/data cid
  sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$data|g" "$SCRIPT_DIR/kafka/server.properties.in" >"$dir/server.properties"
  kafka_java
  # The KRaft log dir is formatted once and kept across restarts (and port
  # changes: the single voter updates its own endpoint on start).
  if [[ ! -f $data/meta.properties ]]; then
    [[ -s $dir/cluster.id ]] ||
      "${KAFKA_JAVA[@]}" kafka.tools.StorageTool random-uuid 2>>"$dir/kafka.log" >"$dir/cluster.id"
    cid=$(<"$dir/cluster.id")
    "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --standalone --ignore-formatted \
      -t "$cid" -c "$dir/server.properties" >>"$dir/kafka.log" 2>&1 ||
      { tail -n 40 "$dir/kafka.log" >&2; die "kafka: formatting $data failed"; }
  fi
  spawn "$dir/kafka.pid" "$dir/kafka.log" "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties"
}

launch_mongo() { # dir timeout
  local dir=$1 backend
  mkdir -p -- "$dir/state"
  if [[ $MONGO_BACKEND == postgresql ]]; then
    start_postgres "$2" || return 1
    backend=(--handler=postgresql "--postgresql-url=postgres://postgres@127.0.0.1:$POSTGRES_PORT/ferretdb")
  else
    stop_postgres # left running by the PostgreSQL backend
    mkdir -p -- "$dir/data"
    backend=(--handler=sqlite "--sqlite-url=file:$dir/data/")
  fi
  spawn "$dir/ferretdb.pid" "$dir/ferretdb.log" "$FERRETDB_BIN" "${backend[@]}" \
    "--listen-addr=127.0.0.1:$MONGO_PORT" "--debug-addr=127.0.0.1:$MONGO_DEBUG_PORT" \
    "--state-dir=$dir/state" --telemetry=disable --log-level=warn
}

wait_ready() { # svc pid timeout t0
  local svc=$1 pid=$2 timeout=$3 t0=$4 deadline logf
  logf=$(service_file "$svc" log)
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if service_ready "$svc"; then
      log "$svc: ready on 127.0.0.1:$(service_port "$svc") (pid $pid) in $(elapsed "$t0") s"
      return 0
    fi
    if ! pid_alive "$pid"; then
      printf '%s\n' "services: error: $svc exited during start-up; last lines of $logf:" >&2
      tail -n 60 -- "$logf" >&2 || true
      return 1
    fi
    sleep 0.25
  done
  printf '%s\n' "services: error: $svc not ready after ${timeout} s; last lines of $logf:" >&2
  tail -n 60 -- "$logf" >&2 || true
  stop_pid "$svc" "$pid"
  return 1
}

start_one() { # svc
  local svc=$1 dir pid port timeout t0 logf
  dir=$(state_dir "$svc")
  logf=$(service_file "$svc" log)
  timeout=${PLOP_SERVICES_TIMEOUT:-$(default_timeout "$svc")}
  eval "exec $SERVICE_LOCK_FD>\"\$dir/.lock\""
  flock "$SERVICE_LOCK_FD"
  if pid=$(service_pid "$svc") && ! ports_match "$svc"; then
    log "$svc: running (pid $pid) on other ports ($(recorded_ports "$svc")); restarting it"
    stop_pid "$svc" "$pid"
  fi
  if [[ $svc == mongo && $MONGO_BACKEND == postgresql ]] && pid=$(service_pid "$svc") &&
    ! postgres_pid >/dev/null; then
    log "mongo: FerretDB (pid $pid) runs without its PostgreSQL; restarting both"
    stop_pid "$svc" "$pid"
  fi
  if pid=$(service_pid "$svc"); then
    if service_ready "$svc"; then
      log "$svc: already running on 127.0.0.1:$(service_port "$svc") (pid $pid)"
    else
      log "$svc: pid $pid is running but not answering yet; waiting"
      wait_ready "$svc" "$pid" "$timeout" "$(now)" || return 1
    fi
    eval "exec $SERVICE_LOCK_FD>&-"
    return 0
  fi
  for port in $(service_ports "$svc"); do
    if tcp_open "$port"; then
      printf '%s\n' "services: error: $svc: port 127.0.0.1:$port is held by another process ($(port_holder "$port")); stop it or choose other PLOP_*_PORT values" >&2
      return 1
    fi
  done
  t0=$(now)
  [[ -f $logf ]] && mv -f -- "$logf" "$logf.1"
  : >"$logf"
  service_signature "$svc" >"$(service_file "$svc" ports)"
  "launch_$svc" "$dir" "$timeout" || return 1
  pid=$(<"$(service_file "$svc" pid)")
  wait_ready "$svc" "$pid" "$timeout" "$t0" || return 1
  eval "exec $SERVICE_LOCK_FD>&-"
}

cmd_start() { # svcs...
  local svc failed=0
  for svc in "$@"; do
    service_installed "$svc" || "install_$svc"
  done
  for svc in "$@"; do
    start_one "$svc" || failed=1
  done
  return "$failed"
}

# --------------------------------------------------------------------- stop

stop_one() { # svc
  local svc=$1 dir pid
  dir=$(state_dir "$svc")
  eval "exec $SERVICE_LOCK_FD>\"\$dir/.lock\""
  flock "$SERVICE_LOCK_FD"
  if pid=$(service_pid "$svc"); then
    local t0
    t0=$(now)
    stop_pid "$svc" "$pid"
    log "$svc: stopped (pid $pid) in $(elapsed "$t0") s"
  else
    log "$svc: not running"
  fi
  rm -f -- "$dir"/*.pid
  if [[ $svc == mongo ]]; then stop_postgres; fi
  eval "exec $SERVICE_LOCK_FD>&-"
}

cmd_stop() { # svcs...
  local svc
  for svc in "$@"; do stop_one "$svc"; done
}

# ------------------------------------------------------------------- status

# The mongo line also tells about the PostgreSQL cluster under FerretDB:
#   mongo  running      port=27017 debug=28088 postgres=15432 pid=N postgres_pid=M
#   mongo  unresponsive port=27017 debug=28088 postgres=15432 pid=N (PostgreSQL not running)
#   mongo  stopped      port=27017 debug=28088 postgres=15432 (PostgreSQL still running, pid M)
cmd_status() { # svcs...
  local svc pid port rc=0 extra note pgpid
  for svc in "$@"; do
    port=$(service_port "$svc")
    extra=
    note=
    pgpid=
    [[ $svc == kafka ]] && extra=" controller=$KAFKA_CONTROLLER_PORT"
    if [[ $svc == mongo ]]; then
      extra=" debug=$MONGO_DEBUG_PORT"
      if [[ $MONGO_BACKEND == postgresql ]]; then
        extra+=" postgres=$POSTGRES_PORT"
      else
        extra+=" backend=sqlite"
      fi
      pgpid=$(postgres_pid) || pgpid=
    fi
    if pid=$(service_pid "$svc"); then
      if [[ $svc == mongo && $MONGO_BACKEND == postgresql ]]; then
        if [[ -n $pgpid ]]; then note=" postgres_pid=$pgpid"; else note=" (PostgreSQL not running)"; fi
      fi
      if ! ports_match "$svc"; then
        printf '%-6s other-ports  port=%s%s pid=%s%s (started on ports %s)\n' "$svc" "$port" "$extra" "$pid" \
          "$note" "$(recorded_ports "$svc")"
        rc=1
      elif service_ready "$svc"; then
        printf '%-6s running      port=%s%s pid=%s%s\n' "$svc" "$port" "$extra" "$pid" "$note"
      else
        printf '%-6s unresponsive port=%s%s pid=%s%s\n' "$svc" "$port" "$extra" "$pid" "$note"
        rc=1
      fi
    else
      [[ -n $pgpid ]] && note=" (PostgreSQL still running, pid $pgpid)"
      if tcp_open "$port"; then
        printf '%-6s stopped      port=%s%s (port held by %s)%s\n' "$svc" "$port" "$extra" "$(port_holder "$port")" "$note"
      else
        printf '%-6s stopped      port=%s%s%s\n' "$svc" "$port" "$extra" "$note"
      fi
      rc=1
    fi
  done
  return "$rc"
}

cmd_env() {
  printf 'export PLOP_REDIS_URL=redis://127.0.0.1:%s/0\n' "$REDIS_PORT"
  printf 'export PLOP_BROKER_URL=kafka://127.0.0.1:%s\n' "$KAFKA_PORT"
  printf 'export PLOP_MONGO_URL=mongodb://127.0.0.1:%s/plop\n' "$MONGO_PORT"
}

# --------------------------------------------------------------------- main

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || { usage; exit 2; }
  shift
  check_port PLOP_REDIS_PORT "$REDIS_PORT"
  check_port PLOP_KAFKA_PORT "$KAFKA_PORT"
  check_port PLOP_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
  check_port PLOP_MONGO_PORT "$MONGO_PORT"
  check_port PLOP_MONGO_DEBUG_PORT "$MONGO_DEBUG_PORT"
  check_port PLOP_POSTGRES_PORT "$POSTGRES_PORT"
  case $MONGO_BACKEND in
    postgresql | sqlite) ;;
    *) die "PLOP_FERRETDB_BACKEND=$MONGO_BACKEND: expected postgresql or sqlite" ;;
  esac
  local svcs=() svc
  for svc in "$@"; do
    case $svc in
      redis | kafka | mongo | ferretdb)
        [[ $svc == ferretdb ]] && svc=mongo
        [[ " ${svcs[*]} " == *" $svc "* ]] || svcs+=("$svc")
        ;;
      *)
        usage
        printf '%s\n' "services: error: unknown service '$svc' (expected redis, kafka or mongo)" >&2
        exit 2
        ;;
    esac
  done
  ((${#svcs[@]})) || svcs=("${ALL_SERVICES[@]}")
  case $cmd in
    install) cmd_install "${svcs[@]}" ;;
    start) cmd_start "${svcs[@]}" ;;
    stop) cmd_stop "${svcs[@]}" ;;
    restart) cmd_stop "${svcs[@]}" && cmd_start "${svcs[@]}" ;;
    status) cmd_status "${svcs[@]}" ;;
    env) cmd_env ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
