#!/usr/bin/env bash
# The guide's smoke test location (cd aws && ./test-smoke.sh): runs
# scripts/smoke-test.sh. API_ENDPOINT and API_KEY, when the environment does
# not set them, come from what deploy/aws/deploy.sh saved
# (deploy/aws/.api_endpoint, .api_key) or from files of that name here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for dir in "$here" "$here/../deploy/aws"; do
	if [ -z "${API_ENDPOINT:-}" ] && [ -f "$dir/.api_endpoint" ]; then
		API_ENDPOINT="$(cat "$dir/.api_endpoint")"
		export API_ENDPOINT
	fi
	if [ -z "${API_KEY:-}" ] && [ -f "$dir/.api_key" ]; then
		API_KEY="$(cat "$dir/.api_key")"
		export API_KEY
	fi
done
exec "$here/../scripts/smoke-test.sh" "$@"
