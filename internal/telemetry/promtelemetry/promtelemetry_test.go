package promtelemetry

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMetricsExposition(t *testing.T) {
	m := New()
	m.JobSubmitted("init")
	m.JobSubmitted("init")
	m.JobSubmitted("verify")
	m.JobProvisioned("local", "t3.medium", 1500*time.Millisecond)
	m.ProvisioningFailed("local", "exec: worker binary not found\nstack...")
	m.ProvisioningFailed("local", strings.Repeat("x", 500))
	m.JobFinished("init", "completed", 90*time.Second)
	m.JobFinished("init", "failed", 5*time.Second)

	text := scrape(t, m)
	for _, want := range []string{
		`seren_job_submitted_total{command="init"} 2`,
		`seren_job_submitted_total{command="verify"} 1`,
		`seren_job_provisioned_total{instance_size="t3.medium",instance_type="local"} 1`,
		`seren_provisioning_duration_seconds_sum{instance_type="local"} 1.5`,
		`seren_provisioning_duration_seconds_count{instance_type="local"} 1`,
		`seren_provisioning_failed_total{instance_type="local",reason="exec: worker binary not found"} 1`,
		`seren_provisioning_failed_total{instance_type="local",reason="` + strings.Repeat("x", maxLabel) + `"} 1`,
		`seren_job_finished_total{command="init",status="completed"} 1`,
		`seren_job_finished_total{command="init",status="failed"} 1`,
		`seren_job_duration_seconds_sum{command="init",status="completed"} 90`,
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, "stack...") {
		t.Error("multi-line reason was not cut to its first line")
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	a, b := New(), New()
	a.JobSubmitted("init")
	if text := scrape(t, b); strings.Contains(text, "seren_job_submitted_total{") {
		t.Fatalf("second registry saw the first one's sample:\n%s", text)
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
