# shellcheck shell=bash
# The kafka-cluster service: three Kafka brokers in KRaft mode on loopback, each
# broker and controller in one JVM, the three controllers one quorum. Node N (1-3)
# takes clients on PLOP_KAFKA_CLUSTER_PORT + 2(N-1) and its controller listener on the
# port after it: 9092/9093, 9094/9095, 9096/9097 by default. The jars are the kafka
# service's (kafka.sh installs them); the configuration is
# scripts/kafka/cluster-node.properties.in. Each node keeps its log dir, pid file and
# log in <state>/kafka-cluster/<client port>/, so clusters on other ports (the test
# suite's beside a user's) never share data.
#
# Three processes, not one: this file has its own start, stop and status instead of the
# one-process life cycle of supervisor.sh, and is never part of "all services".
#   start   starts the nodes that are not running (a node killed by a test rejoins with
#           its log dir) and waits until each answers clients as a registered broker
#   stop    TERM (then KILL) every node; the data is kept
#   status  one line per node; exit 0 only if all three run and answer
# Sourced by scripts/services.sh after lib.sh and kafka.sh, never run.

KAFKA_CLUSTER_FIRST_PORT=${PLOP_KAFKA_CLUSTER_PORT:-9092}
KAFKA_CLUSTER_NODES=3
# Three JVMs on one small machine: a small heap each (about 300 MB resident), and only
# the quick first JIT tier, which spares most of the CPU a JVM spends starting.
KAFKA_CLUSTER_HEAP=(-Xms64m -Xmx256m)
# A first start formats three log dirs and starts three JVMs side by side.
KAFKA_CLUSTER_TIMEOUT=${PLOP_SERVICES_TIMEOUT:-180}

kafka_cluster_check_config() {
  check_port PLOP_KAFKA_CLUSTER_PORT "$KAFKA_CLUSTER_FIRST_PORT"
  check_port PLOP_KAFKA_CLUSTER_PORT "$((KAFKA_CLUSTER_FIRST_PORT + 2 * KAFKA_CLUSTER_NODES - 1))"
}

kafka_cluster_port() { printf '%s' "$((KAFKA_CLUSTER_FIRST_PORT + 2 * ($1 - 1)))"; } # node

kafka_cluster_controller_port() { printf '%s' "$(($(kafka_cluster_port "$1") + 1))"; } # node

kafka_cluster_voters() { # 1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097
  local node voters=()
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    voters+=("$node@127.0.0.1:$(kafka_cluster_controller_port "$node")")
  done
  (
    IFS=,
    printf '%s' "${voters[*]}"
  )
}

kafka_cluster_env() {
  local node hosts=()
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    hosts+=("127.0.0.1:$(kafka_cluster_port "$node")")
  done
  printf 'export PLOP_BROKER_URL=kafka://%s\n' "$(
    IFS=,
    printf '%s' "${hosts[*]}"
  )"
}

kafka_cluster_node_dir() { printf '%s/%s' "$(state_dir kafka-cluster)" "$(kafka_cluster_port "$1")"; }

kafka_cluster_node_pid() { # node: the pid of the node, if it runs
  local pidfile pid
  pidfile="$(kafka_cluster_node_dir "$1")/kafka.pid"
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  pid_runs "$pid" kafka.Kafka || return 1
  printf '%s' "$pid"
}

kafka_cluster_java() { # -> KAFKA_CLUSTER_JAVA array
  KAFKA_CLUSTER_JAVA=(java "${KAFKA_CLUSTER_HEAP[@]}" -XX:+UseSerialGC -XX:TieredStopAtLevel=1
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_INPUTS/log4j2.properties"
    -cp "$KAFKA_HOME/libs/*")
}

# The cluster's id, made once and shared by the three log dirs (a node formatted with
# another id would be refused by the quorum): 16 random bytes in URL-safe base64, as
# Kafka's own `StorageTool random-uuid` makes them (never starting with "-"), without
# starting a JVM for it.
kafka_cluster_id() {
  local file id
  file="$(state_dir kafka-cluster)/$KAFKA_CLUSTER_FIRST_PORT.cluster.id"
  if [[ ! -s $file ]]; then
    id=-
    while [[ $id == -* ]]; do
      id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    printf '%s\n' "$id" >"$file.tmp"
    mv -- "$file.tmp" "$file"
  fi
  printf '%s' "$(<"$file")"
}

kafka_cluster_node_check() { # node: true if it may be started (not running, ports free)
  local node=$1 each
  kafka_cluster_node_pid "$node" >/dev/null && return 1
  for each in "$(kafka_cluster_port "$node")" "$(kafka_cluster_controller_port "$node")"; do
    if tcp_open "$each"; then
      error "kafka-cluster: port 127.0.0.1:$each is held by another process ($(port_holder "$each")); stop it or choose another PLOP_KAFKA_CLUSTER_PORT"
      exit 1
    fi
  done
}

