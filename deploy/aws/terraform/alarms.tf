# The guide's two recommended alarms, plus dead-letter queue depth, API 5xx
# and failed authentication (the guide's "monitor failed auth attempts").
#
# The service's metrics carry dimensions (ProvisioningFailed by InstanceType
# and Reason, ProvisioningDuration by InstanceType). CloudWatch does not
# aggregate across dimensions for a plain metric alarm, so the first two
# alarms use a Metrics Insights query over every series of the metric.

resource "aws_cloudwatch_metric_alarm" "high_failures" {
  alarm_name          = "${local.name}-high-failures"
  alarm_description   = "More than 5 failed worker launches (ProvisioningFailed, all instance types and reasons) in 5 minutes. See the provisioner log group."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "failures"
    label       = "ProvisioningFailed (sum)"
    expression  = "SELECT SUM(ProvisioningFailed) FROM \"${var.metrics_namespace}\""
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "slow_provisioning" {
  alarm_name          = "${local.name}-slow-provisioning"
  alarm_description   = "Average time to provision a worker (ProvisioningDuration) above 300 s over 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = 300
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "duration"
    label       = "ProvisioningDuration (average, seconds)"
    expression  = "SELECT AVG(ProvisioningDuration) FROM \"${var.metrics_namespace}\""
    period      = 300
    return_data = true
  }
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name        = "${local.name}-dlq-not-empty"
  alarm_description = "Provisioning requests landed in the dead-letter queue: their jobs could not be provisioned after ${local.max_receive_count} deliveries and the provisioner failed them with the reason (its log says why). Messages it could not handle stay in ${aws_sqs_queue.provisioning_dlq.name}."
  namespace         = "AWS/SQS"
  # The provisioner consumes the DLQ (and fails those jobs), so the queue is
  # usually empty again within seconds: alarm on what it received.
  metric_name         = "NumberOfMessagesReceived"
  dimensions          = { QueueName = aws_sqs_queue.provisioning_dlq.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${local.name}-api-5xx"
  alarm_description   = "The job API answered more than ${var.api_5xx_alarm_threshold} server errors in 5 minutes. See the coordinator log group."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5xx"
  dimensions          = { ApiId = aws_apigatewayv2_api.this.id }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# 401s counted from the API access log.
resource "aws_cloudwatch_log_metric_filter" "auth_failures" {
  name           = "${local.name}-auth-failures"
  log_group_name = aws_cloudwatch_log_group.api_access.name
  pattern        = "{ $.status = \"401\" }"

  metric_transformation {
    name          = "AuthFailures"
    namespace     = var.metrics_namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "auth_failures" {
  alarm_name          = "${local.name}-auth-failures"
  alarm_description   = "More than ${var.auth_failure_alarm_threshold} requests with a missing or invalid x-api-key in 5 minutes."
  namespace           = var.metrics_namespace
  metric_name         = aws_cloudwatch_log_metric_filter.auth_failures.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.auth_failure_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
