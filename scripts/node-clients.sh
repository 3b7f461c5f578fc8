#!/usr/bin/env bash
# Runs one of the suite's Node.js clients (tests/http_audit/*.mjs, their packages
# pinned in its package-lock.json) with the given arguments. Installs Node.js (apt)
# and the packages (npm ci) when missing.
#   scripts/node-clients.sh audit.mjs http://127.0.0.1:8000/graphql
#   scripts/node-clients.sh --install    (only the install)
set -euo pipefail

script="${1:?usage: scripts/node-clients.sh SCRIPT.mjs [ARGS...] | --install}"
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

# Reinstall only when the lock file changed since the last install. Test workers run
# this side by side; `npm ci` empties node_modules first, so two at once remove each
# other's files. One installs under the lock while the others wait, then find the stamp.
stamp="$dir/node_modules/.plop-installed"
install_packages() {
  if [ ! -f "$stamp" ] || ! cmp -s "$dir/package-lock.json" "$stamp"; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$dir/package-lock.json" "$stamp"
  fi
}
exec 9>"$dir/.npm-install.lock"
flock 9
install_packages
flock -u 9
exec 9>&-

if [ "$script" = "--install" ]; then
  exit 0
fi

exec node "$dir/$script" "$@"
