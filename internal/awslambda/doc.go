// Package awslambda runs the job service's AWS Lambda functions from the
// same code `serve` runs embedded:
//
//   - API (cmd/lambda-api, Terraform's coordinator): internal/api's
//     handler behind API Gateway's HTTP API; HTTPHandler converts payload
//     format 2.0 events to requests and responses back.
//   - Provisioner (cmd/lambda-provisioner): SQS batches of job ids, each
//     through service.HandleDelivery, with partial batch failure reporting.
//   - Reaper (cmd/lambda-reaper): every 5 minutes, service.CheckOnce.
//
// Each function opens only the aws backends its IAM role allows
// (internal/backends, configured by the SEREN_* variables Terraform sets),
// and before returning from an invocation waits for the worker stops it
// started and sends its buffered metrics: a Lambda container is frozen
// between invocations.
package awslambda
