output "api_endpoint" {
  description = "Base URL of the job API (SEREN_REMOTE_API / --remote-api for the CLI)."
  value       = var.custom_domain_name != "" ? "https://${var.custom_domain_name}" : aws_apigatewayv2_api.this.api_endpoint
}

output "api_endpoint_default" {
  description = "The execute-api URL, which keeps working with or without a custom domain."
  value       = aws_apigatewayv2_api.this.api_endpoint
}

output "api_key" {
  description = "The API key stored in SSM (x-api-key / SEREN_API_KEY). terraform output -raw api_key"
  value       = var.api_key
  sensitive   = true
}

output "api_key_parameter" {
  description = "SSM parameter holding the API key; rotation keys go under \"<this>s/<name>\"."
  value       = aws_ssm_parameter.api_key.name
}

output "custom_domain_target" {
  description = "DNS target (CNAME or alias) for custom_domain_name, if set."
  value       = var.custom_domain_name != "" ? aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].target_domain_name : ""
}

output "queue_url" {
  description = "Provisioning queue (SEREN_QUEUE_URL)."
  value       = aws_sqs_queue.provisioning.url
}

output "dlq_url" {
  description = "Dead-letter queue of the provisioning queue."
  value       = aws_sqs_queue.provisioning_dlq.url
}

output "jobs_table_name" {
  description = "DynamoDB jobs table (SEREN_JOBS_TABLE)."
  value       = aws_dynamodb_table.jobs.name
}

output "kms_key_arn" {
  description = "KMS key that wraps job credential data keys."
  value       = aws_kms_key.credentials.arn
}

output "kms_key_alias" {
  description = "Alias of the credentials key (SEREN_KMS_KEY_ID)."
  value       = aws_kms_alias.credentials.name
}

output "worker_ami_id" {
  description = "AMI the provisioner launches workers from."
  value       = var.worker_ami_id
}

output "worker_security_group_id" {
  description = "Security group of the workers."
  value       = local.worker_security_group_id
}

output "worker_instance_profile" {
  description = "Instance profile of the workers."
  value       = aws_iam_instance_profile.worker.name
}

output "worker_environment" {
  description = "What /etc/seren-worker.env in the worker AMI must say for this deployment (Packer variables of the same meaning)."
  value       = local.worker_env
}

output "lambda_functions" {
  description = "Lambda function names."
  value = {
    coordinator = aws_lambda_function.coordinator.function_name
    provisioner = aws_lambda_function.provisioner.function_name
    reaper      = aws_lambda_function.reaper.function_name
  }
}

output "log_groups" {
  description = "CloudWatch log groups."
  value = {
    coordinator = aws_cloudwatch_log_group.coordinator.name
    provisioner = aws_cloudwatch_log_group.provisioner.name
    reaper      = aws_cloudwatch_log_group.reaper.name
    worker      = aws_cloudwatch_log_group.worker.name
    api_access  = aws_cloudwatch_log_group.api_access.name
  }
}
