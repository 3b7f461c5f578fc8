# shellcheck shell=bash
# The mongo service: FerretDB 1.x (MongoDB wire protocol) on 127.0.0.1:PLOP_MONGO_PORT,
# built with `go build` from the pinned wrapper module scripts/ferretdb. Its
# data lives in the PostgreSQL cluster of postgres.sh, which this service
# starts first and stops last; PLOP_FERRETDB_BACKEND=sqlite puts it in SQLite
# files under <state>/mongo/data instead.
# Implements the service functions described in supervisor.sh. Sourced, never run.

MONGO_PORT=${PLOP_MONGO_PORT:-27017}
MONGO_DEBUG_PORT=${PLOP_MONGO_DEBUG_PORT:-28088}
MONGO_BACKEND=${PLOP_FERRETDB_BACKEND:-postgresql}

FERRETDB_INPUTS=$SCRIPTS_DIR/ferretdb
# The version comes from the file that pins it, so the two cannot drift apart.
FERRETDB_VERSION=$(awk '$1 == "github.com/FerretDB/FerretDB" { sub(/^v/, "", $2); print $2 }' \
  "$FERRETDB_INPUTS/go.mod")
FERRETDB_HOME=$CACHE_DIR/ferretdb-$FERRETDB_VERSION
FERRETDB_BIN=$FERRETDB_HOME/bin/ferretdb

define_service mongo ferretdb ferretdb 30 # name, files, command line, start-up timeout

mongo_check_config() {
  check_port PLOP_MONGO_PORT "$MONGO_PORT"
  check_port PLOP_MONGO_DEBUG_PORT "$MONGO_DEBUG_PORT"
  postgres_check_config
  case $MONGO_BACKEND in
    postgresql | sqlite) ;;
    *) die "PLOP_FERRETDB_BACKEND=$MONGO_BACKEND: expected postgresql or sqlite" ;;
  esac
}

mongo_ports() { printf '%s\n' "$MONGO_PORT" "$MONGO_DEBUG_PORT"; }

# The PostgreSQL port counts too (none with the SQLite backend, so a change of
# backend reads as a change of ports and `start` restarts FerretDB).
mongo_signature() {
  mongo_ports
  if [[ $MONGO_BACKEND == postgresql ]]; then
    printf '%s\n' "$POSTGRES_PORT"
  fi
}

mongo_env() { printf 'export PLOP_MONGO_URL=mongodb://127.0.0.1:%s/plop\n' "$MONGO_PORT"; }

# ------------------------------------------------------------------ install

ferretdb_fingerprint() {
  printf '%s %s' "$FERRETDB_VERSION" "$(fingerprint "$FERRETDB_INPUTS/go.mod" "$FERRETDB_INPUTS/go.sum")"
}

ferretdb_installed() {
  [[ -x $FERRETDB_BIN && -f $FERRETDB_HOME/.installed &&
    $(<"$FERRETDB_HOME/.installed") == "$(ferretdb_fingerprint)" ]]
}

mongo_installed() {
  ferretdb_installed && { [[ $MONGO_BACKEND == sqlite ]] || postgres_installed; }
}

mongo_install() {
  if [[ $MONGO_BACKEND == postgresql ]]; then
    postgres_install
  fi
  ferretdb_installed || with_install_lock "ferretdb-$FERRETDB_VERSION" ferretdb_build
}

