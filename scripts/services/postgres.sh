# shellcheck shell=bash
# The PostgreSQL cluster under FerretDB (part of the mongo service, see
# mongo.sh): Debian's postgresql package, one throwaway cluster of our own in
# the mongo state dir, on 127.0.0.1:PLOP_POSTGRES_PORT, never the system one.
# Install, initdb, start, stop and pid lookup. Sourced, never run.
#
# Layout in the mongo state dir:
#   pg/           data directory (owned by the cluster owner, mode 0700)
#   pg-run/       its unix socket directory
#   postgres.log  server log (the previous start's: postgres.log.1)
# Every client talks to it over TCP on 127.0.0.1:PLOP_POSTGRES_PORT.

POSTGRES_PORT=${PLOP_POSTGRES_PORT:-15432}

postgres_check_config() { check_port PLOP_POSTGRES_PORT "$POSTGRES_PORT"; }

# ------------------------------------------------------------------ install

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

postgres_install() { postgres_installed || with_install_lock postgresql postgres_apt_install; }

postgres_apt_install() {
  postgres_installed && return 0
  local t0 had_service=0 ver cluster port status rest
  t0=$(now)
  system_service_exists postgresql && had_service=1
  apt_install postgresql
  postgres_installed || die "mongo: PostgreSQL server binaries still missing after apt-get install"
  # The package creates a "main" cluster on 5432 and starts it where an init
  # system runs.
  if ((had_service == 0)); then
    if systemd_runs; then
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

# ---------------------------------------------------------------- the cluster

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
  local pid
  pg_paths
  pid=$(postmaster_field 1)
  pid_runs "$pid" postgres || return 1
  printf '%s' "$pid"
}

pg_ready() { # our cluster accepts connections on POSTGRES_PORT
  postgres_installed &&
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -t 2 \
      </dev/null >/dev/null 2>&1
}

pg_fail() { # what: report a failure with the end of the PostgreSQL log
  error "mongo: PostgreSQL $1; last lines of $PG_LOG:"
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
    error "mongo: $PG_DATA exists but is not a PostgreSQL data directory (no PG_VERSION); remove it"
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
    # FerretDB's pool (pool_max_conns in scripts/services/mongo.sh) and room to spare.
    printf 'max_connections = 450\n'
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
  cmdline=$(pid_cmdline "$pid") || return 0
  if [[ $cmdline != *postgres* ]]; then
    log "mongo: removing stale $PG_DATA/postmaster.pid (pid $pid is now: ${cmdline:0:60})"
    rm -f -- "$PG_DATA/postmaster.pid"
  fi
}

postgres_start() { # timeout: start our cluster unless it already runs on POSTGRES_PORT
  local timeout=$1 pid t0 deadline
  pg_paths
  postgres_installed || { error "mongo: PostgreSQL is not installed"; return 1; }
  if pid=$(postgres_pid); then
    if [[ $(postmaster_field 4) == "$POSTGRES_PORT" ]] && pg_ready; then
      pg_ensure_database
      return
    fi
    log "mongo: PostgreSQL (pid $pid, port $(postmaster_field 4)) is not serving port $POSTGRES_PORT; restarting it"
    postgres_stop || return 1
  fi
  if tcp_open "$POSTGRES_PORT"; then
    error "mongo: port 127.0.0.1:$POSTGRES_PORT is held by another process ($(port_holder "$POSTGRES_PORT")); stop it or choose another PLOP_POSTGRES_PORT"
    return 1
  fi
  t0=$(now)
  pg_grant_traverse "$(dirname -- "$PG_DATA")" ||
    { error "mongo: the postgres user cannot reach $(dirname -- "$PG_DATA"); set PLOP_SERVICES_DIR elsewhere"; return 1; }
  [[ -f $PG_LOG ]] && mv -f -- "$PG_LOG" "$PG_LOG.1"
  : >"$PG_LOG"
  mkdir -p -- "$PG_RUN"
  if ((EUID == 0)); then chown postgres: -- "$PG_LOG" "$PG_RUN" || return 1; fi
  if [[ ! -s $PG_DATA/PG_VERSION ]]; then
    pg_init || return 1
  fi
  pg_write_conf || { error "mongo: cannot write $PG_DATA/plop.conf"; return 1; }
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

postgres_stop() { # stop our cluster if it runs (fast shutdown: clients are cut off)
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
