#!/usr/bin/env bash
# Benchmark the job API (not a test): starts a local `serve` on a fresh data
# dir, creates an API key, and runs wrk over loopback against
#   GET  /jobs/{id}   (read path: key check + job read)
#   POST /jobs        (write path: validation, sealing, insert, enqueue)
# printing requests/s and latency percentiles (p50/p90/p99) for each.
# Goal (issue 4): >= 1000 req/s with p99 < 50 ms, the guide's API throttle.
#
#   scripts/bench-api.sh                    # 10 s per run; 8, 16 and 32 connections
#   BENCH_DURATION=30s BENCH_CONNECTIONS="16 64" scripts/bench-api.sh
#   BENCH_BIN=/tmp/old-binary scripts/bench-api.sh   # measure a given build
#
# Two phases, each on a fresh data dir:
#
#  1. Capacity, once per connection count (8 to 16 is a realistic number
#     of clients; 32 shows how it holds up beyond). serve runs with
#     --rate-limit -1 --key-rate-limit -1 (the throttles would cap the
#     measurement at 1000 and 100 req/s) and a large --max-queued-jobs, so every POST creates and queues
#     a job rather than hitting the concurrent-job limit (429). The workers
#     are a stub that sleeps (--worker-binary), so one worker starts and
#     then its slot stays taken: the measurement is the API's, not that of
#     worker processes being started and failing. Every POST leaves one
#     more queued job behind (tens of thousands by the end of a run), far
#     more than a real service holds.
#
#  2. Throttle. serve runs with the default --rate-limit (1000 req/s over
#     all keys) and --key-rate-limit (100 req/s per key; the run uses one
#     key) and the same load; the report splits the
#     responses by status, with the latency of each, showing that excess
#     requests are answered 429 quickly instead of queueing. This phase uses
#     one connection per wrk thread, so a Lua script can time each response
#     (wrk's own latency figures do not split by status).
#
# serve logs at its default level (info: a line per request) to a file. The
# load average is printed with each phase: on a 2-core machine, anything
# else running moves the figures a lot. Needs wrk (Debian package `wrk`,
# built with LuaJIT).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${BENCH_DURATION:-10s}"
conns_list="${BENCH_CONNECTIONS:-8 16 32}"
throttle_conns="${BENCH_THROTTLE_CONNECTIONS:-16}"
threads="${BENCH_THREADS:-2}"

command -v wrk >/dev/null || { echo "wrk not found; install it: apt-get install wrk" >&2; exit 1; }

work="$(mktemp -d)"
serve_pid=""
stop_serve() {
	if [[ -n "$serve_pid" ]]; then
		kill "$serve_pid" 2>/dev/null || true
		wait "$serve_pid" 2>/dev/null || true
		serve_pid=""
	fi
}
cleanup() {
	stop_serve
	rm -rf "$work"
}
trap cleanup EXIT

bin="${BENCH_BIN:-}"
if [[ -z "$bin" ]]; then
	bin="$work/postgres-seren-replicator"
	go build -o "$bin" ./cmd/postgres-seren-replicator
fi
data="$work/data"

# The worker stub holds its slot until serve stops it (SIGTERM to its group).
stub="$work/worker-stub"
printf '#!/bin/sh\nexec sleep 3600\n' >"$stub"
chmod +x "$stub"

key=""
fresh_data() { # a new data dir and API key
	rm -rf "$data"
	key="$("$bin" keys create --data-dir "$data" --name bench 2>/dev/null | tail -n 1)"
	sed "s/@KEY@/$key/" "$work/post.lua.in" >"$work/post.lua"
}

url=""
start_serve() { # extra serve flags...
	: >"$work/serve.out"
	"$bin" serve --data-dir "$data" --listen 127.0.0.1:0 --allow-networks 127.0.0.0/8 --worker-binary "$stub" \
		--max-concurrent-jobs 1 --max-queued-jobs 100000000 "$@" \
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
}

body='{"schema_version":"1.0","command":"init","source_url":"postgres://bench:bench-secret@127.0.0.1:1/app","target_url":"postgres://bench:bench-secret@127.0.0.1:1/app","options":{"estimated_size_bytes":1000}}'

cat >"$work/post.lua.in" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "@KEY@"
EOF

