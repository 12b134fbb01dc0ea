package servecmd

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/secrets/localkey"
	"github.com/serenorg/postgres-seren-replicator/internal/service"
)

func defaults(io *iostreams.IOStreams, dir string) *Options {
	return &Options{IO: io, DataDir: dir, Listen: "127.0.0.1:0", MaxConcurrentJobs: 10, JobTimeoutDefault: jobs.DefaultJobTimeout,
		RateLimit: 1000, LogLevel: "info", HeartbeatTimeout: service.DefaultHeartbeatTimeout, CheckInterval: time.Second,
		Visibility: time.Minute, WorkerGrace: time.Second, WorkerHeartbeat: time.Second, ShutdownTimeout: 10 * time.Second}
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Options)
	}{
		{"no workers", func(o *Options) { o.MaxConcurrentJobs = 0 }},
		{"negative queue", func(o *Options) { o.MaxQueuedJobs = -1 }},
		{"tiny timeout", func(o *Options) { o.JobTimeoutDefault = time.Second }},
		{"log level", func(o *Options) { o.LogLevel = "loud" }},
		{"worker binary", func(o *Options) { o.WorkerBinary = "/nonexistent/bin" }},
		{"read timeout", func(o *Options) { o.ReadTimeout = -time.Second }},
		{"connections", func(o *Options) { o.MaxConnections = -1 }},
		{"tls cert without key", func(o *Options) { o.TLSCert = "/some/cert.pem" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			io, _, _, _ := iostreams.Test()
			o := defaults(io, t.TempDir())
			tc.tweak(o)
			err := run(context.Background(), o)
			var ec interface{ ExitCode() int }
			if !errors.As(err, &ec) || ec.ExitCode() != 2 {
				t.Fatalf("err %v: want a usage error", err)
			}
		})
	}
}

func TestServesAndStopsGracefully(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	io, _, out, errOut := iostreams.Test()
	o := defaults(io, dir)
	ready := make(chan string, 1)
	o.Ready = func(url string) { ready <- url }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, errOut)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	resp, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %d", resp.StatusCode)
	}
	resp, err = http.Get(url + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("jobs without a key: %d", resp.StatusCode)
	}
	st, err := os.Stat(filepath.Join(dir, localkey.FileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key: %v %v", st, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if got := out.String(); got != url+"\n" {
		t.Fatalf("stdout %q, want the URL alone", got)
	}
	if !strings.Contains(errOut.String(), "msg=stopped") {
		t.Fatalf("log:\n%s", errOut)
	}
}

// Two serve on one data directory: the second refuses to start and the
// first keeps serving.
func TestSecondServeOnOneDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	io, _, _, errOut := iostreams.Test()
	first := defaults(io, dir)
	ready := make(chan string, 1)
	first.Ready = func(url string) { ready <- url }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, first) }()
	defer func() { cancel(); <-done }()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, errOut)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	io2, _, _, _ := iostreams.Test()
	second := defaults(io2, dir)
	second.Ready = func(string) { t.Error("the second serve started") }
	c2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := run(c2, second); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second serve: %v", err)
	}
	resp, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first serve after the second's attempt: %d", resp.StatusCode)
	}
}
