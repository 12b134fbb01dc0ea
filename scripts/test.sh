#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what a bare machine lacks,
# then runs vet, every Go test against real PostgreSQL clusters the tests
# start themselves, a short fuzz run, the AWS suites against local emulators
# and the API smoke test against a local `serve`.
#
#   scripts/test.sh            # everything
#   SHORT=1 scripts/test.sh    # skip the slow multi-million-row tests
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "prerequisites"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  else
    echo "PostgreSQL server binaries not found: sudo apt-get install postgresql-15" >&2; exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
go version
ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true
# The other PostgreSQL majors of the version matrix (cached npm builds):
# exports SEREN_PG_BIN_12 … SEREN_PG_BIN_18 for internal/testutil/pgtest.
. scripts/pgversions.sh

step "go vet"
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi

if command -v terraform >/dev/null 2>&1; then
  step "terraform fmt -check"
  terraform fmt -check -recursive deploy/aws/terraform
else
  echo "terraform not installed: terraform fmt -check not run (it is not in Debian's archive)"
fi

step "go test (real PostgreSQL, race detector)"
short=()
[ -n "${SHORT:-}" ] && short=(-short)
# The AWS suites need the emulators: scripts/test-aws.sh runs them below.
# The version matrix runs in its own step below (without -race: its time is
# the servers', and it starts three clusters per pair).
SEREN_AWS_TESTS=elsewhere go test -race -count=1 -timeout 40m "${short[@]}" -skip '^TestMatrix$' ./...

step "PostgreSQL version matrix (12→18, 13→17, 14→16, 15→15, 15→17; SHORT=1: 12→18)"
# Pairs run two at a time (TestMatrix bounds it); nothing else runs meanwhile.
go test -count=1 -timeout 20m "${short[@]}" -run '^TestMatrix$' ./internal/replicator

step "fuzz the job-request validator (seed corpus + 20 s)"
go test -run='^$' -fuzz='^FuzzDecodeRequest$' -fuzztime=20s -fuzzminimizetime=5s ./internal/jobs
step "fuzz the job URL policy (seed corpus + 10 s)"
go test -run='^$' -fuzz='^FuzzURLPolicy$' -fuzztime=10s -fuzzminimizetime=5s ./internal/pg

step "fuzz the row-filter predicate checker (seed corpus + 10 s)"
go test -run='^$' -fuzz='^FuzzPredicate$' -fuzztime=10s -fuzzminimizetime=5s ./internal/selection

if [ -x scripts/test-aws.sh ]; then
  step "AWS backends against local emulators"
  scripts/test-aws.sh
fi

if [ -x scripts/smoke-test-local.sh ]; then
  step "API smoke test against a local serve"
  scripts/smoke-test-local.sh
fi
echo
echo "All test steps passed."
