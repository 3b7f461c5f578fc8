# shellcheck shell=bash
# The kafka service: Apache Kafka in KRaft mode, broker and controller in one
# JVM, on 127.0.0.1:PLOP_KAFKA_PORT (controller PLOP_KAFKA_CONTROLLER_PORT).
# Its jars come from Maven Central through the pinned scripts/kafka/pom.xml;
# its configuration is scripts/kafka/server.properties.in and log4j2.properties.
# Implements the service functions described in supervisor.sh. Sourced, never run.

KAFKA_PORT=${PLOP_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${PLOP_KAFKA_CONTROLLER_PORT:-9093}

KAFKA_INPUTS=$SCRIPTS_DIR/kafka
# The version comes from the file that pins it, so the two cannot drift apart.
KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$KAFKA_INPUTS/pom.xml")
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION

define_service kafka kafka kafka.Kafka 120 # name, files, command line, start-up timeout

kafka_check_config() {
  check_port PLOP_KAFKA_PORT "$KAFKA_PORT"
  check_port PLOP_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
}

kafka_ports() { printf '%s\n' "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; }

kafka_env() { printf 'export PLOP_BROKER_URL=kafka://127.0.0.1:%s\n' "$KAFKA_PORT"; }

kafka_status_fields() { printf ' controller=%s' "$KAFKA_CONTROLLER_PORT"; }

# ------------------------------------------------------------------ install

kafka_fingerprint() { printf '%s %s' "$KAFKA_VERSION" "$(fingerprint "$KAFKA_INPUTS/pom.xml")"; }

kafka_installed() {
  [[ -f $KAFKA_HOME/.installed && $(<"$KAFKA_HOME/.installed") == "$(kafka_fingerprint)" ]]
}

java_ok() { # a Java 17 or newer is on the PATH
  command -v java >/dev/null || return 1
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
  [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 17))
}

kafka_install() { kafka_installed || with_install_lock "kafka-$KAFKA_VERSION" kafka_build; }

# Copies the jars into a scratch dir next to KAFKA_HOME and moves it into place
# at the end, so an interrupted install leaves nothing half done.
kafka_build() {
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
  if ! mvn -B -ntp -f "$KAFKA_INPUTS/pom.xml" \
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

# ---------------------------------------------------------------------- run

kafka_java() { # -> KAFKA_JAVA array
  KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_INPUTS/log4j2.properties"
    -cp "$KAFKA_HOME/libs/*")
}

kafka_launch() { # dir timeout
  local dir=$1 data=$1/data cid
  sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@DATA_DIR@|$data|g" "$KAFKA_INPUTS/server.properties.in" >"$dir/server.properties"
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
  spawn_service kafka "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties"
}

kafka_ready() { # the current log says started and the broker answers clients
  grep -q 'Kafka Server started' "$(service_file kafka log)" 2>/dev/null && kafka_ping "$KAFKA_PORT"
}

# Kafka ApiVersions v0 request (correlation id 1, client id "plop"); a broker
# that accepts clients answers with correlation id 1 and error code 0.
# shellcheck disable=SC2016 # $1 and $reply are for the inner bash
kafka_ping() { # port
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x01\x00\x04plop" >&3
    reply=$(head -c 10 <&3 | od -An -tx1 | tr -d " \n")
    [[ ${reply:8:12} == 000000010000 ]]' _ "$1" 2>/dev/null
}