# by-status.lua times each response and reports latency per status code.
# It needs one connection per thread (-t N -c N): request() and response()
# then alternate on each thread.
cat >"$work/by-status.lua" <<'EOF'
local ffi = require("ffi")
ffi.cdef[[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
]]
local ts = ffi.new("struct bench_timespec")
local function now_us()
	ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
	return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}
function setup(thread)
	threads[#threads + 1] = thread
end

local started = 0
-- Latencies in µs per status, in flat globals lat_<status> with the codes
-- seen listed in `codes`: done() reads them per thread with thread:get,
-- which copies flat tables only.
codes = ""

function init(args)
	for _, a in ipairs(args) do
		local k, v = a:match("^([^=]+)=(.*)$")
		if k == "method" then wrk.method = v
		elseif k == "body" then wrk.body = v; wrk.headers["Content-Type"] = "application/json"
		elseif k == "key" then wrk.headers["x-api-key"] = v
		end
	end
end

function request()
	started = now_us()
	return wrk.format()
end

function response(status)
	local name = "lat_" .. status
	local l = _G[name]
	if not l then
		l = {}
		_G[name] = l
		codes = codes .. status .. ","
	end
	l[#l + 1] = now_us() - started
end

function done(summary)
	local merged = {}
	for _, t in ipairs(threads) do
		for code in string.gmatch(t:get("codes"), "(%d+),") do
			local status = tonumber(code)
			local m = merged[status] or {}
			for _, v in ipairs(t:get("lat_" .. code)) do m[#m + 1] = v end
			merged[status] = m
		end
	end
	local secs = summary.duration / 1e6
	local codes = {}
	for status in pairs(merged) do codes[#codes + 1] = status end
	table.sort(codes)
	for _, status in ipairs(codes) do
		local m = merged[status]
		table.sort(m)
		local function pct(p) return m[math.max(1, math.ceil(#m * p / 100))] / 1000 end
		io.write(string.format("  status %d: %9.0f req/s   p50 %.2fms   p99 %.2fms   max %.2fms   (%d responses)\n",
			status, #m / secs, pct(50), pct(99), m[#m] / 1000, #m))
	end
end
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
	printf '%-16s c=%-3s %10s req/s   p50 %-9s p90 %-9s p99 %-9s non-2xx %s %s\n' \
		"$name" "$conns" "$rps" "$p50" "$p90" "$p99" "${non2xx:-0}" "$errors"
	if [[ -n "${BENCH_VERBOSE:-}" ]]; then
		printf '%s\n\n' "$out"
	fi
}

echo "wrk -t$threads -d$duration, connections: $conns_list; $(nproc) CPUs; $(uptime)"

first_job() { # submit one job, print its id
	curl -fsS -X POST "$url/jobs" -H "x-api-key: $key" -H 'Content-Type: application/json' -d "$body" |
		sed -n 's/.*"job_id":"\([^"]*\)".*/\1/p'
}

for conns in $conns_list; do
	echo "== capacity (--rate-limit -1), fresh data dir, load: $(uptime | sed 's/.*load average: //')"
	fresh_data
	start_serve --rate-limit -1 --key-rate-limit -1
	job_id="$(first_job)"
	[[ -n "$job_id" ]] || { echo "submit failed" >&2; exit 1; }
	report "GET /jobs/{id}" "$(wrk -t"$threads" -c"$conns" -d"$duration" --latency -H "x-api-key: $key" "$url/jobs/$job_id")"
	report "POST /jobs" "$(wrk -t"$threads" -c"$conns" -d"$duration" --latency -s "$work/post.lua" "$url/jobs")"
	stop_serve
done

conns="$throttle_conns"
echo "== throttle (default --rate-limit), fresh data dir, load: $(uptime | sed 's/.*load average: //')"
echo "   wrk -t$conns -c$conns; latency by status"
fresh_data
start_serve
job_id="$(first_job)"
[[ -n "$job_id" ]] || { echo "submit failed" >&2; exit 1; }
echo "GET /jobs/{id}"
wrk -t"$conns" -c"$conns" -d"$duration" -s "$work/by-status.lua" "$url/jobs/$job_id" -- "key=$key" |
	sed -n '/^  status /p; /Requests\/sec/p'
echo "POST /jobs"
wrk -t"$conns" -c"$conns" -d"$duration" -s "$work/by-status.lua" "$url/jobs" -- \
	"key=$key" "method=POST" "body=$body" | sed -n '/^  status /p; /Requests\/sec/p'
stop_serve
echo "load: $(uptime | sed 's/.*load average: //')"
