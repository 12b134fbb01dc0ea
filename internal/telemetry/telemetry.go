// Package telemetry records the service's metrics under the guide's names:
// Prometheus embedded (telemetry/promtelemetry), CloudWatch namespace
// SerenReplication on AWS (telemetry/cwtelemetry).
package telemetry

import "time"

// Metrics is what a backend implements. Calls must not block for long.
type Metrics interface {
	JobSubmitted(command string)
	JobProvisioned(instanceType, instanceSize string, d time.Duration)
	ProvisioningFailed(instanceType, reason string)
	JobFinished(command, status string, d time.Duration)
}
