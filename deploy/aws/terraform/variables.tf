# ---------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------

variable "project_name" {
  description = "Prefix of every resource name (Lambda functions, queues, roles, log groups, KMS alias, SSM path). The guide's names come from the default \"seren-replication\"."
  type        = string
  default     = "seren-replication"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,39}$", var.project_name))
    error_message = "project_name must be 3-40 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment environment; used in tags and alarm names."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into. Workers, the AMI and the deployment must be in the same region."
  type        = string
  default     = "us-east-1"
}

variable "jobs_table_name" {
  description = "DynamoDB table holding the jobs (SEREN_JOBS_TABLE). The guide's name is replication-jobs; give other environments in the same account a different name."
  type        = string
  default     = "replication-jobs"
}

variable "metrics_namespace" {
  description = "CloudWatch namespace for the service's custom metrics (SEREN_METRICS_NAMESPACE). Must match the value baked into the worker AMI."
  type        = string
  default     = "SerenReplication"
}

variable "tags" {
  description = "Extra tags for every resource Terraform creates."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------

variable "worker_ami_id" {
  description = "Worker AMI built by packer/worker.pkr.hcl (SEREN_WORKER_AMI)."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.worker_ami_id))
    error_message = "worker_ami_id must look like ami-0123456789abcdef0."
  }
}

variable "worker_instance_type" {
  description = "Optional override of the size bands (SEREN_WORKER_INSTANCE_TYPE). Empty: the provisioner picks t3.medium / c5.large / c5.2xlarge / c5.4xlarge from the job's estimated_size_bytes."
  type        = string
  default     = ""
}

variable "worker_spot" {
  description = "Launch workers as spot instances, falling back to on-demand when spot capacity is refused (SEREN_WORKER_SPOT)."
  type        = bool
  default     = false
}

variable "create_spot_service_linked_role" {
  description = "Create the account-wide AWSServiceRoleForEC2Spot role that spot launches need. Set true only if it does not exist yet in the account (creating it twice fails)."
  type        = bool
  default     = false
}

variable "max_concurrent_jobs" {
  description = "Jobs allowed in provisioning or running at once (SEREN_MAX_CONCURRENT_JOBS). Over the limit, submissions get 429 and queued jobs wait in SQS."
  type        = number
  default     = 10

  validation {
    condition     = var.max_concurrent_jobs >= 1 && floor(var.max_concurrent_jobs) == var.max_concurrent_jobs
    error_message = "max_concurrent_jobs must be a positive whole number."
  }
}

variable "worker_enable_ssm_session_manager" {
  description = "Attach AmazonSSMManagedInstanceCore to the worker role so operators can open a Session Manager shell on a running worker (the AMI must be built with install_ssm_agent=true). Off by default: least privilege."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC for the worker security group. Empty: the region's default VPC."
  type        = string
  default     = ""
}

variable "worker_subnet_id" {
  description = "Subnet for workers (SEREN_WORKER_SUBNET_ID). Empty: EC2 picks a default subnet of the default VPC. A custom subnet must give workers a route to the internet (public IP or NAT): they reach the customer's databases and the AWS APIs."
  type        = string
  default     = ""
}

variable "worker_security_group_id" {
  description = "Use this existing security group for workers instead of creating one (SEREN_WORKER_SECURITY_GROUP_ID)."
  type        = string
  default     = ""
}

variable "worker_postgres_ports" {
  description = "TCP ports workers may connect to for PostgreSQL, besides 443 for the AWS APIs."
  type        = list(number)
  default     = [5432]
}

variable "worker_egress_cidr_blocks" {
  description = "IPv4 destinations workers may reach on 443 and the PostgreSQL ports."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "worker_egress_ipv6_cidr_blocks" {
  description = "IPv6 destinations workers may reach on 443 and the PostgreSQL ports."
  type        = list(string)
  default     = ["::/0"]
}

# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------

variable "api_key" {
  description = "Initial API key clients send in x-api-key. Stored in SSM as a SecureString (and, like every Terraform value, in the state: keep the state private). Generate with: openssl rand -hex 32"
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.api_key) >= 32
    error_message = "api_key must be at least 32 characters (openssl rand -hex 32)."
  }
}

variable "api_throttle_rate" {
  description = "Steady-state request rate limit of the API as a whole (requests per second). HTTP API stages throttle per route, so each of the API's routes gets an equal share (the shares add up to this); the coordinator's reserved concurrency also caps the whole API. Requests over it get 429 from API Gateway."
  type        = number
  default     = 1000
}

