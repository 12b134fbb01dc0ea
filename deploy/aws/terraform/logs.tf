# Log groups are created here (not implicitly by Lambda or the agent) so they
# get a retention and are removed by terraform destroy.

resource "aws_cloudwatch_log_group" "coordinator" {
  name              = "/aws/lambda/${local.coordinator_function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "provisioner" {
  name              = "/aws/lambda/${local.provisioner_function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "reaper" {
  name              = "/aws/lambda/${local.reaper_function_name}"
  retention_in_days = var.log_retention_days
}

# One stream per worker instance, named by its instance id; every line of a
# job's log carries [TRACE:<trace_id>].
resource "aws_cloudwatch_log_group" "worker" {
  name              = local.worker_log_group_name
  retention_in_days = var.log_retention_days
}

# HTTP API access log: one JSON line per request. Never contains headers, so
# never the x-api-key.
resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${local.name}-api"
  retention_in_days = var.log_retention_days
}
