# shellcheck shell=bash
# The storage service: Versity S3 Gateway (versitygw, Apache-2.0, pure Go), an
# S3-compatible server over a plain directory, on 127.0.0.1:PLOP_STORAGE_PORT.
# Built with `go install` at the version pinned below into the per-user cache, as
# FerretDB is; its objects live in <state>/storage/data, their metadata (content
# type, ...) in a sidecar directory beside it, so the file system needs no xattrs.
# Implements the service functions described in supervisor.sh. Sourced, never run.

STORAGE_PORT=${PLOP_STORAGE_PORT:-7070}
# Root credentials of this loopback-only server; the tests and `env` hand them to Plop
# in PLOP_STORAGE_URL. Overridable for a server that outlives a single machine.
STORAGE_ACCESS_KEY=${PLOP_STORAGE_ACCESS_KEY:-plop-storage}
STORAGE_SECRET_KEY=${PLOP_STORAGE_SECRET_KEY:-plop-storage-secret}
STORAGE_BUCKET=${PLOP_STORAGE_BUCKET:-plop}

VERSITYGW_VERSION=1.8.0
VERSITYGW_HOME=$CACHE_DIR/versitygw-$VERSITYGW_VERSION
VERSITYGW_BIN=$VERSITYGW_HOME/bin/versitygw

define_service storage versitygw versitygw 30 # name, files, command line, start-up timeout

storage_check_config() {
  check_port PLOP_STORAGE_PORT "$STORAGE_PORT"
  [[ $STORAGE_BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
    die "PLOP_STORAGE_BUCKET=$STORAGE_BUCKET is not an S3 bucket name"
  [[ $STORAGE_ACCESS_KEY =~ ^[A-Za-z0-9._-]+$ && $STORAGE_SECRET_KEY =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "PLOP_STORAGE_ACCESS_KEY and PLOP_STORAGE_SECRET_KEY may hold letters, digits, '.', '_' and '-'"
}

storage_ports() { printf '%s\n' "$STORAGE_PORT"; }

# Plop creates the bucket at start-up when it is missing.
storage_env() {
  printf 'export PLOP_STORAGE_URL=s3://%s:%s@127.0.0.1:%s/%s\n' \
    "$STORAGE_ACCESS_KEY" "$STORAGE_SECRET_KEY" "$STORAGE_PORT" "$STORAGE_BUCKET"
}

# ------------------------------------------------------------------ install

storage_installed() {
  [[ -x $VERSITYGW_BIN && -f $VERSITYGW_HOME/.installed &&
    $(<"$VERSITYGW_HOME/.installed") == "$VERSITYGW_VERSION" ]]
}

storage_install() {
  storage_installed || with_install_lock "versitygw-$VERSITYGW_VERSION" versitygw_build
}

# Builds into a scratch dir next to VERSITYGW_HOME and moves it into place at the
# end, so an interrupted build leaves nothing half done.
versitygw_build() {
  storage_installed && return 0
  local t0 tmp
  t0=$(now)
  command -v go >/dev/null || die "storage: versitygw is built from source and needs Go >= 1.24 (go not found)"
  log "storage: building versitygw v$VERSITYGW_VERSION (CGO_ENABLED=0)"
  tmp=$VERSITYGW_HOME.tmp.$$
  rm -rf -- "$tmp"
  mkdir -p -- "$tmp/bin"
  GOWORK=off CGO_ENABLED=0 GOBIN=$tmp/bin \
    go install "github.com/versity/versitygw/cmd/versitygw@v$VERSITYGW_VERSION" >&2 ||
    { rm -rf -- "$tmp"; die "storage: go install of versitygw failed"; }
  "$tmp/bin/versitygw" --version >/dev/null 2>&1 ||
    { rm -rf -- "$tmp"; die "storage: the built versitygw does not run"; }
  printf '%s' "$VERSITYGW_VERSION" >"$tmp/.installed"
  rm -rf -- "$VERSITYGW_HOME"
  mv -- "$tmp" "$VERSITYGW_HOME"
  log "storage: installed $VERSITYGW_BIN in $(elapsed "$t0") s"
}

# ---------------------------------------------------------------------- run

storage_launch() { # dir timeout
  local dir=$1
  mkdir -p -- "$dir/data" "$dir/meta"
  # The root keys come in the environment, never on the command line (ps shows it).
  ROOT_ACCESS_KEY=$STORAGE_ACCESS_KEY ROOT_SECRET_KEY=$STORAGE_SECRET_KEY \
    spawn_service storage "$VERSITYGW_BIN" --port "127.0.0.1:$STORAGE_PORT" \
    posix --sidecar "$dir/meta" "$dir/data"
}

# Any HTTP answer proves the gateway serves S3 (an unsigned request gets 403).
storage_ready() {
  local code
  code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$STORAGE_PORT/" 2>/dev/null) || return 1
  [[ $code =~ ^[2-4][0-9][0-9]$ ]]
}
