#!/usr/bin/env bash
# Smoke test of a running job service (a local `serve`, or the AWS API
# Gateway endpoint): the guide's four checks.
#
#   API_ENDPOINT=http://127.0.0.1:8080 API_KEY=sk_live_… scripts/smoke-test.sh
#
# Test 3 submits a real `validate` job whose URLs point at nothing (.invalid
# names never resolve, so any network policy accepts them at submit;
# override with SMOKE_SOURCE_URL / SMOKE_TARGET_URL), with a 1 MB size
# estimate so that on AWS it gets the smallest worker (t3.medium, the
# guide's < 10 GB band: about $0.0004 for the few minutes it lives); it is
# cancelled at the end if it has not ended by itself. Test 4 waits up to
# SMOKE_POLL_SECONDS (default 300) for it to leave provisioning. Needs bash
# and curl.
# Exit status: 0 when all four pass, 1 otherwise.
set -uo pipefail

API_ENDPOINT="${API_ENDPOINT:-${SEREN_REMOTE_API:-}}"
API_KEY="${API_KEY:-${SEREN_API_KEY:-}}"
if [ -z "$API_ENDPOINT" ] || [ -z "$API_KEY" ]; then
	echo "usage: API_ENDPOINT=https://… API_KEY=sk_live_… $0" >&2
	exit 2
fi
command -v curl >/dev/null || { echo "curl is required" >&2; exit 2; }
API_ENDPOINT="${API_ENDPOINT%/}"
SOURCE_URL="${SMOKE_SOURCE_URL:-postgresql://smoke:smoke@smoke-source.invalid:5432/smoke}"
TARGET_URL="${SMOKE_TARGET_URL:-postgresql://smoke:smoke@smoke-target.invalid:5432/smoke}"
# Test 4 waits for the job to leave provisioning. On AWS that is a fresh
# EC2 instance booting and starting the worker: 40-90 s, more under load;
# the default leaves room for that. (Embedded: a second or two.)
POLL_SECONDS="${SMOKE_POLL_SECONDS:-300}"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
JOB_ID=""

# request METHOD PATH [BODY]: sets CODE and BODY (the response).
request() {
	local method=$1 path=$2 data=${3:-}
	local args=(-sS -o "$TMP/body" -w '%{http_code}' -X "$method" --max-time 20
		-H "x-api-key: $API_KEY" -H 'Content-Type: application/json')
	if [ -n "$data" ]; then
		args+=(--data-binary "$data")
	fi
	CODE=$(curl "${args[@]}" "$API_ENDPOINT$path" 2>"$TMP/err") || CODE="000"
	BODY=$(cat "$TMP/body" 2>/dev/null || true)
	if [ "$CODE" = "000" ]; then
		BODY="$(cat "$TMP/err")"
	fi
}

# field NAME: the string value of a top-level JSON field of BODY.
field() {
	printf '%s' "$BODY" | tr -d '\n' | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
}

pass() {
	passed=$((passed + 1))
	echo "✓ Test $1/4: $2"
}

fail() {
	failed=$((failed + 1))
	echo "✗ Test $1/4: $2"
	echo "    $3"
}

echo "========================================"
echo "Seren Replication API - Smoke Tests"
echo "========================================"
echo
echo "Running 4 tests..."
echo

# 1. Health.
request GET /health
if [ "$CODE" = 200 ] && [ "$(field status)" = ok ]; then
	pass 1 "API health check"
else
	fail 1 "API health check" "GET /health answered $CODE: $BODY"
fi

# 2. An invalid submission is refused with 400 naming the field.
request POST /jobs '{"schema_version":"1.0","command":"init","source_url":"not a url","target_url":"'"$TARGET_URL"'"}'
if [ "$CODE" = 400 ] && [ "$(field field)" = source_url ]; then
	pass 2 "Invalid job submission (validation)"
else
	fail 2 "Invalid job submission (validation)" "POST /jobs with a bad source_url answered $CODE: $BODY (want 400 naming source_url)"
fi

# 3. A valid submission is accepted.
request POST /jobs '{"schema_version":"1.0","command":"validate","source_url":"'"$SOURCE_URL"'","target_url":"'"$TARGET_URL"'","options":{"no_sync":true,"estimated_size_bytes":1000000}}'
if [ "$CODE" = 201 ] && [ -n "$(field job_id)" ] && [ -n "$(field trace_id)" ] && [ "$(field status)" = provisioning ]; then
	JOB_ID=$(field job_id)
	pass 3 "Valid job submission"
else
	fail 3 "Valid job submission" "POST /jobs answered $CODE: $BODY (want 201 with job_id, trace_id, status provisioning)"
fi

# 4. The job's status can be polled, and moves on from provisioning.
if [ -z "$JOB_ID" ]; then
	fail 4 "Job status polling" "no job to poll (test 3 failed)"
else
	ok=false
	last=""
	deadline=$((SECONDS + POLL_SECONDS))
	while [ $SECONDS -lt $deadline ]; do
		request GET "/jobs/$JOB_ID"
		if [ "$CODE" != 200 ] || [ "$(field job_id)" != "$JOB_ID" ]; then
			last="GET /jobs/$JOB_ID answered $CODE: $BODY"
			break
		fi
		status=$(field status)
		case "$status" in
		provisioning) last="still provisioning after ${POLL_SECONDS}s" ;;
		running | completed | failed | timeout | cancelled)
			ok=true
			break
			;;
		*)
			last="unknown status \"$status\""
			break
			;;
		esac
		sleep 1
	done
	if $ok; then
		pass 4 "Job status polling"
	else
		fail 4 "Job status polling" "$last"
	fi
	# Leave nothing running behind.
	request POST "/jobs/$JOB_ID/cancel"
fi

echo
echo "========================================"
if [ "$failed" -eq 0 ]; then
	echo "All tests passed! ($passed/4)"
	echo "========================================"
	exit 0
fi
echo "$failed of 4 tests failed ($passed/4 passed)"
echo "========================================"
exit 1
