# HTTP API in front of the coordinator Lambda (payload format 2.0). Every
# route goes to the same handler, which authenticates x-api-key itself; the
# explicit routes exist so API Gateway reports metrics per route and the
# catch-all lets the handler answer unknown paths with its own 404.

resource "aws_apigatewayv2_api" "this" {
  name          = "${local.name}-api"
  description   = "postgres-seren-replicator remote job API"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "coordinator" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.coordinator.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

locals {
  api_routes = [
    "POST /jobs",
    "GET /jobs",
    "GET /jobs/{id}",
    "GET /jobs/{id}/logs",
    "POST /jobs/{id}/cancel",
    "GET /health",
    "ANY /{proxy+}",
  ]
}

resource "aws_apigatewayv2_route" "coordinator" {
  for_each = toset(local.api_routes)

  api_id    = aws_apigatewayv2_api.this.id
  route_key = each.value
  target    = "integrations/${aws_apigatewayv2_integration.coordinator.id}"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  # The guide's throttling: 1000 requests/s. Over it API Gateway answers 429
  # without invoking the Lambda.
  # HTTP API stages throttle each route on its own; the guide's limit is
  # for the API as a whole, so every route gets an equal share and the
  # shares add up to it. (The coordinator's reserved concurrency bounds the
  # whole API as well.)
  default_route_settings {
    throttling_rate_limit    = floor(var.api_throttle_rate / length(local.api_routes))
    throttling_burst_limit   = floor(var.api_throttle_burst / length(local.api_routes))
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      ip                 = "$context.identity.sourceIp"
      routeKey           = "$context.routeKey"
      path               = "$context.path"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      latencyMs          = "$context.responseLatency"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integrationErrorMessage"
    })
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.coordinator.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*"
}

# ---------------------------------------------------------------------------
# Optional custom domain (e.g. api.seren.cloud).
# ---------------------------------------------------------------------------
resource "aws_apigatewayv2_domain_name" "this" {
  count = var.custom_domain_name != "" ? 1 : 0

  domain_name = var.custom_domain_name

  lifecycle {
    precondition {
      condition     = var.certificate_arn != ""
      error_message = "custom_domain_name needs certificate_arn: an ACM certificate in aws_region covering the domain."
    }
  }

  domain_name_configuration {
    certificate_arn = var.certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }
}

resource "aws_apigatewayv2_api_mapping" "this" {
  count = var.custom_domain_name != "" ? 1 : 0

  api_id      = aws_apigatewayv2_api.this.id
  domain_name = aws_apigatewayv2_domain_name.this[0].id
  stage       = aws_apigatewayv2_stage.default.id
}

resource "aws_route53_record" "api" {
  count = var.custom_domain_name != "" && var.route53_zone_id != "" ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.custom_domain_name
  type    = "A"

  alias {
    name                   = aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].target_domain_name
    zone_id                = aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].hosted_zone_id
    evaluate_target_health = false
  }
}
