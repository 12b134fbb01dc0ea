package apiclient_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/hint"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

const sentinel = "Client-Sentinel-Pa55"

func request() jobs.Request {
	return jobs.Request{
		SchemaVersion: jobs.SchemaVersion,
		Command:       jobs.CommandInit,
		SourceURL:     "postgres://u:" + sentinel + "@src.example/app",
		TargetURL:     "postgres://u:" + sentinel + "@dst.example/app",
		Filter:        jobs.Filter{IncludeDatabases: []string{"app"}},
		Options:       jobs.Options{EstimatedSizeBytes: 42, JobTimeout: 600},
	}
}

func setup(t *testing.T, tweak func(*api.Config)) (*apitest.Env, *apiclient.Client) {
	t.Helper()
	e := apitest.New(t, tweak)
	srv := httptest.NewServer(e.Handler)
	t.Cleanup(srv.Close)
	c := &apiclient.Client{BaseURL: srv.URL, APIKey: e.NewKey(t, "cli"), HTTP: srv.Client(), PollInterval: 5 * time.Millisecond}
	t.Cleanup(func() {
		if strings.Contains(e.LogBuf.String(), sentinel) {
			t.Error("service log contains the password")
		}
	})
	return e, c
}

func TestClientRoundTrip(t *testing.T) {
	e, c := setup(t, nil)
	ctx := context.Background()

	sub, err := c.Submit(ctx, request(), "idem-1")
	if err != nil {
		t.Fatal(err)
	}
	if sub.Status != jobs.StatusProvisioning || sub.JobID == "" || sub.TraceID == "" {
		t.Fatalf("submit = %+v", sub)
	}
	again, err := c.Submit(ctx, request(), "idem-1")
	if err != nil || again != sub {
		t.Fatalf("idempotent resubmit = %+v, %v", again, err)
	}

	v, err := c.Get(ctx, sub.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if v.JobID != sub.JobID || v.Command != jobs.CommandInit || v.Options.JobTimeout != 600 || v.Filter.IncludeDatabases[0] != "app" {
		t.Fatalf("get = %+v", v)
	}

	e.Clock.Advance(time.Second)
	second, err := c.Submit(ctx, request(), "")
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.List(ctx, apiclient.ListOptions{Limit: 1})
	if err != nil || len(page.Jobs) != 1 || page.Jobs[0].JobID != second.JobID || page.NextCursor == "" {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	page, err = c.List(ctx, apiclient.ListOptions{Limit: 1, Cursor: page.NextCursor})
	if err != nil || len(page.Jobs) != 1 || page.Jobs[0].JobID != sub.JobID {
		t.Fatalf("second page = %+v, %v", page, err)
	}

	cv, err := c.Cancel(ctx, second.JobID)
	if err != nil || cv.Status != jobs.StatusCancelled {
		t.Fatalf("cancel = %+v, %v", cv, err)
	}
	_, err = c.Cancel(ctx, second.JobID)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || ae.JobStatus != jobs.StatusCancelled || !errors.Is(err, jobs.ErrConflict) {
		t.Fatalf("second cancel: %v", err)
	}
	list, err := c.List(ctx, apiclient.ListOptions{Status: jobs.StatusCancelled})
	if err != nil || len(list.Jobs) != 1 {
		t.Fatalf("list cancelled = %+v, %v", list, err)
	}

	h, err := c.Health(ctx)
	if err != nil || h.Status != "ok" {
		t.Fatalf("health = %+v, %v", h, err)
	}
}

func TestClientErrorsCarryHints(t *testing.T) {
	e, c := setup(t, func(cfg *api.Config) { cfg.MaxConcurrentJobs = 1; cfg.RetryAfter = 7 * time.Second })
	ctx := context.Background()

	bad := *c
	bad.APIKey = "not-a-key"
	_, err := bad.Get(ctx, "x")
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || !strings.Contains(hint.Of(err), "SEREN_API_KEY") {
		t.Fatalf("401: %v (hint %q)", err, hint.Of(err))
	}
	if strings.Contains(err.Error(), "not-a-key") {
		t.Fatalf("error shows the API key: %v", err)
	}

	_, err = c.Get(ctx, "00000000-0000-0000-0000-000000000000")
	if !errors.Is(err, jobs.ErrNotFound) || hint.Of(err) == "" {
		t.Fatalf("404: %v", err)
	}

	r := request()
	r.Options.JobTimeout = 5
	_, err = c.Submit(ctx, r, "")
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Field != "options.job_timeout" || !strings.Contains(err.Error(), "options.job_timeout") {
		t.Fatalf("400: %v", err)
	}
	if strings.Contains(err.Error(), sentinel) {
		t.Fatalf("error shows the password: %v", err)
	}

	if _, err := c.Submit(ctx, request(), ""); err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(ctx, request(), "")
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.RetryAfter != 7*time.Second || !strings.Contains(hint.Of(err), "retry later") {
		t.Fatalf("429: %v (hint %q)", err, hint.Of(err))
	}

	e.DB.Close()
	h, err := c.Health(ctx)
	if !errors.As(err, &ae) || ae.StatusCode != 503 || h.Store != "unreachable" {
		t.Fatalf("health with the store down = %+v, %v", h, err)
	}
}

func TestClientConnectionRefusedHint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := &apiclient.Client{BaseURL: "http://" + addr, APIKey: "k"}
	_, err = c.Get(context.Background(), "x")
	if err == nil || !strings.Contains(hint.Of(err), "is `serve` running at http://"+addr) {
		t.Fatalf("connection refused: %v (hint %q)", err, hint.Of(err))
	}
	if _, err := (&apiclient.Client{}).Health(context.Background()); err == nil || !strings.Contains(hint.Of(err), "SEREN_REMOTE_API") {
		t.Fatalf("no base URL: %v", err)
	}
}

// Logs with Follow delivers every line once, in order, across a server
// that cuts each stream short, and returns when the job has ended.
func TestClientFollowLogsAcrossReconnects(t *testing.T) {
	e, c := setup(t, func(cfg *api.Config) { cfg.FollowTimeout = 30 * time.Millisecond })
	ctx := context.Background()
	sub, err := c.Submit(ctx, request(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.Apply(ctx, sub.JobID, jobs.Started("w")); err != nil {
		t.Fatal(err)
	}
	write := func(text string) {
		if err := e.Logs.Append(ctx, sub.JobID, []joblog.Line{{Time: e.Clock.Now(), Text: text}}); err != nil {
			t.Error(err)
		}
	}
	write("line 1")

	var mu sync.Mutex
	var got []string
	gotLine := make(chan struct{}, 100)
	done := make(chan error, 1)
	var last int64
	go func() {
		var err error
		last, err = c.Logs(ctx, sub.JobID, apiclient.LogOptions{Follow: true}, func(l joblog.Line) error {
			mu.Lock()
			got = append(got, l.Text)
			mu.Unlock()
			gotLine <- struct{}{}
			return nil
		})
		done <- err
	}()
	waitLine := func() {
		t.Helper()
		select {
		case <-gotLine:
		case <-time.After(10 * time.Second):
			t.Fatal("no line arrived")
		}
	}
	waitLine()
	// Let several streams time out between lines.
	time.Sleep(100 * time.Millisecond)
	write("line 2")
	waitLine()
	write("line 3")
	if _, err := e.Store.Apply(ctx, sub.JobID, jobs.Completed(nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Logs did not return after the job completed")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, "|") != "line 1|line 2|line 3" {
		t.Fatalf("lines = %q", got)
	}
	lines, _ := e.Logs.Read(ctx, sub.JobID, 0, 10)
	if last != lines[len(lines)-1].Seq {
		t.Fatalf("last seq %d, want %d", last, lines[len(lines)-1].Seq)
	}

	// Without follow: the lines after a seq, then return.
	var rest []string
	if _, err := c.Logs(ctx, sub.JobID, apiclient.LogOptions{After: lines[0].Seq}, func(l joblog.Line) error {
		rest = append(rest, l.Text)
		return nil
	}); err != nil || strings.Join(rest, "|") != "line 2|line 3" {
		t.Fatalf("after first: %q, %v", rest, err)
	}
	// A callback error stops reading and is returned.
	stop := errors.New("stop")
	if _, err := c.Logs(ctx, sub.JobID, apiclient.LogOptions{}, func(joblog.Line) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback error: %v", err)
	}
}

// Watch reports each change of the job once and returns when it ends.
func TestClientWatch(t *testing.T) {
	e, c := setup(t, nil)
	ctx := context.Background()
	sub, err := c.Submit(ctx, request(), "")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan api.JobView, 100)
	done := make(chan error, 1)
	var final api.JobView
	go func() {
		var err error
		final, err = c.Watch(ctx, sub.JobID, 5*time.Millisecond, func(v api.JobView) error {
			seen <- v
			return nil
		})
		done <- err
	}()
	next := func() api.JobView {
		t.Helper()
		select {
		case v := <-seen:
			return v
		case <-time.After(10 * time.Second):
			t.Fatal("no update")
		}
		return api.JobView{}
	}
	if v := next(); v.Status != jobs.StatusProvisioning {
		t.Fatalf("first update %s", v.Status)
	}
	e.Clock.Advance(time.Second)
	e.Store.Apply(ctx, sub.JobID, jobs.Started("w"))
	if v := next(); v.Status != jobs.StatusRunning {
		t.Fatalf("second update %s", v.Status)
	}
	e.Clock.Advance(time.Second)
	e.Store.Apply(ctx, sub.JobID, jobs.Heartbeat(&jobs.Progress{DatabasesTotal: 2, DatabasesCompleted: 1}))
	if v := next(); v.Progress.DatabasesCompleted != 1 {
		t.Fatalf("third update %+v", v.Progress)
	}
	e.Clock.Advance(time.Second)
	e.Store.Apply(ctx, sub.JobID, jobs.Completed(nil))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if final.Status != jobs.StatusCompleted {
		t.Fatalf("final %s", final.Status)
	}
	for len(seen) > 0 {
		if v := <-seen; v.Status != jobs.StatusCompleted {
			t.Fatalf("extra update %s", v.Status)
		}
	}

	_, err = c.Watch(ctx, "00000000-0000-0000-0000-000000000000", time.Millisecond, func(api.JobView) error { return nil })
	if !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("watch of an unknown job: %v", err)
	}
}
