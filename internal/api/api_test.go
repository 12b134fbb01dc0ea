package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

const sentinel = "Sentinel-Pa55w0rd-4242"

var (
	srcURL = "postgres://alice:" + sentinel + "@source.example:5432/app?sslmode=require"
	dstURL = "postgresql://bob:" + sentinel + "@target.example/app"
)

func submitBody(command string, extra string) string {
	b := fmt.Sprintf(`{"schema_version":"1.0","command":%q,"source_url":%q,"target_url":%q`, command, srcURL, dstURL)
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

// env wraps apitest.Env with request helpers that check every response
// and, at the end, every log line for the sentinel password, and record
// which status each route answered (for the docs check).
type env struct {
	*apitest.Env
	t *testing.T
}

func setup(t *testing.T, tweak func(*api.Config)) *env {
	t.Helper()
	e := &env{Env: apitest.New(t, tweak), t: t}
	t.Cleanup(func() {
		logs := e.LogBuf.String()
		if strings.Contains(logs, sentinel) {
			t.Errorf("the log contains the password:\n%s", logs)
		}
		recordObserved(t, logs)
	})
	return e
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (r response) errBody(t *testing.T) api.ErrorResponse {
	t.Helper()
	var e api.ErrorResponse
	r.json(t, &e)
	return e
}

// remoteAddr in do's hdr sets the request's client address instead of a
// header.
const remoteAddr = "remote-addr"

func (e *env) do(method, path, key, body string, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if key != "" {
		req.Header.Set("x-api-key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == remoteAddr {
			req.RemoteAddr = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.Handler.ServeHTTP(rec, req)
	res := response{code: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if strings.Contains(res.body, sentinel) {
		e.t.Fatalf("%s %s: response contains the password: %s", method, path, res.body)
	}
	if ct := res.header.Get("Content-Type"); res.code >= 400 && !strings.HasPrefix(ct, "application/json") {
		e.t.Fatalf("%s %s: error with Content-Type %q: %s", method, path, ct, res.body)
	}
	return res
}

func (e *env) submit(key, body string, hdr ...string) (api.SubmitResponse, response) {
	e.t.Helper()
	res := e.do("POST", "/jobs", key, body, hdr...)
	var sr api.SubmitResponse
	if res.code == http.StatusCreated || res.code == http.StatusOK {
		res.json(e.t, &sr)
	}
	e.Clock.Advance(time.Second) // distinct created_at, for newest-first order
	return sr, res
}

func (e *env) mustSubmit(key string) api.SubmitResponse {
	e.t.Helper()
	sr, res := e.submit(key, submitBody("init", ""))
	if res.code != http.StatusCreated {
		e.t.Fatalf("submit: %d %s", res.code, res.body)
	}
	return sr
}

func wantCode(t *testing.T, res response, code int) {
	t.Helper()
	if res.code != code {
		t.Fatalf("status %d, want %d; body %s", res.code, code, res.body)
	}
}

func TestSubmitStoresSealedJobAndQueuesOnlyItsID(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	ctx := context.Background()

	res := e.do("POST", "/jobs", key, submitBody("init", `"filter":{"include_databases":["app"]},"options":{"estimated_size_bytes":1000,"job_timeout":3600}`))
	wantCode(t, res, http.StatusCreated)
	var raw map[string]any
	res.json(t, &raw)
	if len(raw) != 3 || raw["status"] != "provisioning" || raw["job_id"] == "" || raw["trace_id"] == "" {
		t.Fatalf("submit body = %s, want exactly job_id, trace_id, status provisioning", res.body)
	}
	id := raw["job_id"].(string)
	if loc := res.header.Get("Location"); loc != "/jobs/"+id {
		t.Errorf("Location = %q", loc)
	}

	j, err := e.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.TraceID != raw["trace_id"] || j.Spec.Command != jobs.CommandInit || j.Spec.Options.JobTimeout != 3600 ||
		len(j.Spec.Filter.IncludeDatabases) != 1 || j.Owner == "" || j.Owner == key {
		t.Fatalf("stored job = %+v", j)
	}
	if len(j.Credentials) == 0 || strings.Contains(string(j.Credentials), sentinel) || strings.Contains(string(j.Credentials), "source.example") {
		t.Fatalf("credentials not sealed: %q", j.Credentials)
	}
	creds, err := e.Keeper.OpenCredentials(ctx, id, j.Credentials)
	if err != nil || creds.SourceURL != srcURL || creds.TargetURL != dstURL {
		t.Fatalf("credentials do not open to the submitted URLs: %v", err)
	}
	if _, err := e.Keeper.OpenCredentials(ctx, "another-job", j.Credentials); err == nil {
		t.Fatal("sealed credentials open for another job id")
	}

	// Nothing under the data dir (database, WAL, key file) holds the
	// password in clear.
	files, _ := filepath.Glob(filepath.Join(e.Dir, "*"))
	if len(files) < 2 {
		t.Fatalf("data dir holds %v, want the database and the key file", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(sentinel)) {
			t.Errorf("%s holds the password in clear", filepath.Base(f))
		}
	}

	ds, err := e.Queue.Receive(ctx, 10, time.Minute, 0)
	if err != nil || len(ds) != 1 || ds[0].JobID != id {
		t.Fatalf("queue holds %+v (%v), want one message with job id %s", ds, err, id)
	}

	metrics := e.do("GET", "/metrics", "", "")
	wantCode(t, metrics, http.StatusOK)
	if !strings.Contains(metrics.body, `seren_job_submitted_total{command="init"} 1`) {
		t.Errorf("metrics lack the submission:\n%s", metrics.body)
	}
}

func TestSubmitValidation(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	big := submitBody("init", "") + strings.Repeat(" ", jobs.MaxRequestBytes)
	tests := []struct {
		name, body, field string
	}{
		{"unknown field", submitBody("init", `"priority":1`), "priority"},
		{"unknown option", submitBody("init", `"options":{"parallel":4}`), "options.parallel"},
		{"unknown filter", submitBody("init", `"filter":{"databases":["a"]}`), "filter.databases"},
		{"wrong type", submitBody("init", `"options":{"job_timeout":"8h"}`), "options.job_timeout"},
		{"bad command", submitBody("cutover", ""), "command"},
		{"bad schema", strings.Replace(submitBody("init", ""), `"1.0"`, `"0.9"`, 1), "schema_version"},
		{"bad url", `{"schema_version":"1.0","command":"init","source_url":"mysql://u:` + sentinel + `@h/db","target_url":"postgres://h/db"}`, "source_url"},
		{"timeout too small", submitBody("init", `"options":{"job_timeout":10}`), "options.job_timeout"},
		{"over 15 KB", big, "body"},
		{"empty", "", "body"},
		{"not json", "source_url=" + sentinel, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("POST", "/jobs", key, tt.body)
			wantCode(t, res, http.StatusBadRequest)
			eb := res.errBody(t)
			if eb.Field != tt.field || !strings.HasPrefix(eb.Error, tt.field+": ") {
				t.Fatalf("error body %s: want field %q named in the message", res.body, tt.field)
			}
		})
	}
	res := e.do("POST", "/jobs", key, submitBody("init", ""), "Idempotency-Key", "has space")
	wantCode(t, res, http.StatusBadRequest)
	if eb := res.errBody(t); eb.Field != "Idempotency-Key" {
		t.Fatalf("bad idempotency key: %s", res.body)
	}
	if active, _ := e.Store.Active(context.Background()); len(active) != 0 {
		t.Fatalf("rejected submissions created %d jobs", len(active))
	}
}

func TestAuthentication(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	revoked := e.NewKey(t, "old")
	if _, err := e.Keys.Revoke(context.Background(), "old"); err != nil {
		t.Fatal(err)
	}
	routes := []struct{ method, path, body string }{
		{"POST", "/jobs", submitBody("init", "")},
		{"GET", "/jobs", ""},
		{"GET", "/jobs/" + job.JobID, ""},
		{"GET", "/jobs/no-such-job", ""},
		{"GET", "/jobs/" + job.JobID + "/logs", ""},
		{"POST", "/jobs/" + job.JobID + "/cancel", ""},
	}
	for _, r := range routes {
		for _, k := range []string{"", "wrong-key", revoked, key + "x"} {
			res := e.do(r.method, r.path, k, r.body)
			if res.code != http.StatusUnauthorized || res.body != `{"error":"unauthorized"}`+"\n" {
				t.Errorf("%s %s with key %q: %d %q, want 401 {\"error\":\"unauthorized\"}", r.method, r.path, k, res.code, res.body)
			}
		}
	}
	if j, _ := e.Store.Get(context.Background(), job.JobID); j.Status != jobs.StatusProvisioning {
		t.Fatalf("unauthorized cancel changed the job: %s", j.Status)
	}
	// Health and metrics need no key.
	wantCode(t, e.do("GET", "/health", "", ""), http.StatusOK)
	wantCode(t, e.do("GET", "/metrics", "", ""), http.StatusOK)
}

func TestKeysSeeOnlyTheirJobs(t *testing.T) {
	e := setup(t, nil)
	alice, bob := e.NewKey(t, "alice"), e.NewKey(t, "bob")
	job := e.mustSubmit(alice)

	unknown := e.do("GET", "/jobs/00000000-0000-0000-0000-000000000000", bob, "")
	wantCode(t, unknown, http.StatusNotFound)
	for _, r := range []struct{ method, path string }{
		{"GET", "/jobs/" + job.JobID},
		{"GET", "/jobs/" + job.JobID + "/logs"},
		{"POST", "/jobs/" + job.JobID + "/cancel"},
	} {
		res := e.do(r.method, r.path, bob, "")
		if res.code != http.StatusNotFound || res.body != unknown.body {
			t.Errorf("bob %s %s: %d %s, want the same 404 as an unknown job (%s)", r.method, r.path, res.code, res.body, unknown.body)
		}
	}
	var list api.ListResponse
	e.do("GET", "/jobs", bob, "").json(t, &list)
	if len(list.Jobs) != 0 {
		t.Fatalf("bob lists alice's jobs: %+v", list.Jobs)
	}
	res := e.do("GET", "/jobs/"+job.JobID, alice, "")
	wantCode(t, res, http.StatusOK)
	if j, _ := e.Store.Get(context.Background(), job.JobID); j.Status != jobs.StatusProvisioning {
		t.Fatalf("bob's cancel changed alice's job: %s", j.Status)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := setup(t, nil)
	alice, bob := e.NewKey(t, "alice"), e.NewKey(t, "bob")
	first, res := e.submit(alice, submitBody("init", ""), "Idempotency-Key", "retry-1")
	wantCode(t, res, http.StatusCreated)
	again, res2 := e.submit(alice, submitBody("init", ""), "Idempotency-Key", "retry-1")
	wantCode(t, res2, http.StatusOK)
	if again != first || res2.body != res.body {
		t.Fatalf("retry answered %s, first answer was %s", res2.body, res.body)
	}
	// Same key, different request (the command, or only a URL): conflict.
	for _, body := range []string{
		submitBody("verify", ""),
		strings.Replace(submitBody("init", ""), "@target.example/", "@other.example/", 1),
	} {
		_, res3 := e.submit(alice, body, "Idempotency-Key", "retry-1")
		wantCode(t, res3, http.StatusConflict)
		if eb := res3.errBody(t); eb.Field != "Idempotency-Key" {
			t.Fatalf("conflict body: %s", res3.body)
		}
	}
	if j, _ := e.Store.Get(context.Background(), first.JobID); !strings.HasPrefix(j.RequestFingerprint, "v1.") {
		t.Fatalf("stored fingerprint %q", j.RequestFingerprint)
	}
	// Another API key's idempotency keys are its own.
	other, res4 := e.submit(bob, submitBody("init", ""), "Idempotency-Key", "retry-1")
	wantCode(t, res4, http.StatusCreated)
	if other.JobID == first.JobID {
		t.Fatal("bob got alice's job")
	}
	active, _ := e.Store.Active(context.Background())
	if len(active) != 2 {
		t.Fatalf("%d jobs exist, want 2", len(active))
	}
	ds, _ := e.Queue.Receive(context.Background(), 10, time.Minute, 0)
	if len(ds) != 2 {
		t.Fatalf("%d queue messages, want 2 (a retry must not enqueue again)", len(ds))
	}
}

// Several API processes of one service (Lambda containers) share the
// RequestKey: a retry answered by another one is still recognised.
func TestIdempotencyAcrossHandlersWithOneRequestKey(t *testing.T) {
	requestKey := []byte("0123456789abcdef0123456789abcdef")
	e := setup(t, func(c *api.Config) { c.RequestKey = requestKey })
	key := e.NewKey(t, "alice")
	first, res := e.submit(key, submitBody("init", ""), "Idempotency-Key", "k")
	wantCode(t, res, http.StatusCreated)
	for _, rk := range [][]byte{requestKey, []byte("another key, another service....")} {
		cfg := e.Config
		cfg.RequestKey = rk
		e.Handler = api.New(cfg)
		again, res := e.submit(key, submitBody("init", ""), "Idempotency-Key", "k")
		if string(rk) == string(requestKey) {
			wantCode(t, res, http.StatusOK)
			if again.JobID != first.JobID {
				t.Fatalf("retry on another handler got %s, want %s", again.JobID, first.JobID)
			}
		} else {
			wantCode(t, res, http.StatusConflict) // a different key cannot vouch for the request
		}
	}
}

func TestConcurrentJobLimit(t *testing.T) {
	e := setup(t, func(c *api.Config) { c.MaxConcurrentJobs = 2; c.RetryAfter = 15 * time.Second })
	key := e.NewKey(t, "alice")
	a, _ := e.submit(key, submitBody("init", ""), "Idempotency-Key", "a")
	e.mustSubmit(key)
	_, res := e.submit(key, submitBody("init", ""))
	wantCode(t, res, http.StatusTooManyRequests)
	if ra := res.header.Get("Retry-After"); ra != "15" {
		t.Errorf("Retry-After = %q, want 15", ra)
	}
	if !strings.Contains(res.errBody(t).Error, "limit 2") {
		t.Errorf("429 body: %s", res.body)
	}
	// A retry of an admitted submit still gets its job at the limit.
	again, res := e.submit(key, submitBody("init", ""), "Idempotency-Key", "a")
	wantCode(t, res, http.StatusOK)
	if again.JobID != a.JobID {
		t.Fatalf("retry at the limit got %s, want %s", again.JobID, a.JobID)
	}
	// The same Idempotency-Key with another URL is a conflict there too.
	_, res = e.submit(key, strings.Replace(submitBody("init", ""), "@target.example/", "@other.example/", 1), "Idempotency-Key", "a")
	wantCode(t, res, http.StatusConflict)
	// A finished job frees its slot.
	wantCode(t, e.do("POST", "/jobs/"+a.JobID+"/cancel", key, ""), http.StatusOK)
	e.mustSubmit(key)
}

func TestConcurrentJobLimitUnderBurst(t *testing.T) {
	const limit, n = 5, 40
	e := setup(t, func(c *api.Config) { c.MaxConcurrentJobs = limit })
	keys := []string{e.NewKey(t, "a"), e.NewKey(t, "b")}
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("POST", "/jobs", strings.NewReader(submitBody("init", "")))
			req.Header.Set("x-api-key", keys[i%2])
			rec := httptest.NewRecorder()
			e.Handler.ServeHTTP(rec, req)
			codes[i] = rec.Code
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[http.StatusCreated] != limit || count[http.StatusTooManyRequests] != n-limit {
		t.Fatalf("outcomes %v, want %d×201 and %d×429", count, limit, n-limit)
	}
	active, _ := e.Store.Active(context.Background())
	if len(active) != limit {
		t.Fatalf("%d active jobs, want %d", len(active), limit)
	}
}

func TestRateLimit(t *testing.T) {
	t.Run("global", func(t *testing.T) {
		e := setup(t, func(c *api.Config) { c.RateLimit = 2; c.RateBurst = 2 })
		key := e.NewKey(t, "alice")
		wantCode(t, e.do("GET", "/jobs", key, ""), http.StatusOK)
		for range 5 { // bad keys spend nothing of the global limit
			wantCode(t, e.do("GET", "/jobs", "wrong", ""), http.StatusUnauthorized)
		}
		wantCode(t, e.do("GET", "/jobs", key, ""), http.StatusOK)
		res := e.do("GET", "/jobs", key, "")
		wantCode(t, res, http.StatusTooManyRequests)
		if ra := res.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		// Health and metrics stay reachable under load.
		wantCode(t, e.do("GET", "/health", "", ""), http.StatusOK)
		e.Clock.Advance(time.Second)
		wantCode(t, e.do("GET", "/jobs", key, ""), http.StatusOK)
	})
	t.Run("failed authentication per address", func(t *testing.T) {
		e := setup(t, func(c *api.Config) { c.AuthFailureRate = 1; c.AuthFailureBurst = 3 })
		key := e.NewKey(t, "alice")
		attacker := []string{remoteAddr, "198.51.100.7:4000"}
		for range 3 {
			wantCode(t, e.do("GET", "/jobs", "sk_live_guess", "", attacker...), http.StatusUnauthorized)
		}
		res := e.do("GET", "/jobs", "sk_live_guess", "", attacker...)
		wantCode(t, res, http.StatusTooManyRequests)
		if ra := res.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		// Even a valid key is not checked from the flooding address...
		wantCode(t, e.do("GET", "/jobs", key, "", attacker...), http.StatusTooManyRequests)
		// ...but other addresses, IPv6 ones by their /64, are unaffected.
		wantCode(t, e.do("GET", "/jobs", key, "", remoteAddr, "203.0.113.9:5000"), http.StatusOK)
		v6 := []string{remoteAddr, "[2001:db8:1:2::1]:443"}
		for range 3 {
			wantCode(t, e.do("GET", "/jobs", "", "", v6...), http.StatusUnauthorized)
		}
		wantCode(t, e.do("GET", "/jobs", "", "", remoteAddr, "[2001:db8:1:2:ffff::9]:443"), http.StatusTooManyRequests)
		wantCode(t, e.do("GET", "/jobs", key, "", remoteAddr, "[2001:db8:1:3::1]:443"), http.StatusOK)
		e.Clock.Advance(time.Second)
		wantCode(t, e.do("GET", "/jobs", key, "", attacker...), http.StatusOK)
	})
	t.Run("per key", func(t *testing.T) {
		e := setup(t, func(c *api.Config) { c.KeyRateLimit = 0.5; c.KeyRateBurst = 1 })
		alice, bob := e.NewKey(t, "alice"), e.NewKey(t, "bob")
		job := e.mustSubmit(alice) // spends alice's token; the clock moves 1s
		res := e.do("GET", "/jobs/"+job.JobID, alice, "")
		wantCode(t, res, http.StatusTooManyRequests)
		if ra := res.header.Get("Retry-After"); ra != "1" { // half a token refilled, half to go at 0.5/s
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		wantCode(t, e.do("GET", "/jobs", bob, ""), http.StatusOK)
		e.Clock.Advance(time.Second)
		wantCode(t, e.do("GET", "/jobs/"+job.JobID, alice, ""), http.StatusOK)
	})
}

func TestGetJobShowsProgressHistoryAndNoCredentials(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	ctx := context.Background()
	job := e.mustSubmit(key)

	res := e.do("GET", "/jobs/"+job.JobID, key, "", "X-Forwarded-Proto", "https")
	wantCode(t, res, http.StatusOK)
	var raw map[string]any
	res.json(t, &raw)
	for _, absent := range []string{"started_at", "completed_at", "error", "credentials", "source_url", "target_url", "owner", "idempotency_key"} {
		if _, ok := raw[absent]; ok {
			t.Errorf("fresh job view has %q: %s", absent, res.body)
		}
	}
	if got := raw["log_url"]; got != "https://example.com/jobs/"+job.JobID+"/logs" {
		t.Errorf("log_url = %v", got)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", res.header.Get("Cache-Control"))
	}

	steps := []jobs.Transition{
		jobs.Provisioned("pid-1", "local", ""),
		jobs.Started("pid-1"),
		jobs.Heartbeat(&jobs.Progress{CurrentDatabase: "analytics", DatabasesCompleted: 1, DatabasesTotal: 2, TablesCompleted: 3, TablesTotal: 9, BytesCopied: 100, BytesTotal: 400}),
		jobs.Completed(nil),
	}
	for _, s := range steps {
		e.Clock.Advance(time.Minute)
		if _, err := e.Store.Apply(ctx, job.JobID, s); err != nil {
			t.Fatal(err)
		}
	}
	var v api.JobView
	e.do("GET", "/jobs/"+job.JobID, key, "").json(t, &v)
	if v.Status != jobs.StatusCompleted || v.Command != jobs.CommandInit || v.TraceID != job.TraceID ||
		v.StartedAt == nil || v.CompletedAt == nil || !v.CompletedAt.After(*v.StartedAt) {
		t.Fatalf("view = %+v", v)
	}
	p := v.Progress
	if p.CurrentDatabase != "analytics" || p.DatabasesCompleted != 1 || p.DatabasesTotal != 2 || p.TablesTotal != 9 || p.BytesCopied != 100 {
		t.Fatalf("progress = %+v", p)
	}
	var statuses []jobs.Status
	for _, h := range v.History {
		if h.At.IsZero() {
			t.Errorf("history entry without time: %+v", h)
		}
		statuses = append(statuses, h.Status)
	}
	if fmt.Sprint(statuses) != "[provisioning running completed]" {
		t.Fatalf("history = %v", statuses)
	}
}

func TestListPagesNewestFirst(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	var ids []string
	for range 5 {
		ids = append(ids, e.mustSubmit(key).JobID)
	}
	if _, err := e.Store.Apply(context.Background(), ids[1], jobs.Cancelled()); err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		path := "/jobs?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var l api.ListResponse
		res := e.do("GET", path, key, "")
		wantCode(t, res, http.StatusOK)
		res.json(t, &l)
		if len(l.Jobs) > 2 {
			t.Fatalf("page of %d jobs with limit 2", len(l.Jobs))
		}
		for _, j := range l.Jobs {
			got = append(got, j.JobID)
		}
		if l.NextCursor == "" {
			break
		}
		cursor = l.NextCursor
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want newest first %v", got, want)
	}
	var l api.ListResponse
	e.do("GET", "/jobs?status=cancelled", key, "").json(t, &l)
	if len(l.Jobs) != 1 || l.Jobs[0].JobID != ids[1] {
		t.Fatalf("status filter: %+v", l.Jobs)
	}
	empty := e.do("GET", "/jobs?status=completed", key, "")
	if !strings.Contains(empty.body, `"jobs":[]`) {
		t.Fatalf("empty page: %s", empty.body)
	}
	for _, bad := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=101", "limit"}, {"limit=x", "limit"},
		{"status=done", "status"}, {"cursor=not-a-cursor", "cursor"},
	} {
		res := e.do("GET", "/jobs?"+bad.query, key, "")
		wantCode(t, res, http.StatusBadRequest)
		if f := res.errBody(t).Field; f != bad.field {
			t.Errorf("%s: field %q, want %q", bad.query, f, bad.field)
		}
	}
}

func readLines(t *testing.T, body string) []joblog.Line {
	t.Helper()
	var out []joblog.Line
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var l joblog.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad NDJSON line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func appendLog(t *testing.T, e *env, id string, texts ...string) {
	t.Helper()
	var lines []joblog.Line
	for _, s := range texts {
		lines = append(lines, joblog.Line{Time: e.Clock.Now(), Text: s})
	}
	if err := e.Logs.Append(context.Background(), id, lines); err != nil {
		t.Fatal(err)
	}
}

func TestLogs(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	appendLog(t, e, job.JobID, "one", "two", "three")

	res := e.do("GET", "/jobs/"+job.JobID+"/logs", key, "")
	wantCode(t, res, http.StatusOK)
	if ct := res.header.Get("Content-Type"); ct != api.LogContentType {
		t.Errorf("Content-Type = %q", ct)
	}
	lines := readLines(t, res.body)
	if len(lines) != 3 || lines[0].Text != "one" || lines[2].Text != "three" || lines[0].Seq >= lines[1].Seq {
		t.Fatalf("lines = %+v", lines)
	}
	after := readLines(t, e.do("GET", fmt.Sprintf("/jobs/%s/logs?after=%d", job.JobID, lines[0].Seq), key, "").body)
	if len(after) != 2 || after[0].Text != "two" {
		t.Fatalf("after=%d: %+v", lines[0].Seq, after)
	}
	limited := readLines(t, e.do("GET", "/jobs/"+job.JobID+"/logs?limit=1", key, "").body)
	if len(limited) != 1 || limited[0].Text != "one" {
		t.Fatalf("limit=1: %+v", limited)
	}
	for _, bad := range []struct{ query, field string }{
		{"after=-1", "after"}, {"after=x", "after"}, {"limit=0", "limit"},
		{"follow=maybe", "follow"}, {"follow=true&limit=5", "limit"},
	} {
		res := e.do("GET", "/jobs/"+job.JobID+"/logs?"+bad.query, key, "")
		wantCode(t, res, http.StatusBadRequest)
		if f := res.errBody(t).Field; f != bad.field {
			t.Errorf("%s: field %q, want %q", bad.query, f, bad.field)
		}
	}
	wantCode(t, e.do("GET", "/jobs/nope/logs", key, ""), http.StatusNotFound)
}

// A followed log streams lines as they are written and ends once the job
// has ended and every line was sent.
func TestLogsFollowStreamsUntilJobEnds(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	ctx := context.Background()
	if _, err := e.Store.Apply(ctx, job.JobID, jobs.Started("pid")); err != nil {
		t.Fatal(err)
	}
	appendLog(t, e, job.JobID, "first")

	srv := httptest.NewServer(e.Handler)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/jobs/"+job.JobID+"/logs?follow=true", nil)
	req.Header.Set("x-api-key", key)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended early: %v", sc.Err())
		}
		var l joblog.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		return l.Text
	}
	if got := next(); got != "first" {
		t.Fatalf("got %q", got)
	}
	// Written while the client is reading: arrives on the open stream.
	appendLog(t, e, job.JobID, "second")
	if got := next(); got != "second" {
		t.Fatalf("got %q", got)
	}
	// Lines written right before the job ends are still delivered, then
	// the stream ends.
	appendLog(t, e, job.JobID, "last words")
	if _, err := e.Store.Apply(ctx, job.JobID, jobs.Completed(nil)); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "last words" {
		t.Fatalf("got %q", got)
	}
	done := make(chan bool)
	go func() { done <- sc.Scan() }()
	select {
	case more := <-done:
		if more {
			t.Fatalf("unexpected line after the end: %s", sc.Text())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the job completed")
	}
}

func TestLogsFollowTimeoutEndsStream(t *testing.T) {
	e := setup(t, func(c *api.Config) { c.FollowTimeout = 50 * time.Millisecond })
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	start := time.Now()
	res := e.do("GET", "/jobs/"+job.JobID+"/logs?follow=true", key, "")
	wantCode(t, res, http.StatusOK)
	if time.Since(start) > 5*time.Second {
		t.Fatal("follow of a live job ignored FollowTimeout")
	}
}

// cancelFunc adapts a function to api.Canceller (the service layer's role).
type cancelFunc func(ctx context.Context, id string) error

func (f cancelFunc) Cancel(ctx context.Context, id string) error { return f(ctx, id) }

func TestCancel(t *testing.T) {
	t.Run("marks cancelled", func(t *testing.T) {
		e := setup(t, nil)
		key := e.NewKey(t, "alice")
		job := e.mustSubmit(key)
		res := e.do("POST", "/jobs/"+job.JobID+"/cancel", key, "")
		wantCode(t, res, http.StatusOK)
		var v api.JobView
		res.json(t, &v)
		if v.Status != jobs.StatusCancelled || v.CompletedAt == nil || v.Error == "" {
			t.Fatalf("cancelled view = %+v", v)
		}
		again := e.do("POST", "/jobs/"+job.JobID+"/cancel", key, "")
		wantCode(t, again, http.StatusConflict)
		if eb := again.errBody(t); eb.Status != jobs.StatusCancelled {
			t.Fatalf("409 body: %s", again.body)
		}
		if m := e.do("GET", "/metrics", "", "").body; !strings.Contains(m, `seren_job_finished_total{command="init",status="cancelled"} 1`) {
			t.Errorf("metrics lack the cancelled job:\n%s", m)
		}
		wantCode(t, e.do("POST", "/jobs/nope/cancel", key, ""), http.StatusNotFound)
	})
	t.Run("completed job", func(t *testing.T) {
		e := setup(t, nil)
		key := e.NewKey(t, "alice")
		job := e.mustSubmit(key)
		ctx := context.Background()
		e.Store.Apply(ctx, job.JobID, jobs.Started(""))
		e.Store.Apply(ctx, job.JobID, jobs.Completed(nil))
		res := e.do("POST", "/jobs/"+job.JobID+"/cancel", key, "")
		wantCode(t, res, http.StatusConflict)
		if eb := res.errBody(t); eb.Status != jobs.StatusCompleted {
			t.Fatalf("409 body: %s", res.body)
		}
	})
	t.Run("via service canceller", func(t *testing.T) {
		var asked []string
		e := setup(t, func(c *api.Config) {
			c.Canceller = cancelFunc(func(ctx context.Context, id string) error { asked = append(asked, id); return nil })
		})
		key := e.NewKey(t, "alice")
		job := e.mustSubmit(key)
		res := e.do("POST", "/jobs/"+job.JobID+"/cancel", key, "")
		wantCode(t, res, http.StatusAccepted) // the service is still stopping the worker
		if len(asked) != 1 || asked[0] != job.JobID {
			t.Fatalf("canceller asked for %v", asked)
		}
	})
	t.Run("canceller reports conflict", func(t *testing.T) {
		var e *env
		e = setup(t, func(c *api.Config) {
			c.Canceller = cancelFunc(func(ctx context.Context, id string) error {
				// The worker finished just before the cancel landed.
				e.Store.Apply(ctx, id, jobs.Started(""))
				e.Store.Apply(ctx, id, jobs.Completed(nil))
				return fmt.Errorf("cancel: %w", jobs.ErrConflict)
			})
		})
		key := e.NewKey(t, "alice")
		job := e.mustSubmit(key)
		res := e.do("POST", "/jobs/"+job.JobID+"/cancel", key, "")
		wantCode(t, res, http.StatusConflict)
	})
}

func TestHealthAndBackendFailures(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	res := e.do("GET", "/health", "", "")
	wantCode(t, res, http.StatusOK)
	var h api.HealthResponse
	res.json(t, &h)
	if h.Status != "ok" || h.Store != "ok" || h.Version != "test" {
		t.Fatalf("health = %+v", h)
	}

	// The queue fails: the job is not left provisioning forever.
	if err := e.Queue.Close(); err != nil {
		t.Fatal(err)
	}
	sr, res := e.submit(key, submitBody("init", ""))
	wantCode(t, res, http.StatusServiceUnavailable)
	_ = sr
	var l api.ListResponse
	e.do("GET", "/jobs?status=failed", key, "").json(t, &l)
	if len(l.Jobs) != 1 || !strings.Contains(l.Jobs[0].Error, "queued") {
		t.Fatalf("unqueued job: %+v", l.Jobs)
	}

	// The store fails: 503 without detail, health says so.
	e.DB.Close()
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/jobs", submitBody("init", "")},
		{"GET", "/jobs/" + job.JobID, ""},
		{"GET", "/jobs", ""},
	} {
		res := e.do(r.method, r.path, key, r.body)
		if res.code != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the store down: %d %s", r.method, r.path, res.code, res.body)
		}
		if strings.Contains(res.body, "sql") {
			t.Errorf("%s %s leaks backend detail: %s", r.method, r.path, res.body)
		}
	}
	res = e.do("GET", "/health", "", "")
	wantCode(t, res, http.StatusServiceUnavailable)
	res.json(t, &h)
	if h.Status != "unavailable" || h.Store != "unreachable" {
		t.Fatalf("health = %+v", h)
	}
}

func TestRouting(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	for _, p := range []string{"/", "/job", "/jobs/x/y", "/jobs/x/logs/more", "/admin"} {
		res := e.do("GET", p, key, "")
		if res.code != http.StatusNotFound || res.body != `{"error":"not found"}`+"\n" {
			t.Errorf("GET %s: %d %s", p, res.code, res.body)
		}
	}
	for _, r := range []struct{ method, path, allow string }{
		{"DELETE", "/jobs/x", "GET, HEAD"},
		{"PUT", "/jobs", "GET, HEAD, POST"},
		{"GET", "/jobs/x/cancel", "POST"},
		{"POST", "/health", "GET, HEAD"},
	} {
		res := e.do(r.method, r.path, key, "")
		if res.code != http.StatusMethodNotAllowed || res.errBody(t).Error != "method not allowed" {
			t.Errorf("%s %s: %d %s", r.method, r.path, res.code, res.body)
		}
		if got := res.header.Get("Allow"); got != r.allow {
			t.Errorf("%s %s: Allow %q, want %q", r.method, r.path, got, r.allow)
		}
	}
}

func TestPanicIsRecoveredWithoutDetail(t *testing.T) {
	e := setup(t, func(c *api.Config) {
		c.Canceller = cancelFunc(func(ctx context.Context, id string) error {
			panic(errors.New("boom with " + srcURL))
		})
	})
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	res := e.do("POST", "/jobs/"+job.JobID+"/cancel", key, "")
	wantCode(t, res, http.StatusInternalServerError)
	if res.body != `{"error":"internal error"}`+"\n" {
		t.Fatalf("500 body: %s", res.body)
	}
	if !strings.Contains(e.LogBuf.String(), "panic in API handler") {
		t.Fatal("panic not logged")
	}
	// The handler keeps serving.
	wantCode(t, e.do("GET", "/jobs/"+job.JobID, key, ""), http.StatusOK)
}

func TestAccessLogHasNoKeysOrBodies(t *testing.T) {
	e := setup(t, nil)
	key := e.NewKey(t, "alice")
	job := e.mustSubmit(key)
	e.do("GET", "/jobs/"+job.JobID, key, "")
	e.do("GET", "/jobs", "wrong-key-secret", "")
	logs := e.LogBuf.String()
	for _, secret := range []string{key, "wrong-key-secret", "source.example"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
	var sawRoute bool
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "http request" && m["route"] == "GET /jobs/{id}" {
			sawRoute = true
			if m["status"] != float64(200) || m["job_id"] != job.JobID || m["key_owner"] == nil {
				t.Errorf("access log line: %s", line)
			}
		}
	}
	if !sawRoute {
		t.Fatalf("no access log line for GET /jobs/{id}:\n%s", logs)
	}
}

// The same Handler serves several independent instances (no global state).
func TestIndependentHandlers(t *testing.T) {
	a := setup(t, func(c *api.Config) { c.RateLimit = 1; c.RateBurst = 1 })
	b := setup(t, nil)
	ka, kb := a.NewKey(t, "x"), b.NewKey(t, "x")
	wantCode(t, a.do("GET", "/jobs", ka, ""), http.StatusOK)
	wantCode(t, a.do("GET", "/jobs", ka, ""), http.StatusTooManyRequests)
	wantCode(t, b.do("GET", "/jobs", kb, ""), http.StatusOK)
}
