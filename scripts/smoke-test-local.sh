#!/usr/bin/env bash
# Runs scripts/smoke-test.sh against a throwaway local `serve` (CI): builds
# the binary, starts serve on a free port with a temporary data directory,
# creates an API key, runs the four checks, and stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

WORK=$(mktemp -d)
SERVE_PID=""
cleanup() {
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill -TERM "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

go build -o "$WORK/postgres-seren-replicator" ./cmd/postgres-seren-replicator
BIN="$WORK/postgres-seren-replicator"
API_KEY=$("$BIN" keys create --data-dir "$WORK/data" --name smoke 2>/dev/null | tail -n1)

"$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --allow-networks 127.0.0.0/8 >"$WORK/url" 2>"$WORK/serve.log" &
SERVE_PID=$!
for _ in $(seq 1 100); do
	[ -s "$WORK/url" ] && break
	kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
	sleep 0.1
done
API_ENDPOINT=$(head -n1 "$WORK/url")
[ -n "$API_ENDPOINT" ] || { echo "serve did not start" >&2; cat "$WORK/serve.log" >&2; exit 1; }

if ! API_ENDPOINT="$API_ENDPOINT" API_KEY="$API_KEY" bash scripts/smoke-test.sh; then
	echo "--- serve log" >&2
	cat "$WORK/serve.log" >&2
	exit 1
fi
