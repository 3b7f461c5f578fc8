#!/usr/bin/env bash
# The whole test suite on a fresh machine: sets up the virtualenv, installs and
# starts the real services (Redis, Kafka, FerretDB, versitygw, a Redis Cluster and a three-broker Kafka cluster), installs Debian's Chromium for
# the browser tests, checks lint and types, runs pytest.
# With arguments, one pytest run with just those, e.g. `scripts/test.sh -k delivery -x`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

python="${PLOP_PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Plop needs Python 3.11 or newer; set PLOP_PYTHON to one." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# Reinstall only when the project's declared dependencies changed.
stamp=.venv/.plop-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  cp pyproject.toml "$stamp"
fi

# Lint, types and bytecode need only the virtualenv: they run in the background while
# the services start and the browser and the Node clients install (mostly waiting on
# ports, apt and npm), and their output is shown, in order, once they are done. With
# mypy's cache warm they take about 13 s of a loaded two-core machine (ruff and mypy
# 5 s, the bytecode 8 s); without it, mypy alone is most of a minute.
checks_log="$(mktemp)"
set -m # the checks in a process group of their own, which the trap below can end whole
(
  set -e
  echo "== ruff"
  .venv/bin/ruff format --check .
  .venv/bin/ruff check .
  echo "== mypy"
  .venv/bin/mypy
  # The suite starts hundreds of Python processes (servers, `plop` commands, benchmark
  # runs). Where PYTHONDONTWRITEBYTECODE is set, each compiled the project's modules
  # from source again (a tenth of a second of CPU or more each); compiled once here,
  # they all load the bytecode, which Python checks against each source file's time
  # and size.
  echo "== bytecode"
  .venv/bin/python -m compileall -q -j 0 -x '/(\.venv|\.services|\.git|node_modules)/' .
) >"$checks_log" 2>&1 &
checks=$!
set +m
# A failed step below ends the script: the checks end with it, not later in the
# background.
trap 'kill -- -"$checks" 2>/dev/null || true; rm -f "$checks_log"' EXIT

echo "== services"
bash scripts/services.sh start
# The Redis Cluster of tests/test_redis_cluster.py (its tests start it too, when run alone).
bash scripts/services.sh start redis-cluster
# The three Kafka brokers of tests/test_kafka_failover.py (started there too, when run
# alone), on ports of their own beside the shared Kafka's 9092 and 9093: the port is
# tests/support/kafka_brokers.py's CLUSTER_FIRST_PORT.
PLOP_KAFKA_CLUSTER_PORT=19092 bash scripts/services.sh start kafka-cluster
echo "== browser"
bash scripts/browser.sh
echo "== node clients"
bash scripts/node-clients.sh --install

checks_status=0
wait "$checks" || checks_status=$?
cat "$checks_log"
trap - EXIT
rm -f "$checks_log"
if [ "$checks_status" -ne 0 ]; then
  echo "lint, types or bytecode failed (exit $checks_status)" >&2
  exit "$checks_status"
fi

echo "== pytest"
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# Most tests spend their time waiting on servers and services, so three workers (each
# with its own servers, database and topics) share two cores well: the same 184 tests
# took 10:02 in three workers and 13:16 in two, on a loaded two-core machine. Four gain
# nothing: 191 tests of twelve files took 537 s in four, and 535 s and 381 s in three
# run just before and just after, for 15% more CPU (a fourth worker's own servers). The
# tests that stop
# and start the shared Kafka cannot run beside others: they run after, on their own.
# The files go to the workers longest first (tests/conftest.py, tests/support/file_order.py),
# not in xdist's order of most tests first, so that the workers end together.
# When the two cores are shared with other work, CPU is what runs short: each server
# start costs about 3 s of CPU (imports), each `plop` client command about 0.55 s (0.85 s
# while the command group still imported the server's stack: 74 s against 53 s of CPU
# for four of tests/test_cli.py's longest tests), so a test's cost is mostly the
# processes it starts and the requests it makes, not its waits.
.venv/bin/python -m pytest -n "${PLOP_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder \
  --durations=20 -m "not restarts_kafka"
exec .venv/bin/python -m pytest -m restarts_kafka
