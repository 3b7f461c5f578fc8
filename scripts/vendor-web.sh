#!/usr/bin/env bash
# Fetches the pinned browser packages of the web pages from npm and copies their built
# files, with their licenses, into web/static/vendor/. The files are kept in the
# repository, so serving Plop needs neither npm nor the internet; run this only to
# change a pin. GraphiQL 3.8 is the last release with a browser (UMD) build; the
# explorer plugin is the release built against its @graphiql/react (0.28).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$repo/web/static/vendor"

# name version: the packages, pinned.
packages=(
  "react 18.3.1"
  "react-dom 18.3.1"
  "graphiql 3.8.3"
  "@graphiql/plugin-explorer 3.2.5"
  "graphql-ws 5.16.2"
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The built files to keep from each package, relative to its root.
files_of() {
  case "$1" in
    react) echo "umd/react.production.min.js LICENSE" ;;
    react-dom) echo "umd/react-dom.production.min.js LICENSE" ;;
    graphiql) echo "graphiql.min.js graphiql.min.css LICENSE" ;;
    # The plugin's package has no license file of its own: it is MIT, from the
    # GraphiQL repository, whose license (same holders) is copied below.
    @graphiql/plugin-explorer) echo "dist/index.umd.js dist/style.css" ;;
    graphql-ws) echo "umd/graphql-ws.min.js LICENSE.md" ;;
  esac
}

manifest="$work/VERSIONS"
echo "# Vendored by scripts/vendor-web.sh: package version sha1-of-the-npm-tarball" >"$manifest"
for entry in "${packages[@]}"; do
  read -r name version <<<"$entry"
  dir="$work/$(echo "$name" | tr '/@' '-_')"
  mkdir -p "$dir"
  tarball="$(cd "$dir" && npm pack --silent "$name@$version")"
  tar -xzf "$dir/$tarball" -C "$dir"
  echo "$name $version $(sha1sum "$dir/$tarball" | cut -d' ' -f1)" >>"$manifest"
  target="$vendor/$(basename "$name")"
  [ "$name" = "@graphiql/plugin-explorer" ] && target="$vendor/graphiql-plugin-explorer"
  rm -rf "$target"
  mkdir -p "$target"
  for file in $(files_of "$name"); do
    cp "$dir/package/$file" "$target/"
  done
done
cp "$vendor/graphiql/LICENSE" "$vendor/graphiql-plugin-explorer/LICENSE"
cp "$manifest" "$vendor/VERSIONS"
echo "vendored into $vendor:"
cat "$vendor/VERSIONS"
