# Development: small, cheap, easy to tear down. Names carry "-dev" so dev can
# share an account with staging and prod. deploy.sh passes worker_ami_id and
# api_key (TF_VAR_api_key); everything else is here.

environment       = "dev"
aws_region        = "us-east-1"
project_name      = "seren-replication-dev"
jobs_table_name   = "seren-replication-dev-jobs"
metrics_namespace = "SerenReplication/dev"

max_concurrent_jobs = 3
# Spot workers with on-demand fallback. The account needs the
# AWSServiceRoleForEC2Spot role once: set create_spot_service_linked_role =
# true on the first deployment in an account that never used spot.
worker_spot = true

api_throttle_rate  = 100
api_throttle_burst = 200

log_retention_days           = 7
dynamodb_deletion_protection = false
kms_deletion_window_days     = 7
