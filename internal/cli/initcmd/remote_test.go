package initcmd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/cmdutil"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/jobstore"
)

// These tests drive the remote path against the real API on the embedded
// backends, with nothing running the jobs: the test moves them through
// their states in the store. The end-to-end run with real workers is in
// internal/cli/servecmd.

const remoteSentinel = "Sentinel-remote-pw"

type remoteBundle struct {
	env *apitest.Env
	url string
	key string
}

func remoteSetup(t *testing.T, tweak func(*api.Config)) *remoteBundle {
	t.Helper()
	// The jobs name 127.0.0.1:1: the API refuses loopback unless allowed.
	t.Setenv("SEREN_ALLOW_NETWORKS", "127.0.0.0/8")
	env := apitest.New(t, tweak)
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	return &remoteBundle{env: env, url: srv.URL, key: env.NewKey(t, "me")}
}

// syncBuf is a goroutine-safe buffer for the command's output.
type syncBuf struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

func (b *remoteBundle) options() (*Options, *syncBuf, *syncBuf) {
	io, _, _, _ := iostreams.Test()
	out, errOut := &syncBuf{}, &syncBuf{}
	io.Out, io.ErrOut = out, errOut
	return &Options{
		IO: io,
		// Port 1: nothing listens, so the size estimate cannot be made here.
		Conn:       cmdutil.ConnFlags{Source: "postgres://u:" + remoteSentinel + "@127.0.0.1:1/postgres", Target: "postgres://u:" + remoteSentinel + "@127.0.0.1:1/postgres"},
		Jobs:       1,
		NoSync:     true,
		Yes:        true,
		RemoteAPI:  b.url,
		APIKey:     b.key,
		JobTimeout: 3600,
	}, out, errOut
}

// onlyJob waits for the one job of the key and returns it.
func (b *remoteBundle) onlyJob(t *testing.T) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		owner, err := b.env.Keys.Verify(context.Background(), b.key)
		if err != nil {
			t.Fatal(err)
		}
		page, _, err := b.env.Store.List(context.Background(), jobstore.ListQuery{Owner: owner.Principal})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 1 {
			return page[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no job submitted")
	return nil
}

func (b *remoteBundle) apply(t *testing.T, id string, tr jobs.Transition) {
	t.Helper()
	if _, err := b.env.Store.Apply(context.Background(), id, tr); err != nil {
		t.Error(err)
	}
}

func TestRemoteInitFollowsToCompletion(t *testing.T) {
	b := remoteSetup(t, nil)
	opts, out, errOut := b.options()
	opts.Selection.IncludeDatabases = []string{"app"}
	opts.Selection.ExcludeTables = []string{"app.audit"}
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), opts) }()

	j := b.onlyJob(t)
	if j.Spec.Command != jobs.CommandInit || !j.Spec.Options.NoSync || j.Spec.Options.JobTimeout != 3600 ||
		j.Spec.Options.EstimatedSizeBytes != 0 || len(j.Spec.Filter.ExcludeTables) != 1 || j.IdempotencyKey == "" {
		t.Fatalf("submitted spec %+v (idempotency key %q)", j.Spec, j.IdempotencyKey)
	}
	b.apply(t, j.ID, jobs.Provisioned("1", "local", ""))
	b.apply(t, j.ID, jobs.Started("1"))
	b.apply(t, j.ID, jobs.Heartbeat(&jobs.Progress{Phase: "copy", CurrentDatabase: "app", DatabasesTotal: 1}))
	b.apply(t, j.ID, jobs.Completed(&jobs.Progress{Phase: "done", DatabasesTotal: 1, DatabasesCompleted: 1}))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("remote init: %v\n%s", err, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("remote init did not return after the job completed")
	}
	if !strings.Contains(out.String(), "Job ID: "+j.ID+"\nTrace ID: "+j.TraceID+"\n") {
		t.Fatalf("stdout:\n%s", out)
	}
	talk := errOut.String()
	for _, want := range []string{"Could not estimate the size from here", "submitting without an estimate", "Job " + j.ID + " completed"} {
		if !strings.Contains(talk, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, talk)
		}
	}
	if strings.Contains(talk+out.String(), remoteSentinel) {
		t.Fatal("output holds the password")
	}
}

func TestRemoteInitFailsWithTheJobsError(t *testing.T) {
	b := remoteSetup(t, nil)
	opts, out, errOut := b.options()
	opts.Output.Format = "json"
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), opts) }()
	j := b.onlyJob(t)
	b.apply(t, j.ID, jobs.Failed("source unreachable from the worker"))
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "ended as failed: source unreachable from the worker") ||
		!strings.Contains(hint.Of(err), "jobs logs "+j.ID) {
		t.Fatalf("err %v (hint %q)", err, hint.Of(err))
	}
	// --json: the final job on stdout, the ids on stderr.
	var v api.JobView
	if err := json.Unmarshal([]byte(out.String()), &v); err != nil || v.JobID != j.ID || v.Status != jobs.StatusFailed {
		t.Fatalf("stdout is not the final job: %v\n%s", err, out)
	}
	if !strings.Contains(errOut.String(), "Job ID: "+j.ID) {
		t.Fatalf("stderr lacks the job id:\n%s", errOut)
	}
}