# Builds into a scratch dir next to FERRETDB_HOME and moves it into place at
# the end, so an interrupted build leaves nothing half done.
ferretdb_build() {
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
  go -C "$FERRETDB_INPUTS" mod download github.com/FerretDB/FerretDB >&2 ||
    { rm -rf -- "$tmp"; die "mongo: go mod download failed"; }
  mod=$(go -C "$FERRETDB_INPUTS" list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
  src=$tmp/build/FerretDB
  cp -R -- "$mod" "$src"
  chmod -R u+w -- "$src"
  printf 'v%s\n' "$FERRETDB_VERSION" >"$src/build/version/version.txt"
  printf 'plop\n' >"$src/build/version/package.txt"
  cp -- "$FERRETDB_INPUTS/go.mod" "$tmp/build/go.mod"
  cp -- "$FERRETDB_INPUTS/go.sum" "$tmp/build/go.sum"
  go -C "$FERRETDB_INPUTS" mod edit -modfile="$tmp/build/go.mod" \
    -replace="github.com/FerretDB/FerretDB=$src"
  go -C "$FERRETDB_INPUTS" build -modfile="$tmp/build/go.mod" -trimpath -ldflags='-s -w' \
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

# ---------------------------------------------------------------------- run

mongo_launch() { # dir timeout
  local dir=$1 backend
  mkdir -p -- "$dir/state"
  if [[ $MONGO_BACKEND == postgresql ]]; then
    postgres_start "$2" || return 1
    # FerretDB 1.x holds one PostgreSQL connection while an update takes a second,
    # so its pool (50 by default) deadlocks for good once as many updates run at
    # once. The test run's many instances stay far below this larger pool (each
    # caps its own connections, PLOP_MONGO_MAX_CONNECTIONS).
    backend=(--handler=postgresql "--postgresql-url=postgres://postgres@127.0.0.1:$POSTGRES_PORT/ferretdb?pool_max_conns=400")
  else
    postgres_stop # left running by the PostgreSQL backend
    mkdir -p -- "$dir/data"
    backend=(--handler=sqlite "--sqlite-url=file:$dir/data/")
  fi
  spawn_service mongo "$FERRETDB_BIN" "${backend[@]}" \
    "--listen-addr=127.0.0.1:$MONGO_PORT" "--debug-addr=127.0.0.1:$MONGO_DEBUG_PORT" \
    "--state-dir=$dir/state" --telemetry=disable --log-level=warn
}

mongo_keep_running() { # pid: a FerretDB whose PostgreSQL is gone is restarted with it
  [[ $MONGO_BACKEND == postgresql ]] || return 0
  postgres_pid >/dev/null && return 0
  log "mongo: FerretDB (pid $1) runs without its PostgreSQL; restarting both"
  return 1
}

mongo_after_stop() { postgres_stop; }

mongo_ready() { ferretdb_live "$MONGO_DEBUG_PORT" && mongo_ping "$MONGO_PORT"; }

ferretdb_live() { # debug port
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$1/debug/livez" 2>/dev/null
}

# MongoDB OP_MSG {ping: 1, $db: "admin"}; the reply must contain ok: 1.0.
# shellcheck disable=SC2016 # $1, $h, $len and $body are for the inner bash
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

# ------------------------------------------------------------------- status

# The mongo line also tells about the PostgreSQL cluster under FerretDB:
#   mongo  running      port=27017 debug=28088 postgres=15432 pid=N postgres_pid=M
#   mongo  unresponsive port=27017 debug=28088 postgres=15432 pid=N (PostgreSQL not running)
#   mongo  stopped      port=27017 debug=28088 postgres=15432 (PostgreSQL still running, pid M)
mongo_status_fields() {
  printf ' debug=%s' "$MONGO_DEBUG_PORT"
  if [[ $MONGO_BACKEND == postgresql ]]; then
    printf ' postgres=%s' "$POSTGRES_PORT"
  else
    printf ' backend=sqlite'
  fi
}

mongo_status_note() { # running|stopped
  local pgpid
  pgpid=$(postgres_pid) || pgpid=
  if [[ $1 == running ]]; then
    [[ $MONGO_BACKEND == postgresql ]] || return 0
    if [[ -n $pgpid ]]; then printf ' postgres_pid=%s' "$pgpid"; else printf ' (PostgreSQL not running)'; fi
  elif [[ -n $pgpid ]]; then
    printf ' (PostgreSQL still running, pid %s)' "$pgpid"
  fi
  return 0
}
