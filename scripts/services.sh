#!/usr/bin/env bash
# Install, start, stop and inspect the services Plop needs, on loopback only:
#   redis  Redis from Debian's redis-server package
#   kafka  Apache Kafka (KRaft, broker + controller in one JVM), jars from Maven Central
#   mongo  FerretDB 1.x, built from scripts/ferretdb, on its own PostgreSQL
#          cluster (Debian's postgresql package); PLOP_FERRETDB_BACKEND=sqlite
#          selects FerretDB's SQLite backend instead
#   storage  Versity S3 Gateway (versitygw), built with `go install`, over a directory
#   redis-cluster  a Redis Cluster of three masters with a replica each (only when
#          named, and alone: scripts/services.sh start redis-cluster)
#   kafka-cluster  three Kafka brokers, one KRaft quorum (only when named, and alone:
#          scripts/services.sh start kafka-cluster)
#
# Usage: scripts/services.sh {install|start|stop|restart|status|env} [redis] [kafka] [mongo] [storage]
#        scripts/services.sh {install|start|stop|restart|status|env} redis-cluster
#        scripts/services.sh {install|start|stop|restart|status|env} kafka-cluster
#        (no service names = all four). See docs/services.md.
#
# Environment:
#   PLOP_REDIS_PORT (6379)  PLOP_REDIS_CLUSTER_PORT (7001: the first of six)
#   PLOP_REDIS_CLUSTER_NODE_TIMEOUT_MS (2000)  PLOP_KAFKA_PORT (9092)  PLOP_KAFKA_CONTROLLER_PORT (9093)
#   PLOP_KAFKA_CLUSTER_PORT (9092: the first broker of three, at +0, +2, +4; controllers at +1, +3, +5)
#   PLOP_MONGO_PORT (27017) PLOP_MONGO_DEBUG_PORT (28088) PLOP_POSTGRES_PORT (15432)
#   PLOP_STORAGE_PORT (7070) PLOP_STORAGE_BUCKET (plop)
#   PLOP_STORAGE_ACCESS_KEY, PLOP_STORAGE_SECRET_KEY  the storage server's root keys
#   PLOP_FERRETDB_BACKEND   postgresql (default) or sqlite
#   PLOP_SERVICES_DIR       run state (data, logs, pid files); default <repo>/.services
#   PLOP_SERVICES_TIMEOUT   readiness timeout in seconds for `start` (default per service)
#   XDG_CACHE_HOME          installed jars/binaries go to ${XDG_CACHE_HOME:-~/.cache}/plop
#
# This file is the command line only: it parses the arguments and runs the
# shared life cycle of scripts/services/supervisor.sh for each named service.
# Each service is a file of its own in scripts/services/.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SERVICES_PARTS=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)/services
# shellcheck source=services/lib.sh
source "$SERVICES_PARTS/lib.sh"
# shellcheck source=services/supervisor.sh
source "$SERVICES_PARTS/supervisor.sh"
# shellcheck source=services/redis.sh
source "$SERVICES_PARTS/redis.sh"
# shellcheck source=services/redis_cluster.sh
source "$SERVICES_PARTS/redis_cluster.sh"
# shellcheck source=services/kafka.sh
source "$SERVICES_PARTS/kafka.sh"
# shellcheck source=services/kafka_cluster.sh
source "$SERVICES_PARTS/kafka_cluster.sh"
# shellcheck source=services/postgres.sh
source "$SERVICES_PARTS/postgres.sh"
# shellcheck source=services/mongo.sh
source "$SERVICES_PARTS/mongo.sh"
# shellcheck source=services/storage.sh
source "$SERVICES_PARTS/storage.sh"

ALL_SERVICES=(redis kafka mongo storage)

usage() {
  cat >&2 <<'EOF'
usage: scripts/services.sh {install|start|stop|restart|status|env} [redis] [kafka] [mongo] [storage]
  install  install what is missing (idempotent; per-user cache ~/.cache/plop)
  start    install if needed, start, wait until ready (idempotent)
  stop     TERM, wait up to 30 s, then KILL (idempotent; data is kept)
  restart  stop then start
  status   one line per service; exit 0 only if all named services are running
  env      print export lines for PLOP_REDIS_URL, PLOP_BROKER_URL, PLOP_MONGO_URL,
           PLOP_STORAGE_URL
No service names means all four. "mongo" is FerretDB (and, with the default
PostgreSQL backend, the PostgreSQL cluster under it); "storage" is versitygw.
"redis-cluster" (named alone) is three Redis masters with a replica each on
127.0.0.1:7001-7006; its env line is the cluster's PLOP_REDIS_URL.
"kafka-cluster" (named alone) is three Kafka brokers on 127.0.0.1:9092, 9094 and 9096
(PLOP_KAFKA_CLUSTER_PORT moves them); its env line is the cluster's PLOP_BROKER_URL.
EOF
}

cmd_install() { # svcs...
  local svc
  for svc in "$@"; do install_one "$svc"; done
}

cmd_start() { # svcs...: install everything first, then start each; 1 if one failed
  local svc failed=0
  for svc in "$@"; do
    "${svc}_installed" || "${svc}_install"
  done
  for svc in "$@"; do
    start_one "$svc" || failed=1
  done
  return "$failed"
}

cmd_stop() { # svcs...
  local svc
  for svc in "$@"; do stop_one "$svc"; done
}

cmd_status() { # svcs...: one line each; 1 unless all run and answer
  local svc rc=0
  for svc in "$@"; do
    status_one "$svc" || rc=1
  done
  return "$rc"
}

cmd_env() { # always every URL
  local svc
  for svc in "${ALL_SERVICES[@]}"; do "${svc}_env"; done
}

main() {
  local cmd=${1:-}
  [[ -n $cmd ]] || { usage; exit 2; }
  shift
  local svcs=() svc
  for svc in "${ALL_SERVICES[@]}" redis_cluster kafka_cluster; do "${svc}_check_config"; done
  if [[ $* == redis-cluster ]]; then
    redis_cluster_command "$cmd"
    return
  fi
  if [[ $* == kafka-cluster ]]; then
    kafka_cluster_command "$cmd"
    return
  fi
  for svc in "$@"; do
    case $svc in
      redis | kafka | mongo | ferretdb | storage)
        [[ $svc == ferretdb ]] && svc=mongo
        [[ " ${svcs[*]} " == *" $svc "* ]] || svcs+=("$svc")
        ;;
      *)
        usage
        error "unknown service '$svc' (expected redis, kafka, mongo or storage; or redis-cluster or kafka-cluster alone)"
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