kafka_cluster_node_prepare() { # node cluster-id: its configuration, and its log dir formatted
  local node=$1 cid=$2 dir data
  dir=$(kafka_cluster_node_dir "$node")
  data=$dir/data
  mkdir -p -- "$dir"
  [[ -f $dir/kafka.log ]] && mv -f -- "$dir/kafka.log" "$dir/kafka.log.1"
  : >"$dir/kafka.log"
  sed -e "s|@NODE_ID@|$node|g" -e "s|@VOTERS@|$(kafka_cluster_voters)|g" \
    -e "s|@PORT@|$(kafka_cluster_port "$node")|g" \
    -e "s|@CONTROLLER_PORT@|$(kafka_cluster_controller_port "$node")|g" \
    -e "s|@DATA_DIR@|$data|g" "$KAFKA_INPUTS/cluster-node.properties.in" >"$dir/server.properties"
  kafka_cluster_java
  # Formatted once and kept across restarts; the voters are named in the
  # configuration (a static quorum), so the format takes no controller flag.
  if [[ ! -f $data/meta.properties ]]; then
    "${KAFKA_CLUSTER_JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted \
      -t "$cid" -c "$dir/server.properties" >>"$dir/kafka.log" 2>&1 ||
      { tail -n 40 -- "$dir/kafka.log" >&2; error "kafka-cluster: formatting $data failed"; return 1; }
  fi
}

kafka_cluster_node_spawn() { # node
  local dir
  dir=$(kafka_cluster_node_dir "$1")
  kafka_cluster_java
  spawn "$dir/kafka.pid" "$dir/kafka.log" "${KAFKA_CLUSTER_JAVA[@]}" kafka.Kafka "$dir/server.properties"
}

# A KRaft broker logs "Kafka Server started" once it has caught up with the cluster's
# metadata and the controller has unfenced it: from then on it leads and follows.
kafka_cluster_node_ready() { # node
  grep -q 'Kafka Server started' "$(kafka_cluster_node_dir "$1")/kafka.log" 2>/dev/null &&
    kafka_ping "$(kafka_cluster_port "$1")"
}

kafka_cluster_all_ready() {
  local node
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    if ! kafka_cluster_node_pid "$node" >/dev/null; then
      error "kafka-cluster: node $node exited during start-up; last lines of $(kafka_cluster_node_dir "$node")/kafka.log:"
      tail -n 40 -- "$(kafka_cluster_node_dir "$node")/kafka.log" >&2 || true
      return 2
    fi
    kafka_cluster_node_ready "$node" || return 1
  done
}

kafka_cluster_start() {
  local dir node t0 deadline rc cid pid missing=() preparing=()
  kafka_installed || kafka_install
  t0=$(now)
  deadline=$((SECONDS + KAFKA_CLUSTER_TIMEOUT))
  dir=$(state_dir kafka-cluster)
  lock_service "$dir"
  cid=$(kafka_cluster_id)
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    kafka_cluster_node_check "$node" && missing+=("$node")
  done
  # Each format is a JVM of its own: the missing nodes are prepared side by side.
  for node in "${missing[@]}"; do
    kafka_cluster_node_prepare "$node" "$cid" &
    preparing+=($!)
  done
  for pid in "${preparing[@]}"; do
    wait "$pid" || return 1
  done
  for node in "${missing[@]}"; do
    kafka_cluster_node_spawn "$node"
  done
  while true; do
    rc=0
    kafka_cluster_all_ready || rc=$?
    ((rc == 0)) && break
    ((rc == 2)) && return 1
    if ((SECONDS >= deadline)); then
      error "kafka-cluster: not ready after ${KAFKA_CLUSTER_TIMEOUT} s; see $dir/*/kafka.log"
      return 1
    fi
    sleep 0.25
  done
  log "kafka-cluster: ready on 127.0.0.1:$(kafka_cluster_port 1),$(kafka_cluster_port 2),$(kafka_cluster_port 3) in $(elapsed "$t0") s"
  unlock_service
}

# The three stop side by side: a node's controlled shutdown asks the quorum to move its
# partitions away, and one node stopped after the other two would wait for a quorum
# that is gone until stop_pid's KILL.
kafka_cluster_stop() {
  local dir node pid stopping=()
  dir=$(state_dir kafka-cluster)
  lock_service "$dir"
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    if pid=$(kafka_cluster_node_pid "$node"); then
      stop_pid "kafka-cluster node $node" "$pid" &
      stopping+=($!)
    fi
  done
  for pid in "${stopping[@]}"; do
    wait "$pid" || true
  done
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    rm -f -- "$(kafka_cluster_node_dir "$node")/kafka.pid"
  done
  log "kafka-cluster: stopped"
  unlock_service
}

kafka_cluster_status() {
  local node pid port controller rc=0
  for ((node = 1; node <= KAFKA_CLUSTER_NODES; node++)); do
    port=$(kafka_cluster_port "$node")
    controller=$(kafka_cluster_controller_port "$node")
    if pid=$(kafka_cluster_node_pid "$node"); then
      if kafka_ping "$port"; then
        printf '%-13s running      node=%s port=%s controller=%s pid=%s\n' kafka-cluster "$node" "$port" "$controller" "$pid"
      else
        printf '%-13s unresponsive node=%s port=%s controller=%s pid=%s\n' kafka-cluster "$node" "$port" "$controller" "$pid"
        rc=1
      fi
    else
      printf '%-13s stopped      node=%s port=%s controller=%s\n' kafka-cluster "$node" "$port" "$controller"
      rc=1
    fi
  done
  return "$rc"
}

kafka_cluster_command() { # cmd: the commands services.sh takes, for the cluster alone
  case $1 in
    install) install_one kafka ;;
    start) kafka_cluster_start ;;
    stop) kafka_cluster_stop ;;
    restart) kafka_cluster_stop && kafka_cluster_start ;;
    status) kafka_cluster_status ;;
    env) kafka_cluster_env ;;
    *) usage; exit 2 ;;
  esac
}