variable "api_throttle_burst" {
  description = "Burst limit of the API as a whole (requests), shared among the routes like api_throttle_rate."
  type        = number
  default     = 2000
}

variable "custom_domain_name" {
  description = "Optional custom domain for the API, e.g. api.seren.cloud. Needs certificate_arn (checked at plan time)."
  type        = string
  default     = ""
}

variable "certificate_arn" {
  description = "ACM certificate (in aws_region) covering custom_domain_name."
  type        = string
  default     = ""
}

variable "route53_zone_id" {
  description = "Optional Route 53 hosted zone in which to create the alias record for custom_domain_name. Empty: create the DNS record yourself (see the custom_domain_target output)."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------
# Queue, Lambda, storage
# ---------------------------------------------------------------------------

variable "provisioner_batch_size" {
  description = "Provisioning messages per provisioner invocation. The provisioner's timeout is sized from it (a full worst-case launch per message: four RunInstances attempts with back-off, each possibly spot then on-demand) and the queue's visibility timeout is six times that (AWS guidance for SQS event sources), so a batch never outlives its messages' visibility."
  type        = number
  default     = 2

  validation {
    condition     = var.provisioner_batch_size >= 1 && var.provisioner_batch_size <= 10
    error_message = "provisioner_batch_size must be between 1 and 10."
  }
}

variable "coordinator_memory_mb" {
  description = "Memory of the coordinator (API) Lambda."
  type        = number
  default     = 128
}

variable "provisioner_memory_mb" {
  description = "Memory of the provisioner Lambda."
  type        = number
  default     = 256
}

variable "reaper_memory_mb" {
  description = "Memory of the reaper Lambda."
  type        = number
  default     = 128
}

variable "lambda_api_zip" {
  description = "Path of the coordinator Lambda zip (bootstrap built from ./cmd/lambda-api). Empty: ../build/lambda-api.zip, as deploy.sh writes it."
  type        = string
  default     = ""
}

variable "lambda_provisioner_zip" {
  description = "Path of the provisioner Lambda zip (./cmd/lambda-provisioner). Empty: ../build/lambda-provisioner.zip."
  type        = string
  default     = ""
}

variable "lambda_reaper_zip" {
  description = "Path of the reaper Lambda zip (./cmd/lambda-reaper). Empty: ../build/lambda-reaper.zip."
  type        = string
  default     = ""
}

variable "dynamodb_deletion_protection" {
  description = "Refuse to delete the jobs table (terraform destroy fails until this is set false and applied)."
  type        = bool
  default     = true
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the credentials KMS key is deleted after terraform destroy (7-30 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# ---------------------------------------------------------------------------
# Logs and alarms
# ---------------------------------------------------------------------------

variable "log_retention_days" {
  description = "Retention of every log group this module creates (Lambda, worker, API access log)."
  type        = number
  default     = 7

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "alarm_sns_topic_arn" {
  description = "Optional SNS topic notified when an alarm fires and when it recovers."
  type        = string
  default     = ""
}

variable "api_5xx_alarm_threshold" {
  description = "Alarm when the API returns more than this many 5xx responses in 5 minutes."
  type        = number
  default     = 5
}

variable "auth_failure_alarm_threshold" {
  description = "Alarm when the API answers more than this many 401s in 5 minutes (guide: monitor failed auth attempts)."
  type        = number
  default     = 50
}

# ---------------------------------------------------------------------------
# Worker network policy
# ---------------------------------------------------------------------------

variable "allow_networks" {
  description = "Networks (CIDR) a job's source/target URL may point to besides public addresses; handed to workers as SEREN_ALLOW_NETWORKS (bake it into the AMI: Packer variable allow_networks). Empty (the default): workers refuse private ranges (the VPC's included), loopback, link-local and the instance metadata service, so a job URL cannot reach into the account's network. List e.g. a peered VPC's database subnet to allow it."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for n in var.allow_networks : can(cidrnetmask(n)) || can(cidrhost(n, 0))])
    error_message = "allow_networks must be CIDR blocks, e.g. 10.20.0.0/16."
  }
}

variable "coordinator_reserved_concurrency" {
  description = "Reserved concurrency of the coordinator (API) Lambda: an upper bound on requests in flight for the API as a whole, whatever the per-route throttles. -1: unreserved."
  type        = number
  default     = 50
}
