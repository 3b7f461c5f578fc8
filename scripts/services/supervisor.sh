# shellcheck shell=bash
# The life cycle every service shares: install if missing, start under the
# service's lock and wait until it answers, stop, and the one-line status.
# What differs between services comes from the functions and table entries
# each service file defines (redis.sh, kafka.sh, mongo.sh), for service S:
#
#   define_service S PROGRAM COMMAND TIMEOUT
#                        PROGRAM: base name of its files, <state>/S/PROGRAM.{pid,log,ports};
#                        COMMAND: a word its command line contains (to trust a pid file);
#                        TIMEOUT: seconds `start` waits for it unless PLOP_SERVICES_TIMEOUT
#   S_check_config       validate its PLOP_* settings (die on a bad one)
#   S_installed          true if nothing needs installing
#   S_install            install what is missing
#   S_ports              every port it listens on, the client port first
#   S_launch DIR TIMEOUT spawn it (with spawn_service) in its state dir
#   S_ready              true once it answers a real client request
#   S_env                the export line of its PLOP_*_URL
#
# and, where the service needs them:
#
#   S_signature          what a running instance must have been started with
#                        to be reused (default: S_ports)
#   S_keep_running PID   false if a running instance must be restarted anyway
#   S_after_stop         clean-up after the stop (e.g. a backing process)
#   S_status_fields      extra " key=value" fields of its status line
#   S_status_note STATE  a note after the status line, STATE running or stopped
#
# Sourced by scripts/services.sh after lib.sh, never run.

declare -A SERVICE_PROGRAM=() SERVICE_COMMAND=() SERVICE_TIMEOUT=()

define_service() { # svc program command timeout
  SERVICE_PROGRAM[$1]=$2
  SERVICE_COMMAND[$1]=$3
  SERVICE_TIMEOUT[$1]=$4
}

has_hook() { declare -F "$1_$2" >/dev/null; } # svc hook

hook() { # svc hook args...: run S_hook if the service defines it
  local svc=$1 name=$2
  shift 2
  if has_hook "$svc" "$name"; then "${svc}_$name" "$@"; fi
}

service_file() { # svc ext: <state>/<svc>/<program>.<ext>, e.g. mongo pid -> .../mongo/ferretdb.pid
  printf '%s/%s.%s' "$(state_dir "$1")" "${SERVICE_PROGRAM[$1]}" "$2"
}

service_port() { # svc: the port clients connect to
  local ports
  ports=$("$1_ports")
  printf '%s' "${ports%%$'\n'*}"
}

# Prints the pid recorded for svc if that process is alive and is really the
# service (pid files can outlive a reboot and their pid be reused).
service_pid() { # svc
  local pidfile pid
  pidfile=$(service_file "$1" pid)
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  pid_runs "$pid" "${SERVICE_COMMAND[$1]}" || return 1
  printf '%s' "$pid"
}

spawn_service() { # svc cmd...: start cmd detached as the service, pid and log in its files
  local svc=$1
  shift
  spawn "$(service_file "$svc" pid)" "$(service_file "$svc" log)" "$@"
}

