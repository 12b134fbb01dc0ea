# Least-privilege roles, one per component, following the guide's list
# ("Security > IAM Roles"). Every permission beyond the guide's list is marked
# BEYOND THE GUIDE with the reason the code needs it.

locals {
  table_arn = aws_dynamodb_table.jobs.arn
  index_arn = {
    for name in ["owner-created-index", "active-index", "idempotency-index"] :
    name => "${aws_dynamodb_table.jobs.arn}/index/${name}"
  }

  ec2_arn_prefix = "arn:${local.partition}:ec2:${var.aws_region}:${local.account_id}"

  ssm_api_keys_path_arn = "arn:${local.partition}:ssm:${var.aws_region}:${local.account_id}:parameter${local.api_keys_path}"
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# ===========================================================================
# Lambda coordinator (the API handler)
# ===========================================================================
resource "aws_iam_role" "coordinator" {
  name               = local.coordinator_function_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "coordinator" {
  # Guide: DynamoDB PutItem (submit) and GetItem (status).
  # BEYOND THE GUIDE: UpdateItem for POST /jobs/{id}/cancel (a conditional
  # status transition), Query on the indexes for GET /jobs (owner-created),
  # the concurrent-job limit that answers 429 (active) and Idempotency-Key
  # look-ups (idempotency). Without the indexes these would be table scans.
  statement {
    sid       = "JobsTable"
    actions   = ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [local.table_arn]
  }
  statement {
    sid       = "JobsIndexes"
    actions   = ["dynamodb:Query"]
    resources = values(local.index_arn)
  }

  # Guide: SQS SendMessage (the message body is the job id only).
  statement {
    sid       = "EnqueueProvisioning"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.provisioning.arn]
  }

  # Guide: KMS Encrypt. BEYOND THE GUIDE: GenerateDataKey. Credentials are
  # sealed with envelope encryption: KMS returns a fresh data key per job
  # (plaintext + wrapped), the coordinator encrypts the credentials locally
  # with AES-256-GCM and stores only the wrapped key; the job id is the
  # encryption context. Only the worker role may Decrypt.
  statement {
    sid       = "SealCredentials"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.credentials.arn]
  }

  # Guide: SSM GetParameter. BEYOND THE GUIDE: GetParametersByPath on
  # "<api-key>s/" so several keys can be valid at once during a rotation.
  # The parameters use the AWS-managed aws/ssm key, whose key policy lets
  # any principal of the account decrypt through SSM: no kms:Decrypt here.
  statement {
    sid       = "ReadApiKey"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.api_key.arn]
  }
  statement {
    sid       = "ListRotationKeys"
    actions   = ["ssm:GetParametersByPath"]
    resources = [local.ssm_api_keys_path_arn, "${local.ssm_api_keys_path_arn}/*"]
  }

  # BEYOND THE GUIDE: POST /jobs/{id}/cancel of a running job may stop its
  # worker right away (internal/api Config.Canceller) instead of waiting for
  # the worker's next heartbeat or the reaper. Only this deployment's worker
  # instances; the coordinator can already cancel any job in the table.
  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }
  statement {
    sid       = "StopCancelledWorker"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn_prefix}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ManagedBy"
      values   = [local.worker_managed_by]
    }
    condition {
      test     = "ArnEquals"
      variable = "ec2:InstanceProfile"
      values   = [aws_iam_instance_profile.worker.arn]
    }
  }

  # BEYOND THE GUIDE: GET /jobs/{id}/logs reads the worker's log stream.
  statement {
    sid       = "ReadWorkerLogs"
    actions   = ["logs:GetLogEvents", "logs:FilterLogEvents"]
    resources = [aws_cloudwatch_log_group.worker.arn, "${aws_cloudwatch_log_group.worker.arn}:*"]
  }

  # Guide: CloudWatch PutMetricData (JobSubmitted), only in our namespace.
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  # Guide: CreateLogGroup, CreateLogStream, PutLogEvents, on its own group.
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.coordinator.arn, "${aws_cloudwatch_log_group.coordinator.arn}:*"]
  }
}

resource "aws_iam_role_policy" "coordinator" {
  name   = "coordinator"
  role   = aws_iam_role.coordinator.id
  policy = data.aws_iam_policy_document.coordinator.json
}

