# shellcheck shell=bash
# The redis service: Debian's redis-server package, run on 127.0.0.1:PLOP_REDIS_PORT
# with its append-only file in <state>/redis, so sessions survive a restart.
# Implements the service functions described in supervisor.sh. Sourced, never run.

REDIS_PORT=${PLOP_REDIS_PORT:-6379}

define_service redis redis redis-server 15 # name, files, command line, start-up timeout

redis_check_config() { check_port PLOP_REDIS_PORT "$REDIS_PORT"; }

redis_ports() { printf '%s\n' "$REDIS_PORT"; }

redis_env() { printf 'export PLOP_REDIS_URL=redis://127.0.0.1:%s/0\n' "$REDIS_PORT"; }

# ------------------------------------------------------------------ install

redis_installed() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }

redis_install() {
  redis_installed && return 0
  local had_service=0
  system_service_exists redis-server && had_service=1
  apt_install redis-server
  redis_installed || die "redis-server still missing after apt-get install"
  # The package starts a system redis on 6379 where an init system runs.
  if ((had_service == 0)); then
    if systemd_runs; then
      "${SUDO[@]}" systemctl disable --now redis-server.service >&2 || true
    elif [[ -x /etc/init.d/redis-server ]] && [[ -s /run/redis/redis-server.pid ]]; then
      "${SUDO[@]}" /etc/init.d/redis-server stop >&2 || true
    fi
  fi
}

# ---------------------------------------------------------------------- run

redis_launch() { # dir timeout
  local dir=$1
  # Persistence is the append-only file alone (appendonlydir/ in the state
  # dir), fsynced once a second: a restart keeps sessions and loses at most
  # the last second of writes on a crash. No RDB snapshots on top of it.
  spawn_service redis \
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --appendonly yes --appendfsync everysec --save '' --dir "$dir" --daemonize no
}

redis_ready() {
  [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}