service_signature() { # svc
  if has_hook "$1" signature; then "$1_signature"; else "$1_ports"; fi
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

# ------------------------------------------------------------------ install

install_one() { # svc
  if "$1_installed"; then
    log "$1: already installed"
  else
    "$1_install"
  fi
}

# -------------------------------------------------------------------- start

wait_ready() { # svc pid timeout t0
  local svc=$1 pid=$2 timeout=$3 t0=$4 deadline logf
  logf=$(service_file "$svc" log)
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if "${svc}_ready"; then
      log "$svc: ready on 127.0.0.1:$(service_port "$svc") (pid $pid) in $(elapsed "$t0") s"
      return 0
    fi
    if ! pid_alive "$pid"; then
      error "$svc exited during start-up; last lines of $logf:"
      tail -n 60 -- "$logf" >&2 || true
      return 1
    fi
    sleep 0.25
  done
  error "$svc not ready after ${timeout} s; last lines of $logf:"
  tail -n 60 -- "$logf" >&2 || true
  stop_pid "$svc" "$pid"
  return 1
}

start_one() { # svc: start it unless it runs (on the configured ports) and answers
  local svc=$1 dir pid port timeout t0 logf
  dir=$(state_dir "$svc")
  logf=$(service_file "$svc" log)
  timeout=${PLOP_SERVICES_TIMEOUT:-${SERVICE_TIMEOUT[$svc]}}
  lock_service "$dir"
  if pid=$(service_pid "$svc") && ! ports_match "$svc"; then
    log "$svc: running (pid $pid) on other ports ($(recorded_ports "$svc")); restarting it"
    stop_pid "$svc" "$pid"
  fi
  if pid=$(service_pid "$svc") && ! hook "$svc" keep_running "$pid"; then
    stop_pid "$svc" "$pid"
  fi
  if pid=$(service_pid "$svc"); then
    if "${svc}_ready"; then
      log "$svc: already running on 127.0.0.1:$(service_port "$svc") (pid $pid)"
    else
      log "$svc: pid $pid is running but not answering yet; waiting"
      wait_ready "$svc" "$pid" "$timeout" "$(now)" || return 1
    fi
    unlock_service
    return 0
  fi
  for port in $("${svc}_ports"); do
    if tcp_open "$port"; then
      error "$svc: port 127.0.0.1:$port is held by another process ($(port_holder "$port")); stop it or choose other PLOP_*_PORT values"
      return 1
    fi
  done
  t0=$(now)
  [[ -f $logf ]] && mv -f -- "$logf" "$logf.1"
  : >"$logf"
  service_signature "$svc" >"$(service_file "$svc" ports)"
  "${svc}_launch" "$dir" "$timeout" || return 1
  pid=$(<"$(service_file "$svc" pid)")
  wait_ready "$svc" "$pid" "$timeout" "$t0" || return 1
  unlock_service
}

# --------------------------------------------------------------------- stop

stop_one() { # svc: TERM (then KILL) the running instance; its data stays
  local svc=$1 dir pid t0
  dir=$(state_dir "$svc")
  lock_service "$dir"
  if pid=$(service_pid "$svc"); then
    t0=$(now)
    stop_pid "$svc" "$pid"
    log "$svc: stopped (pid $pid) in $(elapsed "$t0") s"
  else
    log "$svc: not running"
  fi
  rm -f -- "$dir"/*.pid
  hook "$svc" after_stop
  unlock_service
}

# ------------------------------------------------------------------- status

status_one() { # svc: print its status line; true only if it runs and answers
  local svc=$1 pid port extra note
  port=$(service_port "$svc")
  extra=$(hook "$svc" status_fields)
  if pid=$(service_pid "$svc"); then
    note=$(hook "$svc" status_note running)
    if ! ports_match "$svc"; then
      printf '%-6s other-ports  port=%s%s pid=%s%s (started on ports %s)\n' "$svc" "$port" "$extra" "$pid" \
        "$note" "$(recorded_ports "$svc")"
      return 1
    elif "${svc}_ready"; then
      printf '%-6s running      port=%s%s pid=%s%s\n' "$svc" "$port" "$extra" "$pid" "$note"
    else
      printf '%-6s unresponsive port=%s%s pid=%s%s\n' "$svc" "$port" "$extra" "$pid" "$note"
      return 1
    fi
  else
    note=$(hook "$svc" status_note stopped)
    if tcp_open "$port"; then
      printf '%-6s stopped      port=%s%s (port held by %s)%s\n' "$svc" "$port" "$extra" "$(port_holder "$port")" "$note"
    else
      printf '%-6s stopped      port=%s%s%s\n' "$svc" "$port" "$extra" "$note"
    fi
    return 1
  fi
}
