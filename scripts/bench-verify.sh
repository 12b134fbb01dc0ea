#!/usr/bin/env bash
# Benchmark `verify` (not a test): builds tables of BENCH_ROWS rows (default
# 1M and 10M) on two throwaway PostgreSQL clusters and prints the wall time
# and peak RSS of `postgres-seren-replicator verify`, identical and with a
# changed and a missing row. Memory must not grow with the row count.
#
#   scripts/bench-verify.sh                  # 1M and 10M rows
#   BENCH_ROWS=100000 scripts/bench-verify.sh
#   BENCH_JOBS=4 scripts/bench-verify.sh
#
# Needs the PostgreSQL server binaries (see internal/testutil/pgtest) and
# about 6 GB of free disk per 10M rows (both clusters).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(mktemp -d)/postgres-seren-replicator"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/postgres-seren-replicator
BENCH_BIN="$bin" go test -tags benchverify -run '^TestBenchVerify$' -count=1 -timeout 3h -v ./internal/verifier/ |
	grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS$'
