package jobscmd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/clio"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/iostreams"
	"github.com/serenorg/postgres-seren-replicator/internal/cli/jobclient"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

type bundle struct {
	env *apitest.Env
	url string
	key string
	c   *apiclient.Client
}

func setup(t *testing.T) *bundle {
	t.Helper()
	env := apitest.New(t, nil)
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	key := env.NewKey(t, "me")
	return &bundle{env: env, url: srv.URL, key: key, c: &apiclient.Client{BaseURL: srv.URL, APIKey: key}}
}

func (b *bundle) opts() (*Options, *strings.Builder, *strings.Builder) {
	io, _, _, _ := iostreams.Test()
	o := &Options{IO: io, RemoteAPI: b.url, APIKey: b.key, Limit: 20, Interval: 10 * time.Millisecond}
	so, se := &strings.Builder{}, &strings.Builder{}
	io.Out, io.ErrOut = so, se
	return o, so, se
}

const sentinel = "Sentinel-pw-jobscmd"

func (b *bundle) submit(t *testing.T) string {
	t.Helper()
	resp, err := b.c.Submit(context.Background(), jobs.Request{SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
		SourceURL: "postgres://u:" + sentinel + "@db.example.com/app", TargetURL: "postgres://u:" + sentinel + "@db2.example.com/app"}, "")
	if err != nil {
		t.Fatal(err)
	}
	return resp.JobID
}

func (b *bundle) apply(t *testing.T, id string, tr jobs.Transition) {
	t.Helper()
	if _, err := b.env.Store.Apply(context.Background(), id, tr); err != nil {
		t.Fatal(err)
	}
}

func TestNewClientNeedsServiceAndKey(t *testing.T) {
	t.Setenv(jobclient.EnvRemoteAPI, "")
	t.Setenv(jobclient.EnvAPIKey, "")
	for _, tc := range []struct{ api, key, want string }{
		{"", "k", "no job service configured"},
		{"http://127.0.0.1:1", "", "no API key"},
		{"127.0.0.1:8080", "k", "want http(s)://host[:port]"},
	} {
		_, err := jobclient.NewClient(tc.api, tc.key, false)
		var ec interface{ ExitCode() int }
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ec) || ec.ExitCode() != 2 {
			t.Fatalf("NewClient(%q, %q) = %v, want usage error %q", tc.api, tc.key, err, tc.want)
		}
	}
	t.Setenv(jobclient.EnvRemoteAPI, "http://127.0.0.1:1")
	t.Setenv(jobclient.EnvAPIKey, "sk_live_x")
	c, err := jobclient.NewClient("", "", false)
	if err != nil || c.BaseURL != "http://127.0.0.1:1" || c.APIKey != "sk_live_x" {
		t.Fatalf("from env: %+v %v", c, err)
	}
}

