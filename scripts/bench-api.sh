#!/usr/bin/env bash
# Benchmark the job API (not a test): starts a local `serve` on a fresh data
# dir, creates an API key, and runs wrk over loopback against
#   GET  /jobs/{id}   (read path: key check + job read)
#   POST /jobs        (write path: validation, sealing, insert, enqueue)
# printing requests/s and latency percentiles (p50/p90/p99) for each.
# Goal (issue 4): >= 1000 req/s with p99 < 50 ms, the guide's API throttle.
#
#   scripts/bench-api.sh                 # 20 s per route, 32 connections
#   BENCH_DURATION=60s BENCH_CONNECTIONS=64 scripts/bench-api.sh
#
# serve runs with --rate-limit -1 (the throttle itself would cap the
# measurement at 1000 req/s) and a large --max-queued-jobs, so every POST
# creates a job rather than hitting the concurrent-job limit (429);
# --max-concurrent-jobs 1 keeps the workers those jobs start (they fail at
# once: the source host refuses connections) from competing for the CPU.
# Needs wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${BENCH_DURATION:-20s}"
conns="${BENCH_CONNECTIONS:-32}"
threads="${BENCH_THREADS:-2}"

command -v wrk >/dev/null || { echo "wrk not found; install it: apt-get install wrk" >&2; exit 1; }

work="$(mktemp -d)"
serve_pid=""
cleanup() {
	if [[ -n "$serve_pid" ]]; then
		kill "$serve_pid" 2>/dev/null || true
		wait "$serve_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

bin="$work/postgres-seren-replicator"
go build -o "$bin" ./cmd/postgres-seren-replicator
data="$work/data"

key="$("$bin" keys create --data-dir "$data" --name bench | tail -n 1)"

"$bin" serve --data-dir "$data" --listen 127.0.0.1:0 --rate-limit -1 \
	--max-concurrent-jobs 1 --max-queued-jobs 100000000 --log-level error \
	>"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!
url=""
for _ in $(seq 1 100); do
	url="$(head -n 1 "$work/serve.out" 2>/dev/null || true)"
	[[ -n "$url" ]] && break
	kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
	sleep 0.1
done
[[ -n "$url" ]] || { echo "serve did not print its URL" >&2; cat "$work/serve.err" >&2; exit 1; }

body='{"schema_version":"1.0","command":"init","source_url":"postgres://bench:bench-secret@127.0.0.1:1/app","target_url":"postgres://bench:bench-secret@127.0.0.1:1/app","options":{"estimated_size_bytes":1000}}'
job_id="$(curl -fsS -X POST "$url/jobs" -H "x-api-key: $key" -H 'Content-Type: application/json' -d "$body" |
	sed -n 's/.*"job_id":"\([^"]*\)".*/\1/p')"
[[ -n "$job_id" ]] || { echo "submit failed" >&2; exit 1; }

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "$key"
EOF

report() { # name, wrk output
	local name="$1" out="$2"
	local rps p50 p90 p99 non2xx errors
	rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
	p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
	p90="$(awk '$1 == "90%" {print $2}' <<<"$out")"
	p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
	non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")"
	errors="$(awk '/Socket errors:/ {print}' <<<"$out")"
	printf '%-16s %10s req/s   p50 %-9s p90 %-9s p99 %-9s non-2xx %s %s\n' \
		"$name" "$rps" "$p50" "$p90" "$p99" "${non2xx:-0}" "$errors"
}

echo "serve at $url; wrk -t$threads -c$conns -d$duration on $(nproc) CPUs"
get_out="$(wrk -t"$threads" -c"$conns" -d"$duration" --latency -H "x-api-key: $key" "$url/jobs/$job_id")"
report "GET /jobs/{id}" "$get_out"
post_out="$(wrk -t"$threads" -c"$conns" -d"$duration" --latency -s "$work/post.lua" "$url/jobs")"
report "POST /jobs" "$post_out"
if [[ -n "${BENCH_VERBOSE:-}" ]]; then
	printf '\n%s\n\n%s\n' "$get_out" "$post_out"
fi
