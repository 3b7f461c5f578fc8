#!/usr/bin/env bash
# Runs the graphql-http conformance audit (the version pinned in
# tests/http_audit/package-lock.json) against a GraphQL URL and prints one JSON
# object per audit. Installs Node.js (apt) and the audit (npm ci) when missing.
#   scripts/http-audit.sh http://127.0.0.1:8000/graphql
set -euo pipefail

url="${1:?usage: scripts/http-audit.sh GRAPHQL_URL}"
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/http_audit" && pwd)"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "http-audit: installing Node.js and npm" >&2
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

exec node "$dir/audit.mjs" "$url"
