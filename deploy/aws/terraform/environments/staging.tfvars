# Staging: production-shaped, smaller. Names carry "-staging".

environment       = "staging"
aws_region        = "us-east-1"
project_name      = "seren-replication-staging"
jobs_table_name   = "seren-replication-staging-jobs"
metrics_namespace = "SerenReplication/staging"

max_concurrent_jobs = 5
worker_spot         = true

api_throttle_rate  = 1000
api_throttle_burst = 2000

log_retention_days           = 14
dynamodb_deletion_protection = false
kms_deletion_window_days     = 7

# alarm_sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:seren-staging-alerts"
