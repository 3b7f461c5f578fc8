#!/usr/bin/env bash
# Runs one of the suite's Node.js clients (tests/http_audit/*.mjs, their packages
# pinned in its package-lock.json) with the given arguments. Installs Node.js (apt)
# and the packages (npm ci) when missing.
#   scripts/node-clients.sh audit.mjs http://127.0.0.1:8000/graphql
set -euo pipefail

script="${1:?usage: scripts/node-clients.sh SCRIPT.mjs [ARGS...]}"
shift
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/http_audit" && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node-clients: installing Node.js and npm" >&2
  sudo=()
  ((EUID == 0)) || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=300 update >&2
  "${sudo[@]}" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends \
    nodejs npm >&2
fi

# Reinstall only when the lock file changed since the last install.
stamp="$dir/node_modules/.plop-installed"
if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$dir/package-lock.json" "$stamp"
fi

exec node "$dir/$script" "$@"
