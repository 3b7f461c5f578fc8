#!/usr/bin/env bash
# The whole test suite on a fresh machine: sets up the virtualenv, installs and
# starts the real services (Redis, Kafka, FerretDB), installs Debian's Chromium for
# the browser tests, checks lint and types, runs pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k delivery -x`.
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

echo "== services"
bash scripts/services.sh start
echo "== browser"
bash scripts/browser.sh

echo "== ruff"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy

# Two phases. First every test that leaves the shared services alone, in parallel
# processes (each starts its own Plop servers; tests isolate by fresh users and
# rooms, so they may share Redis, Kafka and FerretDB). Then, alone, the tests that
# stop and start the shared Kafka (marker restarts_kafka): no other test may run
# while the broker is down. PLOP_TEST_WORKERS=1 runs the first phase in this process.
workers="${PLOP_TEST_WORKERS:-2}"
parallel=()
if [ "$workers" -gt 1 ]; then
  parallel=(-n "$workers")
fi
# pytest exits 5 when a phase selects no test (e.g. -k matched only the other
# phase); the run fails only if neither selected any.
selected=0
phase() {
  local status=0
  .venv/bin/python -m pytest "$@" || status=$?
  if [ "$status" -eq 5 ]; then
    return 0
  fi
  selected=1
  return "$status"
}
echo "== pytest: tests that share the services, $workers at a time"
phase "${parallel[@]}" -m "not restarts_kafka" "$@"
echo "== pytest: tests that restart Kafka"
phase -m restarts_kafka "$@"
if [ "$selected" -eq 0 ]; then
  echo "no test selected" >&2
  exit 5
fi
