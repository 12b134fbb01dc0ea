# Least-privilege roles, one per component. Each role's policy is one JSON
# template in policies/<role>.json.tpl: Terraform renders it here, and the Go
# tests (internal/awslambda/iam_test.go) read the very same files, check
# that every AWS operation the component's code can call is allowed and
# nothing else is, and (iam_enforced_test.go) run the components against
# moto with IAM enforcement on and credentials limited to exactly that
# policy (moto checks actions, not resources or conditions). Every permission beyond the
# guide's list is explained in deploy/aws/README.md ("IAM").
#
# Every EC2 condition is scoped to this deployment: the SerenDeployment tag
# (local.deployment, also handed to every component as SEREN_DEPLOYMENT)
# and the worker instance profile, so two environments in one account never
# launch, count, reap or terminate each other's workers.

locals {
  table_arn      = aws_dynamodb_table.jobs.arn
  ec2_arn_prefix = "arn:${local.partition}:ec2:${var.aws_region}:${local.account_id}"

  ssm_api_keys_path_arn = "arn:${local.partition}:ssm:${var.aws_region}:${local.account_id}:parameter${local.api_keys_path}"

  # The values every template may use (a template uses a subset).
  iam_common_vars = {
    table_arn            = local.table_arn
    queue_arn            = aws_sqs_queue.provisioning.arn
    dlq_arn              = aws_sqs_queue.provisioning_dlq.arn
    kms_key_arn          = aws_kms_key.credentials.arn
    api_key_param_arn    = aws_ssm_parameter.api_key.arn
    api_keys_path_arn    = local.ssm_api_keys_path_arn
    ec2_arn_prefix       = local.ec2_arn_prefix
    partition            = local.partition
    region               = var.aws_region
    worker_ami_id        = var.worker_ami_id
    worker_profile_arn   = aws_iam_instance_profile.worker.arn
    worker_role_arn      = aws_iam_role.worker.arn
    managed_by           = local.worker_managed_by
    deployment           = local.deployment
    metrics_namespace    = var.metrics_namespace
    worker_log_group_arn = aws_cloudwatch_log_group.worker.arn
    run_network_resources = jsonencode(concat(
      [
        var.worker_subnet_id != "" ? "${local.ec2_arn_prefix}:subnet/${var.worker_subnet_id}" : "${local.ec2_arn_prefix}:subnet/*",
        "${local.ec2_arn_prefix}:security-group/${local.worker_security_group_id}",
        "${local.ec2_arn_prefix}:network-interface/*",
        "${local.ec2_arn_prefix}:volume/*",
      ],
      var.worker_spot ? ["${local.ec2_arn_prefix}:spot-instances-request/*"] : [],
    ))
    tag_at_launch_resources = jsonencode(concat(
      [
        "${local.ec2_arn_prefix}:instance/*",
        "${local.ec2_arn_prefix}:volume/*",
        "${local.ec2_arn_prefix}:network-interface/*",
      ],
      var.worker_spot ? ["${local.ec2_arn_prefix}:spot-instances-request/*"] : [],
    ))
  }

  iam_own_log_group = {
    coordinator = aws_cloudwatch_log_group.coordinator.arn
    provisioner = aws_cloudwatch_log_group.provisioner.arn
    reaper      = aws_cloudwatch_log_group.reaper.arn
    worker      = aws_cloudwatch_log_group.worker.arn
  }

  iam_policies = {
    for role in ["coordinator", "provisioner", "reaper", "worker"] :
    role => templatefile("${path.module}/policies/${role}.json.tpl",
    merge(local.iam_common_vars, { own_log_group_arn = local.iam_own_log_group[role] }))
  }
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

resource "aws_iam_role_policy" "coordinator" {
  name   = "coordinator"
  role   = aws_iam_role.coordinator.id
  policy = local.iam_policies["coordinator"]
}

# ===========================================================================
# Lambda provisioner (SQS consumer that launches workers)
# ===========================================================================
resource "aws_iam_role" "provisioner" {
  name               = local.provisioner_function_name
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "provisioner" {
  name   = "provisioner"
  role   = aws_iam_role.provisioner.id
  policy = local.iam_policies["provisioner"]
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

resource "aws_iam_role_policy" "reaper" {
  name   = "reaper"
  role   = aws_iam_role.reaper.id
  policy = local.iam_policies["reaper"]
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

resource "aws_iam_role_policy" "worker" {
  name   = "worker"
  role   = aws_iam_role.worker.id
  policy = local.iam_policies["worker"]
}

resource "aws_iam_role_policy_attachment" "worker_ssm" {
  count      = var.worker_enable_ssm_session_manager ? 1 : 0
  role       = aws_iam_role.worker.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
