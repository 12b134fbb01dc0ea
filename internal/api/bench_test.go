package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/api/apitest"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// Benchmarks over loopback HTTP with the real SQLite backends. The load
// test of a running `serve` is scripts/bench-api.sh.

func benchServer(b *testing.B) (*apitest.Env, *httptest.Server, string) {
	e := apitest.New(b, func(c *api.Config) {
		c.MaxConcurrentJobs = 1 << 30
		c.RateLimit = -1
		c.Now = time.Now
		// What serve logs by default (info, text), minus the terminal.
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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

// BenchmarkSubmit runs 16 concurrent clients, on an empty service and on
// one with a deep queue (every job still provisioning): what a submit
// costs must not grow with the number of queued jobs.
func BenchmarkSubmit(b *testing.B) {
	for _, queued := range []int{0, 10000} {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			e, srv, key := benchServer(b)
			ctx := context.Background()
			for i := range queued {
				j, err := e.Store.Create(ctx, &jobs.Job{Owner: "filler", Spec: jobs.Spec{Command: jobs.CommandInit}})
				if err != nil {
					b.Fatalf("fill job %d: %v", i, err)
				}
				if err := e.Queue.Send(ctx, j.ID); err != nil {
					b.Fatalf("fill job %d: %v", i, err)
				}
			}
			body := submitBody("init", "")
			b.SetParallelism(8)
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
		})
	}
}

func decode(b *testing.B, resp *http.Response, v any) {
	b.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		b.Fatal(err)
	}
}
