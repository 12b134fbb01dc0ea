package progress

import (
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
)

// The ETA comes from the rate measured since the copy began, not from a
// rate dragged down by the idle schema phase before it.
func TestETAFromMeasuredRate(t *testing.T) {
	var sb strings.Builder
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := New(&sb, false)
	p.now = func() time.Time { return now }
	p.start, p.lastAt = now, now
	step := func(d time.Duration, bytes int64) {
		now = now.Add(d)
		p.Progress(replicator.Progress{Phase: "copy", CurrentDatabase: "app", BytesCopied: bytes, BytesTotal: 1000 << 20})
	}
	step(0, 0)
	step(time.Minute, 96) // a minute of schema work, a trickle of bytes
	for i := int64(1); i <= 10; i++ {
		step(time.Second, 96+i*10<<20) // then 10 MiB/s
	}
	p.mu.Lock()
	got := p.summary()
	p.mu.Unlock()
	// 900 MiB left at 10 MiB/s: 1m30s.
	if !strings.Contains(got, "ETA 1m30s") {
		t.Fatalf("summary %q, want ETA 1m30s", got)
	}
}
