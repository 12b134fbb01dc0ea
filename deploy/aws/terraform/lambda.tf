# The three Lambda functions. Each is a Go `bootstrap` for the
# provided.al2023 runtime, built by deploy.sh:
#   GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/<name>
# and zipped to ../build/<name>.zip. A changed zip changes source_code_hash,
# so `terraform apply` redeploys exactly the functions whose code changed.
# A missing zip is tolerated only so that `terraform destroy` works from a
# checkout without build outputs; creating a function without it fails.

# ---------------------------------------------------------------------------
# Coordinator: the API handler (the same handler `serve` uses) behind the
# HTTP API.
# ---------------------------------------------------------------------------
resource "aws_lambda_function" "coordinator" {
  function_name    = local.coordinator_function_name
  description      = "Job API: submit, status, list, logs, cancel"
  role             = aws_iam_role.coordinator.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = ["x86_64"]
  filename         = local.lambda_api_zip
  source_code_hash = fileexists(local.lambda_api_zip) ? filebase64sha256(local.lambda_api_zip) : null
  memory_size      = var.coordinator_memory_mb
  # Caps the API as a whole (requests in flight), see api_throttle_rate.
  reserved_concurrent_executions = var.coordinator_reserved_concurrency
  # Most requests are a few DynamoDB/KMS/SQS calls. GET /jobs/{id}/logs
  # ?follow=true holds the request open until the handler's FollowTimeout,
  # which must stay below this; API Gateway gives up after 30 s anyway.
  timeout = 29

  environment {
    variables = local.coordinator_env
  }

  depends_on = [aws_cloudwatch_log_group.coordinator, aws_iam_role_policy.coordinator]
}

# ---------------------------------------------------------------------------
# Provisioner: consumes the provisioning queue, launches one EC2 worker per
# job, reports failed messages individually.
# ---------------------------------------------------------------------------
resource "aws_lambda_function" "provisioner" {
  function_name    = local.provisioner_function_name
  description      = "Launches an EC2 worker for each queued job"
  role             = aws_iam_role.provisioner.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = ["x86_64"]
  filename         = local.lambda_provisioner_zip
  source_code_hash = fileexists(local.lambda_provisioner_zip) ? filebase64sha256(local.lambda_provisioner_zip) : null
  memory_size      = var.provisioner_memory_mb
  # A full worst-case launch per message of a batch (main.tf); the queue's
  # visibility is six times this.
  timeout = local.provisioner_timeout_seconds

  environment {
    variables = local.provisioner_env
  }

  depends_on = [aws_cloudwatch_log_group.provisioner, aws_iam_role_policy.provisioner]
}

resource "aws_lambda_event_source_mapping" "provisioner" {
  event_source_arn        = aws_sqs_queue.provisioning.arn
  function_name           = aws_lambda_function.provisioner.arn
  batch_size              = var.provisioner_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  # At most two provisioner invocations at once (the minimum SQS allows):
  # launches are counted against max_concurrent_jobs before they happen,
  # and fewer parallel counters means fewer races at the limit.
  scaling_config {
    maximum_concurrency = 2
  }

  depends_on = [aws_iam_role_policy.provisioner]
}

# Dead-lettered provisioning messages go to the provisioner too: it fails
# their jobs with the reason (a job must never sit in `provisioning` until
# its timeout because its message was dead-lettered).
resource "aws_lambda_event_source_mapping" "provisioner_dead_letters" {
  event_source_arn        = aws_sqs_queue.provisioning_dlq.arn
  function_name           = aws_lambda_function.provisioner.arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = 2
  }

  depends_on = [aws_iam_role_policy.provisioner]
}

# ---------------------------------------------------------------------------
# Reaper: every 5 minutes, terminates worker instances whose job is terminal
# (or gone) and fails jobs whose worker stopped heartbeating.
# ---------------------------------------------------------------------------
resource "aws_lambda_function" "reaper" {
  function_name    = local.reaper_function_name
  description      = "Terminates orphan workers, fails jobs with a stale heartbeat"
  role             = aws_iam_role.reaper.arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = ["x86_64"]
  filename         = local.lambda_reaper_zip
  source_code_hash = fileexists(local.lambda_reaper_zip) ? filebase64sha256(local.lambda_reaper_zip) : null
  memory_size      = var.reaper_memory_mb
  timeout          = 60

  environment {
    variables = local.reaper_env
  }

  depends_on = [aws_cloudwatch_log_group.reaper, aws_iam_role_policy.reaper]
}

resource "aws_cloudwatch_event_rule" "reaper" {
  name                = local.reaper_function_name
  description         = "Runs ${local.reaper_function_name} every 5 minutes"
  schedule_expression = "rate(5 minutes)"
}

resource "aws_cloudwatch_event_target" "reaper" {
  rule = aws_cloudwatch_event_rule.reaper.name
  arn  = aws_lambda_function.reaper.arn
}

resource "aws_lambda_permission" "reaper_schedule" {
  statement_id  = "AllowScheduleInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.reaper.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reaper.arn
}

# A failed run is not retried: the next scheduled run is 5 minutes away and
# does the same work.
resource "aws_lambda_function_event_invoke_config" "reaper" {
  function_name          = aws_lambda_function.reaper.function_name
  maximum_retry_attempts = 0
}