# ===========================================================================
# Lambda provisioner (SQS consumer that launches workers)
# ===========================================================================
resource "aws_iam_role" "provisioner" {
  name               = local.provisioner_function_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "provisioner" {
  # Guide: DynamoDB GetItem, UpdateItem (record instance id, fail a job).
  # BEYOND THE GUIDE: Query on active-index to count the jobs provisioning
  # or running against max_concurrent_jobs before launching another.
  statement {
    sid       = "JobsTable"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [local.table_arn]
  }
  statement {
    sid       = "CountActiveJobs"
    actions   = ["dynamodb:Query"]
    resources = [local.index_arn["active-index"]]
  }

  # Guide: EC2 RunInstances, scoped: only the worker AMI, only the worker
  # security group, and the instance itself only if it is tagged
  # ManagedBy=seren-replication-system at launch, carries the worker instance
  # profile and requires IMDSv2.
  statement {
    sid       = "RunWorkerImage"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:${var.aws_region}::image/${var.worker_ami_id}"]
  }
  statement {
    sid     = "RunWorkerNetworkAndStorage"
    actions = ["ec2:RunInstances"]
    resources = concat(
      [
        var.worker_subnet_id != "" ? "${local.ec2_arn_prefix}:subnet/${var.worker_subnet_id}" : "${local.ec2_arn_prefix}:subnet/*",
        "${local.ec2_arn_prefix}:security-group/${local.worker_security_group_id}",
        "${local.ec2_arn_prefix}:network-interface/*",
        "${local.ec2_arn_prefix}:volume/*",
      ],
      var.worker_spot ? ["${local.ec2_arn_prefix}:spot-instances-request/*"] : [],
    )
  }
  statement {
    sid       = "RunWorkerInstance"
    actions   = ["ec2:RunInstances"]
    resources = ["${local.ec2_arn_prefix}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/ManagedBy"
      values   = [local.worker_managed_by]
    }
    condition {
      test     = "ArnEquals"
      variable = "ec2:InstanceProfile"
      values   = [aws_iam_instance_profile.worker.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "ec2:MetadataHttpTokens"
      values   = ["required"]
    }
  }

  # Guide: EC2 CreateTags: the Name/JobId/ManagedBy tags sent with
  # RunInstances, and later tag updates on worker instances only.
  statement {
    sid     = "TagAtLaunch"
    actions = ["ec2:CreateTags"]
    resources = [
      "${local.ec2_arn_prefix}:instance/*",
      "${local.ec2_arn_prefix}:volume/*",
      "${local.ec2_arn_prefix}:network-interface/*",
      "${local.ec2_arn_prefix}:spot-instances-request/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }
  statement {
    sid       = "TagWorkers"
    actions   = ["ec2:CreateTags"]
    resources = ["${local.ec2_arn_prefix}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ManagedBy"
      values   = [local.worker_managed_by]
    }
  }

  # Guide: EC2 DescribeInstances (no resource-level permissions exist).
  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }

  # Guide: IAM PassRole, only the worker role and only to EC2.
  statement {
    sid       = "PassWorkerRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.worker.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # Guide: KMS Encrypt.
  statement {
    sid       = "Kms"
    actions   = ["kms:Encrypt"]
    resources = [aws_kms_key.credentials.arn]
  }

  # Guide: SQS ReceiveMessage, DeleteMessage. BEYOND THE GUIDE:
  # GetQueueAttributes (the Lambda event source mapping requires it),
  # ChangeMessageVisibility (a failed launch is put back with a back-off
  # delay) and SendMessage (a job that finds every worker slot taken is
  # re-sent as a new, delayed message: returning the old one would count a
  # delivery, and enough waiting would dead-letter a job that never failed;
  # internal/awslambda/provisioner.go).
  statement {
    sid = "ConsumeProvisioning"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
      "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.provisioning.arn]
  }

  # Guide: CloudWatch (JobProvisioned, ProvisioningDuration, ProvisioningFailed).
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.provisioner.arn, "${aws_cloudwatch_log_group.provisioner.arn}:*"]
  }
}

resource "aws_iam_role_policy" "provisioner" {
  name   = "provisioner"
  role   = aws_iam_role.provisioner.id
  policy = data.aws_iam_policy_document.provisioner.json
}

# Spot launches need this account-wide service-linked role. Create it here
# only when asked: it exists at most once per account.
resource "aws_iam_service_linked_role" "spot" {
  count            = var.worker_spot && var.create_spot_service_linked_role ? 1 : 0
  aws_service_name = "spot.amazonaws.com"
}

# ===========================================================================
# Lambda reaper (every 5 minutes: orphan instances, stale heartbeats)
# ===========================================================================
# Not in the guide: the guide has no answer to a worker that dies without
# updating its job, or an instance that outlives its job. Its permissions
# are the smallest set for that job.
resource "aws_iam_role" "reaper" {
  name               = local.reaper_function_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "reaper" {
  # Read a job, fail it with a conditional update.
  statement {
    sid       = "JobsTable"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [local.table_arn]
  }
  # Active jobs (provisioning/running) whose heartbeat may be stale.
  statement {
    sid       = "ActiveJobs"
    actions   = ["dynamodb:Query"]
    resources = [local.index_arn["active-index"]]
  }
  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }
  # Only worker instances of THIS deployment (tag and instance profile), so
  # a reaper of another environment in the same account cannot touch them.
  statement {
    sid       = "TerminateWorkers"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn_prefix}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ManagedBy"
      values   = [local.worker_managed_by]
    }
    condition {
      test     = "ArnEquals"
      variable = "ec2:InstanceProfile"
      values   = [aws_iam_instance_profile.worker.arn]
    }
  }
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [aws_cloudwatch_log_group.reaper.arn, "${aws_cloudwatch_log_group.reaper.arn}:*"]
  }
}

