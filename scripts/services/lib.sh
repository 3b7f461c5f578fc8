# shellcheck shell=bash
# Helpers shared by scripts/services.sh and the service files next to this one:
# paths, logging and timing, configuration checks, state directories, locks,
# process spawning and stopping, TCP probes and apt installs. Nothing here
# knows about a particular service. Sourced, never run.

SERVICES_LIB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
SCRIPTS_DIR=$(dirname -- "$SERVICES_LIB_DIR")
REPO_DIR=$(dirname -- "$SCRIPTS_DIR")

if [[ -z ${HOME:-} ]]; then
  HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
  export HOME
fi
# Installed jars and binaries, per user and shared by every clone.
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/plop
# Run state (data, logs, pid files), one directory per service.
STATE_ROOT=${PLOP_SERVICES_DIR:-$REPO_DIR/.services}

# File descriptors used for locks; closed in every spawned daemon.
INSTALL_LOCK_FD=8
SERVICE_LOCK_FD=9

# ------------------------------------------------------------ logging, time

log() { printf '%s\n' "services: $*" >&2; }
error() { printf '%s\n' "services: error: $*" >&2; }
die() { error "$@"; exit 1; }

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

check_port() { # name value
  if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < 1 || 10#$2 > 65535)); then
    die "$1=$2 is not a TCP port"
  fi
}

# ------------------------------------------------------------- state, locks

state_dir() { # svc -> absolute run-state directory of the service
  local root=$STATE_ROOT
  mkdir -p -- "$root/$1"
  root=$(cd -- "$root" && pwd -P)
  printf '%s/%s' "$root" "$1"
}

lock_service() { # dir: hold the service's lock until unlock_service (or exit)
  eval "exec $SERVICE_LOCK_FD>\"\$1/.lock\""
  flock "$SERVICE_LOCK_FD"
}

unlock_service() { eval "exec $SERVICE_LOCK_FD>&-"; }

with_install_lock() { # name cmd...: run cmd holding a per-install lock
  local name=$1
  shift
  mkdir -p -- "$CACHE_DIR"
  eval "exec $INSTALL_LOCK_FD>\"\$CACHE_DIR/.\$name.lock\""
  flock "$INSTALL_LOCK_FD"
  "$@"
  eval "exec $INSTALL_LOCK_FD>&-"
}

# ---------------------------------------------------------------- processes

pid_alive() { # pid: true if it runs (a zombie waiting to be reaped does not count)
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != [ZX] ]]
}

pid_cmdline() { # pid: its command line, arguments joined by spaces
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null
}

# True if pid is alive and runs a command line containing pattern: a recorded
# pid can outlive a reboot and be reused by some other program.
pid_runs() { # pid pattern
  local cmdline
  pid_alive "$1" || return 1
  cmdline=$(pid_cmdline "$1") || return 1
  [[ $cmdline == *"$2"* ]]
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

stop_pid() { # name pid: TERM, up to 30 s, then KILL
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

# --------------------------------------------------------------- TCP probes

# The probes of this file and of the service files run in a child bash (under
# `timeout`); their single-quoted scripts expand $1 there, on purpose.
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

# A Debian package that ships a daemon starts it where an init system runs.
# Plop runs its own instances (own ports, state dirs), so the install steps
# stop a system daemon that they themselves brought in, and only that one.
system_service_exists() { # name: an init script or systemd unit of that name is installed
  [[ -e /etc/init.d/$1 || -e /lib/systemd/system/$1.service ]]
}

systemd_runs() { [[ -d /run/systemd/system ]]; }

fingerprint() { # files...: short hash of their contents
  cat -- "$@" | sha256sum | cut -c1-16
}
