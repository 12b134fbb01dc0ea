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
      "Sid": "CountActiveJobs",
      "Effect": "Allow",
      "Action": ["dynamodb:Query"],
      "Resource": "${table_arn}/index/active-index"
    },
    {
      "Sid": "RunWorkerImage",
      "Effect": "Allow",
      "Action": ["ec2:RunInstances"],
      "Resource": "arn:${partition}:ec2:${region}::image/${worker_ami_id}"
    },
    {
      "Sid": "RunWorkerNetworkAndStorage",
      "Effect": "Allow",
      "Action": ["ec2:RunInstances"],
      "Resource": ${run_network_resources}
    },
    {
      "Sid": "RunWorkerInstance",
      "Effect": "Allow",
      "Action": ["ec2:RunInstances"],
      "Resource": "${ec2_arn_prefix}:instance/*",
      "Condition": {
        "StringEquals": {
          "aws:RequestTag/ManagedBy": "${managed_by}",
          "aws:RequestTag/SerenDeployment": "${deployment}",
          "ec2:MetadataHttpTokens": "required"
        },
        "ArnEquals": {"ec2:InstanceProfile": "${worker_profile_arn}"}
      }
    },
    {
      "Sid": "TagAtLaunch",
      "Effect": "Allow",
      "Action": ["ec2:CreateTags"],
      "Resource": ${tag_at_launch_resources},
      "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}
    },
    {
      "Sid": "DescribeInstances",
      "Effect": "Allow",
      "Action": ["ec2:DescribeInstances"],
      "Resource": "*"
    },
    {
      "Sid": "StopUnrecordedWorker",
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
      "Sid": "PassWorkerRole",
      "Effect": "Allow",
      "Action": ["iam:PassRole"],
      "Resource": "${worker_role_arn}",
      "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    },
    {
      "Sid": "ConsumeProvisioning",
      "Effect": "Allow",
      "Action": [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage"
      ],
      "Resource": "${queue_arn}"
    },
    {
      "Sid": "ConsumeDeadLetters",
      "Effect": "Allow",
      "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
      "Resource": "${dlq_arn}"
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
