#!/bin/bash
# Packer provisioner (runs as root on the Debian 12 build instance):
# PostgreSQL client tools of several majors from PGDG, the CloudWatch agent,
# optionally the SSM agent. Environment: POSTGRES_MAJORS, AWS_REGION,
# VERIFY_CW_AGENT, INSTALL_SSM_AGENT.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
: "${POSTGRES_MAJORS:?}" "${AWS_REGION:?}"

echo "=== Base packages"
apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates curl gnupg postgresql-common

echo "=== PostgreSQL clients ${POSTGRES_MAJORS} from apt.postgresql.org"
# Debian's own postgresql-common ships the PGDG signing key and this setup
# script, so the repository key comes from a Debian-signed package.
/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y
apt-get update -q
pkgs=()
for m in ${POSTGRES_MAJORS}; do
	pkgs+=("postgresql-client-${m}")
done
apt-get install -y -q --no-install-recommends "${pkgs[@]}"
for m in ${POSTGRES_MAJORS}; do
	for tool in pg_dump pg_dumpall pg_restore psql; do
		"/usr/lib/postgresql/${m}/bin/${tool}" --version
	done
done
# The wrappers on PATH pick the newest installed major when no local
# cluster exists; the engine itself searches /usr/lib/postgresql/*/bin.
pg_dump --version

echo "=== CloudWatch agent"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base="https://amazoncloudwatch-agent.s3.amazonaws.com"
curl -fsSL --retry 3 -o "$tmp/amazon-cloudwatch-agent.deb" "$base/debian/amd64/latest/amazon-cloudwatch-agent.deb"
if [ "${VERIFY_CW_AGENT:-true}" = "true" ]; then
	# AWS's published fingerprint of the agent's signing key.
	want="937616F3450B7D806CBD9725D58167303B789C72"
	curl -fsSL --retry 3 -o "$tmp/amazon-cloudwatch-agent.deb.sig" "$base/debian/amd64/latest/amazon-cloudwatch-agent.deb.sig"
	curl -fsSL --retry 3 -o "$tmp/amazon-cloudwatch-agent.gpg" "$base/assets/amazon-cloudwatch-agent.gpg"
	export GNUPGHOME="$tmp/gnupg"
	install -d -m 0700 "$GNUPGHOME"
	gpg --batch --quiet --import "$tmp/amazon-cloudwatch-agent.gpg"
	if ! gpg --batch --status-fd 1 --verify "$tmp/amazon-cloudwatch-agent.deb.sig" "$tmp/amazon-cloudwatch-agent.deb" 2>/dev/null |
		awk -v want="$want" '$2 == "VALIDSIG" { for (i = 3; i <= NF; i++) if ($i == want) ok = 1 } END { exit !ok }'; then
		echo "ERROR: the CloudWatch agent package is not signed by key $want." >&2
		echo "Check AWS's current key (docs: 'Verify the signature of the CloudWatch agent package'), or build with -var verify_cloudwatch_agent_signature=false." >&2
		exit 1
	fi
	echo "CloudWatch agent signature OK ($want)"
fi
dpkg -i "$tmp/amazon-cloudwatch-agent.deb"

if [ "${INSTALL_SSM_AGENT:-false}" = "true" ]; then
	echo "=== SSM agent"
	curl -fsSL --retry 3 -o "$tmp/amazon-ssm-agent.deb" \
		"https://s3.${AWS_REGION}.amazonaws.com/amazon-ssm-${AWS_REGION}/latest/debian_amd64/amazon-ssm-agent.deb"
	dpkg -i "$tmp/amazon-ssm-agent.deb"
	systemctl enable amazon-ssm-agent
fi

echo "=== Single-purpose instance: no background apt runs"
# Workers live for one job and their security group allows only 443 and
# PostgreSQL egress: periodic apt runs would only fail or waste the job's time.
systemctl disable apt-daily.timer apt-daily-upgrade.timer || true
systemctl mask unattended-upgrades.service || true
