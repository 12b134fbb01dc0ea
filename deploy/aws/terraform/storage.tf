# Jobs table, provisioning queue + dead-letter queue, credentials key, API key.

# ---------------------------------------------------------------------------
# DynamoDB: one item per job, keyed by job_id.
# ---------------------------------------------------------------------------
resource "aws_dynamodb_table" "jobs" {
  name         = var.jobs_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "job_id"

  attribute {
    name = "job_id"
    type = "S"
  }
  attribute {
    name = "owner"
    type = "S"
  }
  attribute {
    name = "created_at"
    type = "S"
  }
  attribute {
    name = "active"
    type = "S"
  }

  # GET /jobs: a key's own jobs, newest first, without a scan.
  global_secondary_index {
    name            = "owner-created-index"
    hash_key        = "owner"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  # Sparse: `active` = "1" only while a job is provisioning or running, so
  # this index holds exactly the jobs that count against max_concurrent_jobs
  # and the ones the reaper checks for a stale heartbeat.
  global_secondary_index {
    name            = "active-index"
    hash_key        = "active"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  # No index on Idempotency-Key: a key's uniqueness rests on a conditional
  # write of its own item, not on an index (internal/jobstore/dynamostore).

  # Job records expire after 30 days (the code sets expires_at, epoch
  # seconds). DynamoDB deletes expired items lazily, so reads filter too.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  # Encrypted at rest with the AWS-owned key (the default, no block needed).
  # Credentials are additionally sealed with the KMS key below before the
  # coordinator writes them, so only the worker can read them.

  deletion_protection_enabled = var.dynamodb_deletion_protection
}

# ---------------------------------------------------------------------------
# SQS: provisioning requests (message body = job id only).
# ---------------------------------------------------------------------------
resource "aws_sqs_queue" "provisioning_dlq" {
  name                      = "${local.name}-provisioning-dlq"
  message_retention_seconds = 1209600 # 14 days: time to inspect and redrive
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "provisioning" {
  name                       = "${local.name}-provisioning"
  visibility_timeout_seconds = local.queue_visibility_timeout_seconds
  message_retention_seconds  = 345600 # 4 days
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.provisioning_dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "provisioning_dlq" {
  queue_url = aws_sqs_queue.provisioning_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.provisioning.arn]
  })
}

# ---------------------------------------------------------------------------
# KMS: wraps the per-job data keys that seal database credentials.
# ---------------------------------------------------------------------------
resource "aws_kms_key" "credentials" {
  description             = "${local.name}: envelope encryption of replication job credentials"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  # No explicit key policy: the default policy delegates to IAM, and the
  # role policies in iam.tf grant each role only the operations it needs.
}

resource "aws_kms_alias" "credentials" {
  name          = local.kms_alias_name
  target_key_id = aws_kms_key.credentials.key_id
}

# ---------------------------------------------------------------------------
# SSM: the API key clients send in x-api-key.
# ---------------------------------------------------------------------------
resource "aws_ssm_parameter" "api_key" {
  name        = local.api_key_parameter_name
  description = "API key for the ${local.name} job API (x-api-key). More keys for rotation: ${local.api_keys_path}/<name>."
  type        = "SecureString"
  # Encrypted with the AWS-managed aws/ssm key: the coordinator needs no KMS
  # permission of its own to read it.
  value = var.api_key
}
