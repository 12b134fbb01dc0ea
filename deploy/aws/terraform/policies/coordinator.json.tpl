{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "JobsTable",
      "Effect": "Allow",
      "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
      "Resource": "${table_arn}"
    },
    {
      "Sid": "JobsIndexes",
      "Effect": "Allow",
      "Action": ["dynamodb:Query"],
      "Resource": ["${table_arn}/index/owner-created-index", "${table_arn}/index/active-index"]
    },
    {
      "Sid": "EnqueueProvisioning",
      "Effect": "Allow",
      "Action": ["sqs:SendMessage"],
      "Resource": "${queue_arn}"
    },
    {
      "Sid": "SealCredentials",
      "Effect": "Allow",
      "Action": ["kms:GenerateDataKey"],
      "Resource": "${kms_key_arn}",
      "Condition": {
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["job_id"]},
        "Null": {"kms:EncryptionContext:job_id": "false"}
      }
    },
    {
      "Sid": "ReadApiKey",
      "Effect": "Allow",
      "Action": ["ssm:GetParameter"],
      "Resource": "${api_key_param_arn}"
    },
    {
      "Sid": "ListRotationKeys",
      "Effect": "Allow",
      "Action": ["ssm:GetParametersByPath"],
      "Resource": ["${api_keys_path_arn}", "${api_keys_path_arn}/*"]
    },
    {
      "Sid": "DescribeInstances",
      "Effect": "Allow",
      "Action": ["ec2:DescribeInstances"],
      "Resource": "*"
    },
    {
      "Sid": "StopCancelledWorker",
      "Effect": "Allow",
      "Action": ["ec2:TerminateInstances"],
      "Resource": "${ec2_arn_prefix}:instance/*",
      "Condition": {
        "StringEquals": {
          "ec2:ResourceTag/ManagedBy": "${managed_by}",
          "ec2:ResourceTag/SerenDeployment": "${deployment}"
        },
        "ArnEquals": {"ec2:InstanceProfile": "${worker_profile_arn}"}
      }
    },
    {
      "Sid": "ReadWorkerLogs",
      "Effect": "Allow",
      "Action": ["logs:FilterLogEvents", "logs:DescribeLogStreams"],
      "Resource": ["${worker_log_group_arn}", "${worker_log_group_arn}:*"]
    },
    {
      "Sid": "Metrics",
      "Effect": "Allow",
      "Action": ["cloudwatch:PutMetricData"],
      "Resource": "*",
      "Condition": {"StringEquals": {"cloudwatch:namespace": "${metrics_namespace}"}}
    },
    {
      "Sid": "OwnLogs",
      "Effect": "Allow",
      "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
      "Resource": ["${own_log_group_arn}", "${own_log_group_arn}:*"]
    }
  ]
}