func TestListShowLogsCancel(t *testing.T) {
	b := setup(t)
	ctx := context.Background()

	o, out, errOut := b.opts()
	if err := runList(ctx, o); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "No jobs.") {
		t.Fatalf("empty list: %q %q", out, errOut)
	}

	first, second := b.submit(t), b.submit(t)
	b.apply(t, first, jobs.Provisioned("123", "local", ""))
	b.apply(t, first, jobs.Started("123"))
	b.apply(t, first, jobs.Heartbeat(&jobs.Progress{Phase: "copy", CurrentDatabase: "app", DatabasesTotal: 2, TablesTotal: 4, TablesCompleted: 1}))

	o, out, _ = b.opts()
	o.IO.SetTTY(true)
	if err := runList(ctx, o); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	if !strings.HasPrefix(table, "JOB ID") || !strings.Contains(table, first) || !strings.Contains(table, second) ||
		!strings.Contains(table, "copy, databases 0/2 (app), tables 1/4") {
		t.Fatalf("table:\n%s", table)
	}
	o, out, _ = b.opts()
	if err := runList(ctx, o); err != nil {
		t.Fatal(err)
	}
	if rows := strings.Split(strings.TrimSpace(out.String()), "\n"); len(rows) != 2 || strings.HasPrefix(rows[0], "JOB ID") ||
		len(strings.Split(rows[0], "\t")) != 5 {
		t.Fatalf("piped list: want 2 tab-separated rows without header:\n%s", out)
	}
	o, out, _ = b.opts()
	o.Output.Format, o.Status = "json", "running"
	if err := runList(ctx, o); err != nil {
		t.Fatal(err)
	}
	var lr api.ListResponse
	if err := json.Unmarshal([]byte(out.String()), &lr); err != nil || len(lr.Jobs) != 1 || lr.Jobs[0].JobID != first {
		t.Fatalf("list --json --status running: %v %s", err, out)
	}
	o, _, _ = b.opts()
	o.Status = "bogus"
	if err := runList(ctx, o); err == nil {
		t.Fatal("bad --status accepted")
	}

	o, out, _ = b.opts()
	o.ID = first
	if err := runShow(ctx, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Job ID:", first, "Status:", "running", "History:", "(submitted)"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("show lacks %q:\n%s", want, out)
		}
	}
	o, out, _ = b.opts()
	o.ID, o.Output.Format = first, "json"
	if err := runShow(ctx, o); err != nil {
		t.Fatal(err)
	}
	var v api.JobView
	if err := json.Unmarshal([]byte(out.String()), &v); err != nil || v.JobID != first || v.Status != jobs.StatusRunning {
		t.Fatalf("show --json: %v %s", err, out)
	}

	if err := b.env.Logs.Append(ctx, first, []joblog.Line{{Text: "[TRACE:x] one"}, {Text: "[TRACE:x] two"}}); err != nil {
		t.Fatal(err)
	}
	o, out, _ = b.opts()
	o.ID = first
	if err := runLogs(ctx, o); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[1], "[TRACE:x] two") {
		t.Fatalf("logs:\n%s", out)
	}
	o, out, _ = b.opts()
	o.ID, o.Output.Format, o.After = first, "json", 1
	if err := runLogs(ctx, o); err != nil {
		t.Fatal(err)
	}
	var l joblog.Line
	if err := json.Unmarshal([]byte(out.String()), &l); err != nil || l.Seq != 2 || l.Text != "[TRACE:x] two" {
		t.Fatalf("logs --json --after 1: %v %s", err, out)
	}

	o, _, errOut = b.opts()
	o.ID = second
	if err := runCancel(ctx, o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "Job "+second+" cancelled.") {
		t.Fatalf("cancel: %q", errOut)
	}
	o, _, _ = b.opts()
	o.ID = second
	err := runCancel(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "already ended as cancelled") || hint.Of(err) == "" {
		t.Fatalf("second cancel: %v", err)
	}

	o, _, _ = b.opts()
	o.ID = "no-such-job"
	if err := runShow(ctx, o); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}

	// Nothing the client printed holds a credential.
	for _, s := range []string{table, out.String()} {
		if strings.Contains(s, sentinel) {
			t.Fatal("client output holds the password")
		}
	}
}

func TestShowFollowUntilTheEnd(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	ok, failed := b.submit(t), b.submit(t)
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.apply(t, ok, jobs.Provisioned("1", "local", ""))
		b.apply(t, ok, jobs.Started("1"))
		b.apply(t, ok, jobs.Completed(&jobs.Progress{Phase: "done", DatabasesTotal: 1, DatabasesCompleted: 1}))
		b.apply(t, failed, jobs.Failed("source unreachable"))
	}()
	o, out, errOut := b.opts()
	o.ID, o.Follow = ok, true
	if err := runShow(ctx, o); err != nil {
		t.Fatalf("follow of a completed job: %v\n%s", err, errOut)
	}
	if !strings.Contains(out.String(), "completed") || !strings.Contains(errOut.String(), "status: completed") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
	o, _, _ = b.opts()
	o.ID, o.Follow = failed, true
	err := runShow(ctx, o)
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != clio.ExitFailure || !strings.Contains(err.Error(), "ended as failed: source unreachable") {
		t.Fatalf("follow of a failed job: %v", err)
	}
}

func TestFollowDetachesOnInterrupt(t *testing.T) {
	b := setup(t)
	id := b.submit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	o, _, _ := b.opts()
	o.ID, o.Follow = id, true
	err := runShow(ctx, o)
	var ec interface{ ExitCode() int }
	if !errors.As(err, &ec) || ec.ExitCode() != 130 || !strings.Contains(hint.Of(err), "jobs show "+id+" --follow") {
		t.Fatalf("interrupted follow: %v (hint %q)", err, hint.Of(err))
	}
	if v, _ := b.c.Get(context.Background(), id); v.Status != jobs.StatusProvisioning {
		t.Fatalf("detaching changed the job: %s", v.Status)
	}
}