func TestRemoteInitDetachesOnCtrlC(t *testing.T) {
	b := remoteSetup(t, nil)
	opts, out, _ := b.options()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	j := b.onlyJob(t)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Job ID:") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	err := <-done
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 130 || hint.Of(err) != "follow it again with: postgres-seren-replicator jobs show "+j.ID+" --follow" {
		t.Fatalf("err %v (hint %q)", err, hint.Of(err))
	}
	if cur, _ := b.env.Store.Get(context.Background(), j.ID); cur.Status != jobs.StatusProvisioning {
		t.Fatalf("detaching changed the job: %s", cur.Status)
	}
}

func TestRemoteInitWaitsWhileTheServiceIsBusy(t *testing.T) {
	b := remoteSetup(t, func(c *api.Config) {
		c.MaxConcurrentJobs = 1
		c.RetryAfter = time.Second
	})
	// Another job holds the only place.
	blocker := &jobs.Job{Owner: "someone-else", Spec: jobs.Spec{Command: jobs.CommandValidate}}
	held, err := b.env.Store.Create(context.Background(), blocker)
	if err != nil {
		t.Fatal(err)
	}
	opts, _, errOut := b.options()
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), opts) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "The service is busy") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(errOut.String(), "submitting again in 1s") {
		t.Fatalf("no busy notice:\n%s", errOut)
	}
	b.apply(t, held.ID, jobs.Cancelled())
	j := b.onlyJob(t)
	b.apply(t, j.ID, jobs.Failed("stop here"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stop here") {
		t.Fatalf("err %v", err)
	}
}

func TestRemoteInitRefusesWhatTheServiceCannotDo(t *testing.T) {
	b := remoteSetup(t, nil)
	rules := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(rules, []byte("include_databases = [\"app\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		tweak func(*Options)
		want  string
	}{
		{"rules file", func(o *Options) { o.Selection.ConfigFile = rules }, "--config rules files are not sent"},
		{"no resume", func(o *Options) { o.NoResume = true }, "--no-resume is not available for remote jobs"},
		{"no key", func(o *Options) { o.APIKey = "" }, "no API key"},
		{"no confirmation", func(o *Options) { o.Yes = false }, "pass --yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SEREN_API_KEY", "")
			opts, _, _ := b.options()
			tc.tweak(opts)
			err := Run(context.Background(), opts)
			var ec interface{ ExitCode() int }
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ec) || ec.ExitCode() != 2 {
				t.Fatalf("err %v, want usage error %q", err, tc.want)
			}
		})
	}
}

// --detach submits, prints the job id alone on stdout and returns at once;
// the job stays queued on the service.
func TestRemoteInitDetach(t *testing.T) {
	b := remoteSetup(t, nil)
	opts, out, errOut := b.options()
	opts.Detach = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Run(ctx, opts); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	j := b.onlyJob(t)
	if got := strings.TrimSpace(out.String()); got != j.ID {
		t.Fatalf("stdout %q, want the job id %s", got, j.ID)
	}
	if !strings.Contains(errOut.String(), "jobs show "+j.ID+" --follow") {
		t.Fatalf("stderr does not say how to follow:\n%s", errOut)
	}
	if cur, _ := b.env.Store.Get(context.Background(), j.ID); cur.Status.Terminal() {
		t.Fatalf("job %s after --detach", cur.Status)
	}
}

// On a terminal a remote init ends like a local one: the warnings and the
// phase table, read from the job's log.
func TestRemoteInitTerminalSummary(t *testing.T) {
	b := remoteSetup(t, nil)
	opts, _, errOut := b.options()
	opts.IO.SetTTY(true)
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), opts) }()
	j := b.onlyJob(t)
	b.apply(t, j.ID, jobs.Provisioned("1", "local", ""))
	b.apply(t, j.ID, jobs.Started("1"))
	if err := b.env.Logs.Append(context.Background(), j.ID, []joblog.Line{
		{Time: time.Now(), Text: "warning: table public.log has no key: only INSERTs replicate"},
		{Time: time.Now(), Text: "phase app data+indexes: 1.2s 3 tables, 1 MB streamed"},
		{Time: time.Now(), Text: "init done: 1 databases, 3 tables (0 resumed from an earlier attempt), 1 MB in 2s"},
	}); err != nil {
		t.Fatal(err)
	}
	b.apply(t, j.ID, jobs.Completed(&jobs.Progress{Phase: "done", DatabasesTotal: 1, DatabasesCompleted: 1}))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("remote init: %v\n%s", err, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("remote init did not return after the job completed")
	}
	talk := errOut.String()
	for _, want := range []string{"warning: table public.log has no key", "WALL TIME", "app       data+indexes  1.2s", "1 warnings (see above)"} {
		if !strings.Contains(talk, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, talk)
		}
	}
}
