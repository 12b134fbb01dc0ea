{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "JobsTable",
      "Effect": "Allow",
      "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
      "Resource": "${table_arn}"
    },
    {
      "Sid": "OpenCredentials",
      "Effect": "Allow",
      "Action": ["kms:Decrypt"],
      "Resource": "${kms_key_arn}",
      "Condition": {
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["job_id"]},
        "Null": {"kms:EncryptionContext:job_id": "false"}
      }
    },
    {
      "Sid": "Metrics",
      "Effect": "Allow",
      "Action": ["cloudwatch:PutMetricData"],
      "Resource": "*",
      "Condition": {"StringEquals": {"cloudwatch:namespace": "${metrics_namespace}"}}
    },
    {
      "Sid": "WorkerLogs",
      "Effect": "Allow",
      "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"],
      "Resource": ["${worker_log_group_arn}", "${worker_log_group_arn}:*"]
    },
    {
      "Sid": "TerminateItself",
      "Effect": "Allow",
      "Action": ["ec2:TerminateInstances"],
      "Resource": "${ec2_arn_prefix}:instance/*",
      "Condition": {
        "StringEquals": {
          "aws:ARN": "$${ec2:SourceInstanceARN}",
          "ec2:ResourceTag/ManagedBy": "${managed_by}",
          "ec2:ResourceTag/SerenDeployment": "${deployment}"
        },
        "ArnEquals": {"ec2:InstanceProfile": "${worker_profile_arn}"}
      }
    }
  ]
}
