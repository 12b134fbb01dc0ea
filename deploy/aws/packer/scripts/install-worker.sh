#!/bin/bash
# Packer provisioner (runs as root): the replicator binary, the worker's
# configuration, the boot and worker systemd units, the CloudWatch agent
# configuration; then cleans the image.
# Environment: SEREN_VERSION, WORKER_AWS_REGION, WORKER_JOBS_TABLE,
# WORKER_KMS_KEY_ID, WORKER_LOG_GROUP, WORKER_METRICS_NAMESPACE.
set -euo pipefail

files=/tmp/files

# Values end up in an EnvironmentFile and a JSON file: refuse anything that
# could break either.
for v in WORKER_AWS_REGION WORKER_JOBS_TABLE WORKER_KMS_KEY_ID WORKER_LOG_GROUP WORKER_METRICS_NAMESPACE; do
	val="${!v:-}"
	if [ -z "$val" ] || ! [[ "$val" =~ ^[A-Za-z0-9/._:-]+$ ]]; then
		echo "ERROR: $v='$val' is empty or has characters outside [A-Za-z0-9/._:-]" >&2
		exit 1
	fi
done

echo "=== Binary"
install -m 0755 /tmp/postgres-seren-replicator /usr/local/bin/postgres-seren-replicator
/usr/local/bin/postgres-seren-replicator version

echo "=== Worker user and files"
id seren-worker >/dev/null 2>&1 ||
	useradd --system --home-dir /var/lib/seren-worker --no-create-home --shell /usr/sbin/nologin seren-worker
install -m 0755 "$files/seren-worker-boot" /usr/local/bin/seren-worker-boot
install -d -m 0755 /usr/local/libexec
install -m 0755 "$files/seren-worker-stop" /usr/local/libexec/seren-worker-stop
install -m 0644 "$files/seren-worker.service" /etc/systemd/system/seren-worker.service
install -m 0644 "$files/seren-worker-boot.service" /etc/systemd/system/seren-worker-boot.service

cat >/etc/seren-worker.env <<ENV
# Written at AMI build time by deploy/aws/packer/worker.pkr.hcl.
# Must match the Terraform deployment: terraform output worker_environment
SEREN_BACKEND=aws
AWS_REGION=${WORKER_AWS_REGION}
SEREN_JOBS_TABLE=${WORKER_JOBS_TABLE}
SEREN_KMS_KEY_ID=${WORKER_KMS_KEY_ID}
SEREN_LOG_GROUP=${WORKER_LOG_GROUP}
SEREN_METRICS_NAMESPACE=${WORKER_METRICS_NAMESPACE}
SEREN_DEPLOYMENT=${WORKER_DEPLOYMENT}
SEREN_ALLOW_NETWORKS=${WORKER_ALLOW_NETWORKS:-}
SEREN_WORKER_VERSION=${SEREN_VERSION:-dev}
ENV
chmod 0644 /etc/seren-worker.env

echo "=== CloudWatch agent configuration"
cwa=/opt/aws/amazon-cloudwatch-agent
cat >"$cwa/etc/seren-worker-agent.json" <<JSON
{
  "agent": {
    "region": "${WORKER_AWS_REGION}"
  },
  "logs": {
    "force_flush_interval": 5,
    "logs_collected": {
      "files": {
        "collect_list": [
          {
            "file_path": "/var/log/seren-worker.log",
            "log_group_name": "${WORKER_LOG_GROUP}",
            "log_stream_name": "{instance_id}/system",
            "timezone": "UTC"
          }
        ]
      }
    }
  }
}
JSON
# Translate the configuration now (without starting the agent: the build
# instance has no role); the agent starts with it on every worker boot.
"$cwa/bin/amazon-cloudwatch-agent-ctl" -a fetch-config -m ec2 -c "file:$cwa/etc/seren-worker-agent.json"
systemctl enable amazon-cloudwatch-agent.service

echo "=== Enable the boot unit"
systemctl daemon-reload
systemctl enable seren-worker-boot.service
# seren-worker.service has no [Install] section: only seren-worker-boot starts it.

echo "=== Clean the image"
systemctl stop amazon-cloudwatch-agent.service 2>/dev/null || true
rm -rf "$cwa"/logs/* "$cwa"/logs/state 2>/dev/null || true
rm -f /var/log/seren-worker.log
rm -rf "$files" /tmp/postgres-seren-replicator
apt-get clean
rm -rf /var/lib/apt/lists/*
cloud-init clean --logs
