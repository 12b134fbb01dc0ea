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
SEREN_AWS_TESTS=elsewhere go test -race -count=1 -timeout 40m "${short[@]}" ./...

step "fuzz the job-request validator (seed corpus + 20 s)"
go test -run='^$' -fuzz='^FuzzDecodeRequest$' -fuzztime=20s -fuzzminimizetime=5s ./internal/jobs
step "fuzz the job URL policy (seed corpus + 10 s)"
go test -run='^$' -fuzz='^FuzzURLPolicy$' -fuzztime=10s -fuzzminimizetime=5s ./internal/pg

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
