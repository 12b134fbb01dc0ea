# Shared names and facts. Every name the Go code reads from its environment is
# defined once here and handed to the Lambdas (and, for the worker, must match
# what packer/worker.pkr.hcl wrote into /etc/seren-worker.env).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  name       = var.project_name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Names the guide uses, derived from project_name.
  coordinator_function_name = "${local.name}-coordinator"
  provisioner_function_name = "${local.name}-provisioner"
  reaper_function_name      = "${local.name}-reaper"
  worker_log_group_name     = "/aws/ec2/${local.name}-worker"
  api_key_parameter_name    = "/${local.name}/api-key"
  # Extra keys for rotation live under this path; the coordinator reads the
  # parameter above and every parameter under "<api-key parameter>s/".
  api_keys_path  = "${local.api_key_parameter_name}s"
  kms_alias_name = "alias/${local.name}-credentials"

  # Tag value the EC2 launcher puts on every worker instance (the guide's
  # cleanup commands filter on it). A constant of the Go code, not a setting.
  worker_managed_by = "seren-replication-system"

  # The deployment's identity in a shared account: every worker is tagged
  # SerenDeployment=<it> (SEREN_DEPLOYMENT), and listing, counting, reaping
  # and every EC2 permission are scoped by it. project_name is already
  # unique per account (resource names derive from it); the environment is
  # appended unless the project name ends with it (seren-replication-dev).
  deployment = endswith(var.project_name, "-${var.environment}") ? var.project_name : "${var.project_name}-${var.environment}"

  # Must equal queue.MaxReceiveCount in internal/queue/queue.go: a job whose
  # provisioning message reaches this many deliveries is failed (with the
  # reason) and the message is dead-lettered.
  max_receive_count = 5

  # Provisioner timing, sized together (internal/awslambda/provisioner.go):
  # one message may need a full worst-case launch, four RunInstances
  # attempts with 1+2+4 s of back-off, each possibly spot then on-demand:
  # about 30 s; 40 s is budgeted. The function gets that per message of a
  # batch plus 10 s, and the queue's visibility is six times the function's
  # timeout (AWS guidance for SQS event sources), so a message is never
  # received again while a batch holding it still runs. Messages the
  # function cannot reach in time are re-sent as new messages (not
  # returned: a return counts a delivery), and a message that is
  # dead-lettered anyway fails its job with the reason (the provisioner
  # also consumes the dead-letter queue).
  launch_budget_seconds            = 40
  provisioner_timeout_seconds      = var.provisioner_batch_size * local.launch_budget_seconds + 10
  queue_visibility_timeout_seconds = 6 * local.provisioner_timeout_seconds

  lambda_api_zip         = var.lambda_api_zip != "" ? var.lambda_api_zip : "${path.module}/../build/lambda-api.zip"
  lambda_provisioner_zip = var.lambda_provisioner_zip != "" ? var.lambda_provisioner_zip : "${path.module}/../build/lambda-provisioner.zip"
  lambda_reaper_zip      = var.lambda_reaper_zip != "" ? var.lambda_reaper_zip : "${path.module}/../build/lambda-reaper.zip"

  worker_security_group_id = var.worker_security_group_id != "" ? var.worker_security_group_id : aws_security_group.worker[0].id

  # Environment common to all three Lambdas. AWS_REGION is set by the Lambda
  # runtime itself (it is a reserved variable and may not be set here).
  common_env = {
    SEREN_BACKEND           = "aws"
    SEREN_JOBS_TABLE        = aws_dynamodb_table.jobs.name
    SEREN_QUEUE_URL         = aws_sqs_queue.provisioning.url
    SEREN_METRICS_NAMESPACE = var.metrics_namespace
    SEREN_LOG_GROUP         = aws_cloudwatch_log_group.worker.name
    SEREN_DEPLOYMENT        = local.deployment
  }

  coordinator_env = merge(local.common_env, {
    SEREN_KMS_KEY_ID          = aws_kms_alias.credentials.name
    SEREN_API_KEY_PARAM       = aws_ssm_parameter.api_key.name
    SEREN_MAX_CONCURRENT_JOBS = tostring(var.max_concurrent_jobs)
  })

  provisioner_env = merge(
    local.common_env,
    {
      SEREN_KMS_KEY_ID               = aws_kms_alias.credentials.name
      SEREN_MAX_CONCURRENT_JOBS      = tostring(var.max_concurrent_jobs)
      SEREN_WORKER_AMI               = var.worker_ami_id
      SEREN_WORKER_SECURITY_GROUP_ID = local.worker_security_group_id
      SEREN_WORKER_INSTANCE_PROFILE  = aws_iam_instance_profile.worker.name
      SEREN_WORKER_SPOT              = tostring(var.worker_spot)
    },
    # Optional settings are left out entirely rather than set to "".
    var.worker_subnet_id != "" ? { SEREN_WORKER_SUBNET_ID = var.worker_subnet_id } : {},
    var.worker_instance_type != "" ? { SEREN_WORKER_INSTANCE_TYPE = var.worker_instance_type } : {},
  )

  reaper_env = merge(local.common_env, {
    SEREN_MAX_CONCURRENT_JOBS = tostring(var.max_concurrent_jobs)
  })

  # What the worker AMI's /etc/seren-worker.env must contain for this
  # deployment (exported as an output so deploy.sh and operators can check).
  worker_env = {
    SEREN_BACKEND           = "aws"
    AWS_REGION              = var.aws_region
    SEREN_JOBS_TABLE        = aws_dynamodb_table.jobs.name
    SEREN_KMS_KEY_ID        = aws_kms_alias.credentials.name
    SEREN_LOG_GROUP         = aws_cloudwatch_log_group.worker.name
    SEREN_METRICS_NAMESPACE = var.metrics_namespace
    SEREN_DEPLOYMENT        = local.deployment
    # The job-URL network policy: the networks workers may reach besides
    # public addresses (private ranges and the metadata service are refused
    # unless listed here).
    SEREN_ALLOW_NETWORKS = join(",", var.allow_networks)
  }

  alarm_actions = var.alarm_sns_topic_arn != "" ? [var.alarm_sns_topic_arn] : []
}
