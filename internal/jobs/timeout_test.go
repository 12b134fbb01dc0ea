package jobs

import (
	"testing"
	"time"
)

// A job without job_timeout gets a timeout that fits its size band: the
// guide's table has 12 h and 24 h runs for large databases, which a flat
// 8 h default would fail.
func TestDefaultTimeoutBySize(t *testing.T) {
	const gb = int64(1_000_000_000)
	for _, c := range []struct {
		size int64
		want time.Duration
	}{
		{0, 8 * time.Hour},
		{5 * gb, 4 * time.Hour},
		{50 * gb, 12 * time.Hour},
		{1000 * gb, 36 * time.Hour},
		{5000 * gb, 72 * time.Hour},
	} {
		j := &Job{Spec: Spec{Options: Options{EstimatedSizeBytes: c.size}}}
		if got := j.Timeout(); got != c.want {
			t.Errorf("size %d: timeout %v, want %v", c.size, got, c.want)
		}
	}
	j := &Job{Spec: Spec{Options: Options{EstimatedSizeBytes: 5000 * gb, JobTimeout: 600}}}
	if got := j.Timeout(); got != 10*time.Minute {
		t.Errorf("explicit job_timeout: %v", got)
	}
}
