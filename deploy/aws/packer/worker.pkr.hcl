# Worker AMI for postgres-seren-replicator remote jobs.
#
# Debian 12 (bookworm) + PostgreSQL client tools of several majors from the
# PGDG apt repository (the engine picks the newest from
# /usr/lib/postgresql/*/bin, so sources of any supported version can be
# dumped), the replicator binary, the CloudWatch agent shipping
# /var/log/seren-worker.log, and the systemd units that start one worker for
# the job id found in the instance's user data.
#
# Build (deploy.sh does this for you):
#   packer init deploy/aws/packer
#   packer build -var binary_path=deploy/aws/build/postgres-seren-replicator \
#                -var aws_region=us-east-1 -var version=v1.2.3 deploy/aws/packer
#
# The worker's configuration is baked in: /etc/seren-worker.env is written
# from the variables below and must match the Terraform deployment (compare
# with `terraform output worker_environment`).

packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.0"
    }
  }
}

# ---------------------------------------------------------------------------
# Build settings
# ---------------------------------------------------------------------------

variable "aws_region" {
  type        = string
  default     = "us-east-1"
  description = "Region to build the AMI in; must be the deployment's region."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the temporary build instance."
}

variable "binary_path" {
  type        = string
  default     = ""
  description = "linux/amd64 postgres-seren-replicator binary to install (GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build ./cmd/postgres-seren-replicator). Empty: deploy/aws/build/postgres-seren-replicator, where deploy.sh builds it."
}

variable "version" {
  type        = string
  default     = "dev"
  description = "Version of the binary; recorded in the AMI's tags and description."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance (needs internet access). Empty: the default VPC."
}

variable "postgres_majors" {
  type        = list(string)
  default     = ["15", "16", "17", "18"]
  description = "PostgreSQL client majors to install side by side (postgresql-client-N from apt.postgresql.org)."
}

variable "install_ssm_agent" {
  type        = bool
  default     = false
  description = "Install the SSM agent so operators can use Session Manager on a worker (also set worker_enable_ssm_session_manager in Terraform)."
}

variable "verify_cloudwatch_agent_signature" {
  type        = bool
  default     = true
  description = "Check the CloudWatch agent package's GPG signature against AWS's published key fingerprint."
}

# ---------------------------------------------------------------------------
# Worker configuration (-> /etc/seren-worker.env). Must match Terraform.
# ---------------------------------------------------------------------------

variable "project_name" {
  type        = string
  default     = "seren-replication"
  description = "Terraform's project_name: derives the log group and KMS alias names."
}

variable "jobs_table_name" {
  type        = string
  default     = "replication-jobs"
  description = "Terraform's jobs_table_name (SEREN_JOBS_TABLE)."
}

variable "metrics_namespace" {
  type        = string
  default     = "SerenReplication"
  description = "Terraform's metrics_namespace (SEREN_METRICS_NAMESPACE)."
}

variable "deployment" {
  type        = string
  default     = "seren-replication-prod"
  description = "SEREN_DEPLOYMENT of the Terraform deployment (terraform output worker_environment): workers are tagged, counted and reaped by it."
}

variable "allow_networks" {
  type        = list(string)
  default     = []
  description = "Terraform's allow_networks (SEREN_ALLOW_NETWORKS): private networks job URLs may point to."
}

locals {
  timestamp      = regex_replace(timestamp(), "[- TZ:]", "")
  ami_name       = "${var.project_name}-worker-${local.timestamp}"
  log_group_name = "/aws/ec2/${var.project_name}-worker"
  kms_key_id     = "alias/${var.project_name}-credentials"
  binary_path    = var.binary_path != "" ? var.binary_path : "${path.root}/../build/postgres-seren-replicator"
}

# ---------------------------------------------------------------------------
# Source: the official Debian 12 AMI (owner 136693071363 is Debian).
# ---------------------------------------------------------------------------

source "amazon-ebs" "worker" {
  region        = var.aws_region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id != "" ? var.subnet_id : null
  # The AMI's root snapshot is encrypted (the account's default EBS key), so
  # every worker's root volume is too.
  encrypt_boot = true

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"]
    most_recent = true
  }

  ssh_username                              = "admin"
  associate_public_ip_address               = true
  temporary_security_group_source_public_ip = true

  # IMDSv2 only, on the build instance and as the AMI's default.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support = "v2.0"

  ami_name        = local.ami_name
  ami_description = "postgres-seren-replicator worker ${var.version} (Debian 12, PostgreSQL clients ${join("/", var.postgres_majors)})"

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 8
    volume_type           = "gp3"
    iops                  = 3000 # gp3 baseline
    throughput            = 125  # gp3 baseline (MiB/s)
    delete_on_termination = true
  }

  tags = {
    Name                  = local.ami_name
    Project               = var.project_name
    Component             = "worker"
    Version               = var.version
    PostgresClients       = join(",", var.postgres_majors)
    SourceAMI             = "{{ .SourceAMI }}"
    SourceAMIName         = "{{ .SourceAMIName }}"
    BuildTime             = local.timestamp
    SerenJobsTable        = var.jobs_table_name
    SerenMetricsNamespace = var.metrics_namespace
  }
  run_tags = {
    Name    = "packer-${local.ami_name}"
    Project = var.project_name
  }
}

build {
  name    = "seren-worker"
  sources = ["source.amazon-ebs.worker"]

  # Wait for first-boot cloud-init to finish before touching apt.
  provisioner "shell" {
    inline = ["cloud-init status --wait >/dev/null || true"]
  }

  # PostgreSQL client tools from PGDG, then the CloudWatch agent.
  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo -E {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "POSTGRES_MAJORS=${join(" ", var.postgres_majors)}",
      "AWS_REGION=${var.aws_region}",
      "VERIFY_CW_AGENT=${var.verify_cloudwatch_agent_signature}",
      "INSTALL_SSM_AGENT=${var.install_ssm_agent}",
    ]
    script = "${path.root}/scripts/install-packages.sh"
  }

  # The binary and the boot/service files.
  provisioner "file" {
    source      = local.binary_path
    destination = "/tmp/postgres-seren-replicator"
  }
  # Uploaded as /tmp/files (source without a trailing slash).
  provisioner "file" {
    source      = "${path.root}/files"
    destination = "/tmp"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo -E {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "SEREN_VERSION=${var.version}",
      "WORKER_AWS_REGION=${var.aws_region}",
      "WORKER_JOBS_TABLE=${var.jobs_table_name}",
      "WORKER_KMS_KEY_ID=${local.kms_key_id}",
      "WORKER_LOG_GROUP=${local.log_group_name}",
      "WORKER_METRICS_NAMESPACE=${var.metrics_namespace}",
      "WORKER_DEPLOYMENT=${var.deployment}",
      "WORKER_ALLOW_NETWORKS=${join(",", var.allow_networks)}",
    ]
    script = "${path.root}/scripts/install-worker.sh"
  }

  post-processor "manifest" {
    output     = "${path.root}/../build/packer-manifest.json"
    strip_path = true
    custom_data = {
      version = var.version
    }
  }
}
