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

  # Must equal queue.MaxReceiveCount in internal/queue/queue.go: a job whose
  # provisioning message reaches this many deliveries is failed (with the
  # reason) and the message is dead-lettered.
  max_receive_count = 5

  # AWS guidance for SQS event sources: visibility timeout >= 6 x function
  # timeout. 120 s of visibility gives the provisioner 20 s per batch.
  provisioner_timeout_seconds = floor(var.queue_visibility_timeout_seconds / 6)

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

  reaper_env = local.common_env

  # What the worker AMI's /etc/seren-worker.env must contain for this
  # deployment (exported as an output so deploy.sh and operators can check).
  worker_env = {
    SEREN_BACKEND           = "aws"
    AWS_REGION              = var.aws_region
    SEREN_JOBS_TABLE        = aws_dynamodb_table.jobs.name
    SEREN_KMS_KEY_ID        = aws_kms_alias.credentials.name
    SEREN_LOG_GROUP         = aws_cloudwatch_log_group.worker.name
    SEREN_METRICS_NAMESPACE = var.metrics_namespace
  }

  alarm_actions = var.alarm_sns_topic_arn != "" ? [var.alarm_sns_topic_arn] : []
}
