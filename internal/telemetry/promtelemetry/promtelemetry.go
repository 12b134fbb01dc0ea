// Package promtelemetry is the embedded telemetry.Metrics: Prometheus
// metrics on a private registry (never the global one), served by the
// API's GET /metrics.
//
// The guide's CloudWatch names map to Prometheus names as follows (also in
// docs/api.md):
//
//	CloudWatch (SerenReplication)     Prometheus                               labels
//	JobSubmitted                      seren_job_submitted_total                command
//	JobProvisioned                    seren_job_provisioned_total              instance_type, instance_size
//	ProvisioningDuration              seren_provisioning_duration_seconds      instance_type (histogram)
//	ProvisioningFailed                seren_provisioning_failed_total          instance_type, reason
//	JobCompleted/JobFailed/           seren_job_finished_total                 command, status
//	  JobTimedOut/JobCancelled
//	JobDuration                       seren_job_duration_seconds               command, status (histogram)
//
// The registry also carries the Go runtime and process collectors.
package promtelemetry

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/serenorg/postgres-seren-replicator/internal/telemetry"
)

// Namespace prefixes every metric name.
const Namespace = "seren"

// maxLabel bounds free-text label values (a provisioning failure reason)
// so a long error message cannot blow up the series count or size.
const maxLabel = 64

// Metrics records the service's metrics on its own registry.
type Metrics struct {
	reg                  *prometheus.Registry
	jobSubmitted         *prometheus.CounterVec
	jobProvisioned       *prometheus.CounterVec
	provisioningDuration *prometheus.HistogramVec
	provisioningFailed   *prometheus.CounterVec
	jobFinished          *prometheus.CounterVec
	jobDuration          *prometheus.HistogramVec
}

var _ telemetry.Metrics = (*Metrics)(nil)

// New returns Metrics registered on a fresh registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		jobSubmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "job_submitted_total",
			Help: "Jobs accepted by POST /jobs (CloudWatch JobSubmitted).",
		}, []string{"command"}),
		jobProvisioned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "job_provisioned_total",
			Help: "Workers launched successfully (CloudWatch JobProvisioned).",
		}, []string{"instance_type", "instance_size"}),
		provisioningDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "provisioning_duration_seconds",
			Help:    "Time from submission to a launched worker (CloudWatch ProvisioningDuration).",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200},
		}, []string{"instance_type"}),
		provisioningFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "provisioning_failed_total",
			Help: "Failed worker launches (CloudWatch ProvisioningFailed).",
		}, []string{"instance_type", "reason"}),
		jobFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "job_finished_total",
			Help: "Jobs that reached a terminal status (CloudWatch JobCompleted, JobFailed, JobTimedOut, JobCancelled).",
		}, []string{"command", "status"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "job_duration_seconds",
			Help:    "Job run time from submission to its terminal status (CloudWatch JobDuration).",
			Buckets: []float64{1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 604800},
		}, []string{"command", "status"}),
	}
	m.reg.MustRegister(m.jobSubmitted, m.jobProvisioned, m.provisioningDuration, m.provisioningFailed,
		m.jobFinished, m.jobDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the private registry (to add collectors or gather in tests).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// JobSubmitted counts a submission by command.
func (m *Metrics) JobSubmitted(command string) {
	m.jobSubmitted.WithLabelValues(label(command)).Inc()
}

// JobProvisioned counts a launched worker and records how long it took.
func (m *Metrics) JobProvisioned(instanceType, instanceSize string, d time.Duration) {
	m.jobProvisioned.WithLabelValues(label(instanceType), label(instanceSize)).Inc()
	m.provisioningDuration.WithLabelValues(label(instanceType)).Observe(d.Seconds())
}

// ProvisioningFailed counts a failed launch by instance type and reason.
func (m *Metrics) ProvisioningFailed(instanceType, reason string) {
	m.provisioningFailed.WithLabelValues(label(instanceType), label(reason)).Inc()
}

// JobFinished counts a terminal job and records its duration.
func (m *Metrics) JobFinished(command, status string, d time.Duration) {
	m.jobFinished.WithLabelValues(label(command), label(status)).Inc()
	m.jobDuration.WithLabelValues(label(command), label(status)).Observe(d.Seconds())
}

// label makes a label value safe: valid UTF-8, one line, bounded length.
func label(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > maxLabel {
		s = strings.ToValidUTF8(s[:maxLabel], "")
	}
	if s == "" {
		return "unknown"
	}
	return s
}
