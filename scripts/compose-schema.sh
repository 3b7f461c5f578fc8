#!/usr/bin/env bash
# Puts the Compose specification's JSON schema in .services/compose-spec/ and prints
# its path. The schema comes as the npm package dclint ships it (a Compose linter that
# validates against it), pinned below by version and by the SHA-256 of its tarball,
# so every run checks the compose files against the same schema without a network
# once fetched. Installs Node.js (apt) when npm is missing.
#   scripts/compose-schema.sh    # prints .services/compose-spec/dclint-3.1.0/compose.schema.json
set -euo pipefail

package=dclint
version=3.1.0
tarball_sha256=73fc6079a0408c80c7ccea9e9e5c21c40551afaf15e8c1ee25a5ad6af1ec0414
member=package/schemas/compose.schema.json

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$repo/.services/compose-spec/$package-$version"
schema="$dir/compose.schema.json"

if [ ! -f "$schema" ]; then
  if ! command -v npm >/dev/null; then
    echo "compose-schema: installing Node.js and npm" >&2
    sudo=()
    ((EUID == 0)) || sudo=(sudo -n)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get -q -o DPkg::Lock::Timeout=300 update >&2
    "${sudo[@]}" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends \
      nodejs npm >&2
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  tarball="$(cd "$work" && npm pack --silent "$package@$version")"
  echo "$tarball_sha256  $work/$tarball" | sha256sum --check --quiet >&2
  tar -xzf "$work/$tarball" -C "$work" "$member"
  mkdir -p "$dir"
  # Moved into place whole: a run that stops half-way leaves no partial schema.
  mv "$work/$member" "$schema.part"
  mv "$schema.part" "$schema"
fi
echo "$schema"
