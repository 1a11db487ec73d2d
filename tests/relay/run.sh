#!/usr/bin/env bash
# Relay conformance of the committed schema.graphql:
# 1. graphql-schema-linter's Relay rules (connection types, connection arguments, PageInfo);
# 2. every connection field of the schema is used under `@connection` in tests/relay/src
#    (coverage.mjs), so a new connection without a document fails here;
# 3. relay-compiler compiles those documents against the schema, which it does only when
#    every `@connection` field is a spec connection.
# Usage: tests/relay/run.sh   (needs node and npm; installs the tools in a temporary folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "relay: installing relay-compiler and graphql-schema-linter"
(cd "$work" && npm init -y >/dev/null &&
  npm install --no-save --no-audit --no-fund --silent \
    relay-compiler@21.0.1 graphql-schema-linter@3.0.1 graphql@16.15.0 >/dev/null)

cp "$root/schema.graphql" "$work/schema.graphql"
cp -r "$here/src" "$work/src"
cp "$here/coverage.mjs" "$work/"

echo "relay: graphql-schema-linter (relay-connection-types-spec, relay-connection-arguments-spec, relay-page-info-spec) on schema.graphql"
(cd "$work" && npx --no-install graphql-schema-linter \
  --rules relay-connection-types-spec,relay-connection-arguments-spec,relay-page-info-spec \
  schema.graphql)

echo "relay: every connection field of schema.graphql is under @connection in tests/relay/src"
(cd "$work" && node coverage.mjs schema.graphql src/*.ts)

echo "relay: relay-compiler over tests/relay/src"
cat >"$work/relay.config.json" <<'JSON'
{
  "src": "./src",
  "schema": "./schema.graphql",
  "language": "typescript",
  "artifactDirectory": "./src/__generated__"
}
JSON
mkdir -p "$work/src/__generated__"
(cd "$work" && npx --no-install relay-compiler)
artifacts="$(find "$work/src/__generated__" -name '*.graphql.ts' | wc -l)"
documents="$(cat "$work"/src/*.ts | grep -c 'graphql`')"
echo "relay: relay-compiler wrote $artifacts artifacts for $documents documents"
[ "$artifacts" -eq "$documents" ]
echo "relay: schema.graphql conforms"
