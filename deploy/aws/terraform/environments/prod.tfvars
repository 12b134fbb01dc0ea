# Production: the guide's names (replication-jobs, /seren-replication/api-key,
# /aws/ec2/seren-replication-worker, alias/seren-replication-credentials,
# namespace SerenReplication) and its 1000 req/s throttle.

environment       = "prod"
aws_region        = "us-east-1"
project_name      = "seren-replication"
jobs_table_name   = "replication-jobs"
metrics_namespace = "SerenReplication"

max_concurrent_jobs = 10
# On-demand workers (the guide's cost table). Spot saves up to ~70%, but
# AWS may reclaim a spot worker in the middle of a long copy.
worker_spot = false

api_throttle_rate  = 1000
api_throttle_burst = 2000

# Longer than the guide's 7-day default: time to investigate a failed
# migration after the fact. Costs $0.03/GB-month stored.
log_retention_days           = 30
dynamodb_deletion_protection = true
kms_deletion_window_days     = 30

# Custom domain (certificate in ACM, same region):
# custom_domain_name = "api.seren.cloud"
# certificate_arn    = "arn:aws:acm:us-east-1:123456789012:certificate/..."
# route53_zone_id    = "Z0123456789ABCDEFGHIJ"

# alarm_sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:seren-prod-alerts"
