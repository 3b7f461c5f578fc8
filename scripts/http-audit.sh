#!/usr/bin/env bash
# Runs the graphql-http conformance audit (the version pinned in
# tests/http_audit/package-lock.json) against a GraphQL URL and prints one JSON
# object per audit. Installs Node.js (apt) and the audit (npm ci) when missing.
#   scripts/http-audit.sh http://127.0.0.1:8000/graphql
set -euo pipefail

url="${1:?usage: scripts/http-audit.sh GRAPHQL_URL}"
exec "$(dirname "${BASH_SOURCE[0]}")/node-clients.sh" audit.mjs "$url"
