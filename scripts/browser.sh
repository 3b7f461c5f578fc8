#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver for the browser tests, if missing.
# Idempotent: does nothing when /usr/bin/chromium and /usr/bin/chromedriver exist.
# Debian's packages are the only browser this machine can get (no other download works).
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
# Another apt run on the machine holds the lock for a while; wait for it.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q)
if ! apt-cache show chromium-driver >/dev/null 2>&1; then
  "${apt[@]}" update
fi
"${apt[@]}" install -y --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version
