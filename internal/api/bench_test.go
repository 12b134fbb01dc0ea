package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
)

// Benchmarks over loopback HTTP with the real SQLite backends. The load
// test of a running `serve` is scripts/bench-api.sh.

func benchServer(b *testing.B) (*apitest.Env, *httptest.Server, string) {
	e := apitest.New(b, func(c *api.Config) {
		c.MaxConcurrentJobs = 1 << 30
		c.RateLimit = -1
		c.Now = time.Now
	})
	srv := httptest.NewServer(e.Handler)
	b.Cleanup(srv.Close)
	return e, srv, e.NewKey(b, "bench")
}

func BenchmarkGetJob(b *testing.B) {
	_, srv, key := benchServer(b)
	req, _ := http.NewRequest("POST", srv.URL+"/jobs", strings.NewReader(submitBody("init", "")))
	req.Header.Set("x-api-key", key)
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 201 {
		b.Fatalf("submit: %v %v", resp, err)
	}
	var sr api.SubmitResponse
	decode(b, resp, &sr)
	url := srv.URL + "/jobs/" + sr.JobID
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
		for pb.Next() {
			req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
			req.Header.Set("x-api-key", key)
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func BenchmarkSubmit(b *testing.B) {
	_, srv, key := benchServer(b)
	body := submitBody("init", "")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
		for pb.Next() {
			req, _ := http.NewRequest("POST", srv.URL+"/jobs", strings.NewReader(body))
			req.Header.Set("x-api-key", key)
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

func decode(b *testing.B, resp *http.Response, v any) {
	b.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		b.Fatal(err)
	}
}
