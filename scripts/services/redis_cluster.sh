# shellcheck shell=bash
# The redis-cluster service: a Redis Cluster of three masters, each with one replica,
# from Debian's redis-server package, on 127.0.0.1:PLOP_REDIS_CLUSTER_PORT and the five
# ports after it (their cluster bus on the port + 10000). Each node keeps its
# append-only file and its nodes.conf in <state>/redis-cluster/<port>/.
#
# Six processes, not one: this file has its own start, stop and status instead of the
# one-process life cycle of supervisor.sh, and is never part of "all services".
#   start   starts the nodes that are not running (a node killed by a test rejoins
#           with its nodes.conf, as a replica of the one promoted in its place);
#           creates the cluster once, when every node is new; waits until every
#           node says cluster_state:ok
#   stop    TERM (then KILL) every node; the data and the cluster's layout are kept
#   status  one line per node (role, pid); exit 0 only if all run and the cluster is ok
# Sourced by scripts/services.sh after lib.sh, never run.

REDIS_CLUSTER_FIRST_PORT=${PLOP_REDIS_CLUSTER_PORT:-7001}
REDIS_CLUSTER_NODES=6 # three masters, one replica each
# How long the other nodes wait for a silent master before its replica takes over.
# The default (15 s) suits a network that hiccups; on loopback 2 s is plenty, and a
# failover (and the tests of it) take a few seconds instead of half a minute.
REDIS_CLUSTER_NODE_TIMEOUT_MS=${PLOP_REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}
REDIS_CLUSTER_TIMEOUT=${PLOP_SERVICES_TIMEOUT:-30}

redis_cluster_check_config() {
  check_port PLOP_REDIS_CLUSTER_PORT "$REDIS_CLUSTER_FIRST_PORT"
  check_port PLOP_REDIS_CLUSTER_PORT "$((REDIS_CLUSTER_FIRST_PORT + 10000 + REDIS_CLUSTER_NODES - 1))"
}

redis_cluster_ports() {
  local i
  for ((i = 0; i < REDIS_CLUSTER_NODES; i++)); do
    printf '%s\n' "$((REDIS_CLUSTER_FIRST_PORT + i))"
  done
}

redis_cluster_env() {
  local nodes=() port
  for port in $(redis_cluster_ports); do nodes+=("127.0.0.1:$port"); done
  printf 'export PLOP_REDIS_URL=redis+cluster://%s\n' "$(
    IFS=,
    printf '%s' "${nodes[*]}"
  )"
}

redis_cluster_cli() { # port args...
  local port=$1
  shift
  timeout 3 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

redis_cluster_node_pid() { # port: the pid of the node on that port, if it runs
  local pidfile pid
  pidfile="$(state_dir redis-cluster)/$1/redis.pid"
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  pid_runs "$pid" "redis-server" || return 1
  printf '%s' "$pid"
}

redis_cluster_info() { # port field: one field of CLUSTER INFO
  redis_cluster_cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"
}

redis_cluster_node_start() { # port
  local port=$1 dir
  dir="$(state_dir redis-cluster)/$port"
  mkdir -p -- "$dir"
  if redis_cluster_node_pid "$port" >/dev/null; then
    return 0
  fi
  if tcp_open "$port"; then
    error "redis-cluster: port 127.0.0.1:$port is held by another process ($(port_holder "$port")); stop it or choose another PLOP_REDIS_CLUSTER_PORT"
    return 1
  fi
  # Not full coverage: while a dead master's replica is being promoted, the other
  # masters go on serving their slots instead of the whole cluster refusing.
  spawn "$dir/redis.pid" "$dir/redis.log" \
    redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
    --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT_MS" \
    --cluster-require-full-coverage no \
    --appendonly yes --appendfsync everysec --save '' --dir "$dir" --daemonize no
}

redis_cluster_wait() { # what deadline test...: until the test passes
  local what=$1 deadline=$2
  shift 2
  until "$@"; do
    if ((SECONDS >= deadline)); then
      error "redis-cluster: $what after ${REDIS_CLUSTER_TIMEOUT} s; see $(state_dir redis-cluster)/*/redis.log"
      return 1
    fi
    sleep 0.2
  done
}

redis_cluster_all_answer() {
  local port
  for port in $(redis_cluster_ports); do
    [[ $(redis_cluster_cli "$port" ping) == PONG ]] || return 1
  done
}

redis_cluster_all_ok() {
  local port
  for port in $(redis_cluster_ports); do
    [[ $(redis_cluster_info "$port" cluster_state) == ok ]] || return 1
  done
}

redis_cluster_is_new() { # every node knows only itself: the cluster was never created
  local port
  for port in $(redis_cluster_ports); do
    [[ $(redis_cluster_info "$port" cluster_known_nodes) == 1 ]] || return 1
  done
}

redis_cluster_start() {
  local dir port t0 deadline nodes=()
  redis_installed || redis_install
  t0=$(now)
  deadline=$((SECONDS + REDIS_CLUSTER_TIMEOUT))
  dir=$(state_dir redis-cluster)
  lock_service "$dir"
  for port in $(redis_cluster_ports); do
    redis_cluster_node_start "$port" || return 1
    nodes+=("127.0.0.1:$port")
  done
  redis_cluster_wait "nodes not answering" "$deadline" redis_cluster_all_answer || return 1
  if redis_cluster_is_new; then
    log "redis-cluster: creating the cluster (3 masters, 1 replica each)"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
      error "redis-cluster: create failed; $dir/create.log:"
      tail -n 40 -- "$dir/create.log" >&2
      return 1
    }
  fi
  redis_cluster_wait "not ok" "$deadline" redis_cluster_all_ok || return 1
  log "redis-cluster: ready on 127.0.0.1:${nodes[0]##*:}-${nodes[-1]##*:} in $(elapsed "$t0") s"
  unlock_service
}

redis_cluster_stop() {
  local dir port pid
  dir=$(state_dir redis-cluster)
  lock_service "$dir"
  for port in $(redis_cluster_ports); do
    if pid=$(redis_cluster_node_pid "$port"); then
      stop_pid "redis-cluster node $port" "$pid"
    fi
    rm -f -- "$dir/$port/redis.pid"
  done
  log "redis-cluster: stopped"
  unlock_service
}

redis_cluster_status() {
  local port pid role rc=0 state
  for port in $(redis_cluster_ports); do
    if pid=$(redis_cluster_node_pid "$port"); then
      role=$(redis_cluster_cli "$port" role | head -n 1)
      printf '%-13s running      port=%s role=%s pid=%s\n' redis-cluster "$port" "${role:-unresponsive}" "$pid"
      [[ -n $role ]] || rc=1
    else
      printf '%-13s stopped      port=%s\n' redis-cluster "$port"
      rc=1
    fi
  done
  state=
  for port in $(redis_cluster_ports); do # the first node that answers
    state=$(redis_cluster_info "$port" cluster_state || true)
    [[ -z $state ]] || break
  done
  printf '%-13s cluster_state=%s\n' redis-cluster "${state:-unknown}"
  [[ $state == ok ]] || rc=1
  return "$rc"
}

redis_cluster_command() { # cmd: the commands services.sh takes, for the cluster alone
  case $1 in
    install) install_one redis ;;
    start) redis_cluster_start ;;
    stop) redis_cluster_stop ;;
    restart) redis_cluster_stop && redis_cluster_start ;;
    status) redis_cluster_status ;;
    env) redis_cluster_env ;;
    *) usage; exit 2 ;;
  esac
}
