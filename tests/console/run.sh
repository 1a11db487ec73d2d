#!/usr/bin/env bash
# The operator console's script against the committed schema.graphql:
# 1. `node --check` parses src/http/console/app.js;
# 2. validate.mjs checks every gql`…` document of app.js with graphql-js (parse + validate
#    against schema.graphql, one named operation each) and the enum values its forms offer.
# Usage: tests/console/run.sh   (needs node and npm; installs graphql in a temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "console: installing graphql"
(cd "$work" && npm init -y >/dev/null &&
  npm install --no-save --no-audit --no-fund --silent graphql@16.15.0 >/dev/null)

echo "console: node --check src/http/console/app.js"
node --check "$root/src/http/console/app.js"

cp "$root/schema.graphql" "$work/schema.graphql"
cp "$here/validate.mjs" "$work/validate.mjs"

echo "console: validating the documents of src/http/console/app.js against schema.graphql"
(cd "$work" && node validate.mjs schema.graphql "$root/src/http/console/app.js")
