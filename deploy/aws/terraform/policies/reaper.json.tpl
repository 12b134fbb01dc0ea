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
      "Sid": "ActiveJobs",
      "Effect": "Allow",
      "Action": ["dynamodb:Query"],
      "Resource": "${table_arn}/index/active-index"
    },
    {
      "Sid": "DescribeInstances",
      "Effect": "Allow",
      "Action": ["ec2:DescribeInstances"],
      "Resource": "*"
    },
    {
      "Sid": "TerminateWorkers",
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
      "Sid": "RequeueInterrupted",
      "Effect": "Allow",
      "Action": ["sqs:SendMessage"],
      "Resource": "${queue_arn}"
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