resource "aws_iam_role_policy" "reaper" {
  name   = "reaper"
  role   = aws_iam_role.reaper.id
  policy = data.aws_iam_policy_document.reaper.json
}

# ===========================================================================
# EC2 worker (instance profile)
# ===========================================================================
resource "aws_iam_role" "worker" {
  name               = "${local.name}-worker"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_instance_profile" "worker" {
  name = "${local.name}-worker"
  role = aws_iam_role.worker.name
}

data "aws_iam_policy_document" "worker" {
  # Guide: DynamoDB GetItem (fetch the job), UpdateItem (status, progress,
  # heartbeat).
  statement {
    sid       = "JobsTable"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [local.table_arn]
  }

  # Guide: KMS Decrypt - the only role that can open job credentials.
  statement {
    sid       = "OpenCredentials"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.credentials.arn]
  }

  # Guide: CloudWatch PutMetricData (JobCompleted, JobFailed, JobDuration).
  statement {
    sid       = "Metrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  # Guide: PutLogEvents. BEYOND THE GUIDE, worker group only:
  # CreateLogStream (the stream is the instance id and does not exist before
  # the worker starts); FilterLogEvents (a job resumed on a new instance
  # continues its log's sequence numbers after the lines earlier workers
  # wrote, internal/joblog/cwlog); DescribeLogStreams (the CloudWatch agent).
  statement {
    sid = "WorkerLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:FilterLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [aws_cloudwatch_log_group.worker.arn, "${aws_cloudwatch_log_group.worker.arn}:*"]
  }

  # Guide: EC2 DescribeInstances.
  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }

  # BEYOND THE GUIDE: TerminateInstances. The guide says the worker
  # "self-terminates when done"; a shutdown from inside the instance
  # (InstanceInitiatedShutdownBehavior=terminate) is only the fallback, the
  # worker calls TerminateInstances on itself. Limited to instances tagged
  # ManagedBy=seren-replication-system that carry this worker profile.
  statement {
    sid       = "SelfTerminate"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.ec2_arn_prefix}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/ManagedBy"
      values   = [local.worker_managed_by]
    }
    condition {
      test     = "ArnEquals"
      variable = "ec2:InstanceProfile"
      values   = [aws_iam_instance_profile.worker.arn]
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

resource "aws_iam_role_policy_attachment" "worker_ssm" {
  count      = var.worker_enable_ssm_session_manager ? 1 : 0
  role       = aws_iam_role.worker.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
