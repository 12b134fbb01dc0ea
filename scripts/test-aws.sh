#!/usr/bin/env bash
# test-aws.sh — the AWS backends against local emulators: installs the
# pinned emulators (scripts/emulators.sh), starts them, runs every Go
# package whose tests use internal/testutil/awstest with -count=1 (race
# detector on), stops the emulators and prints a summary.
#
#   scripts/test-aws.sh                      # all AWS test packages
#   scripts/test-aws.sh ./internal/queue/... # only these
#   RACE=0 scripts/test-aws.sh               # without the race detector
#
# With CI=true a missing emulator fails the run (moto cannot be installed
# from the registries reachable here; it must be preinstalled), and so does
# any skipped test: green means every AWS test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
ci=false
case "${CI:-}" in true | 1) ci=true ;; esac

# shellcheck source=scripts/emulators.sh
source scripts/emulators.sh

log() { printf '== %s\n' "$*"; }

log "installing emulators into $EMU_DIR"
emu_install

if [ -z "$(emu_moto_path)" ]; then
  if $ci; then
    echo "moto_server not found: SSM, EC2, CloudWatch and IAM-enforced tests cannot run. It is preinstalled on the project's machines (pip moto 5.2.1); set MOTO_SERVER to its path." >&2
    exit 1
  fi
  echo "warning: moto_server not found; SSM/EC2/CloudWatch tests will skip" >&2
fi

trap emu_stop EXIT
log "starting emulators"
emu_start
unset SEREN_AWS_TESTS # the AWS tests run here: nothing may skip for lack of an emulator

if [ $# -gt 0 ]; then
  pkgs=("$@")
else
  # Every package whose tests import the emulator helper.
  mapfile -t pkgs < <(go list -e -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
    awk '/internal\/testutil\/awstest/ && $1 !~ /internal\/testutil\/awstest$/ {print $1}')
fi
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "no AWS test packages found" >&2
  exit 1
fi
log "testing ${#pkgs[@]} packages: ${pkgs[*]}"

race=(-race)
[ "${RACE:-1}" = 0 ] && race=()
out=$(mktemp)
set +e +o pipefail
go test "${race[@]}" -count=1 -timeout 20m -v "${pkgs[@]}" 2>&1 | tee "$out" |
  grep -E '^(ok|FAIL|---|panic:)|^\s+--- (FAIL|SKIP)|^\s+\S+_test\.go:[0-9]+:'
status=${PIPESTATUS[0]}
set -e -o pipefail

passed=$(grep -cE '^\s*--- PASS:' "$out" || true)
failed=$(grep -cE '^\s*--- FAIL:' "$out" || true)
skipped=$(grep -cE '^\s*--- SKIP:' "$out" || true)
echo
log "AWS test summary (emulators: dynalite, fauxqs, local-kms$([ -f "$EMU_RUN/moto.pid" ] && echo ", moto, moto with IAM enforcement"))"
grep -E '^(ok|FAIL)\s' "$out" || true
if [ "$skipped" -gt 0 ]; then
  echo "skipped:"
  grep -E '^\s*--- SKIP:' "$out" | sed 's/^\s*/  /'
fi
echo "aws: $passed passed, $failed failed, $skipped skipped"
rm -f "$out"

if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if $ci && [ "$skipped" -gt 0 ]; then
  echo "CI=true: $skipped AWS tests skipped; every AWS test must run in CI" >&2
  exit 1
fi
