package servecmd_test

// Attack tests of the API's own fences against a real `serve` (issue 8,
// deliverable 3): authentication before the shared rate limit, one key
// against another, slow bodies and headers, the connection cap (with log
// following still working), and Idempotency-Key reuse. None needs
// PostgreSQL: the workers are a stub that sleeps, so jobs stay active.

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
)

// sleepWorker is a `worker` stand-in that holds its slot until stopped.
func sleepWorker(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "worker-stub")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexec sleep 3600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientFrom returns an HTTP client whose connections come from the local
// address ip (any 127.0.0.0/8 address works on Linux loopback), so one test
// can play several client addresses.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16},
		Timeout:   30 * time.Second,
	}
}

// call sends one request and returns the status and body.
func call(t *testing.T, c *http.Client, method, url, key, body string, hdr ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(api.APIKeyHeader, key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// jobBody is a submit body for a job the stub worker "runs". The hosts are
// never contacted.
func jobBody(t *testing.T, target string, filter jobs.Filter) string {
	t.Helper()
	b, err := json.Marshal(jobs.Request{SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
		SourceURL: "postgresql://app:source-pw@source.example.com:5432/postgres",
		TargetURL: target, Filter: filter, Options: jobs.Options{NoSync: true}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAttackBadKeyFloodCannotStarveValidKey(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "victim")
	// A tiny global limit: before the fence, bad keys spent it.
	srv := startServe(t, dataDir, "--rate-limit", "2")

	attacker := clientFrom("127.0.0.2")
	var unauthorized, limited int
	for i := 0; i < 60; i++ {
		code, _ := call(t, attacker, "GET", srv.url+"/jobs", "sk_live_wrong", "")
		switch code {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("bad key answered %d", code)
		}
	}
	if limited == 0 {
		t.Errorf("60 bad keys from one address were never limited (%d × 401)", unauthorized)
	}
	victim := clientFrom("127.0.0.1")
	if code, body := call(t, victim, "GET", srv.url+"/jobs", key, ""); code != http.StatusOK {
		t.Fatalf("valid key after a bad-key flood from another address: %d %s, want 200", code, body)
	}
}

func TestAttackOneKeyCannotStarveAnother(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	greedy := createKey(t, dataDir, "greedy")
	modest := createKey(t, dataDir, "modest")
	srv := startServe(t, dataDir, "--rate-limit", "10", "--key-rate-limit", "2")

	c := clientFrom("127.0.0.1")
	limited := 0
	for i := 0; i < 60; i++ {
		if code, _ := call(t, c, "GET", srv.url+"/jobs", greedy, ""); code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("one key sent 60 requests at a per-key limit of 2/s and was never limited")
	}
	if code, body := call(t, c, "GET", srv.url+"/jobs", modest, ""); code != http.StatusOK {
		t.Fatalf("second key after the first one's flood: %d %s, want 200", code, body)
	}
}

// trickle opens a connection, writes head at once, then one byte of tail
// every 200ms until the server closes the connection. It returns how long
// the server kept the connection, or fails after limit.
func trickle(t *testing.T, addr, head, tail string, limit time.Duration) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		// The server is done with us once a read returns (a response or
		// the connection's end).
		_ = conn.SetReadDeadline(time.Now().Add(limit))
		_, _ = io.Copy(io.Discard, conn)
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % len(tail) {
		select {
		case <-closed:
			return time.Since(start)
		case <-tick.C:
		}
		if time.Since(start) > limit {
			t.Fatalf("the server still held the trickling connection after %s", limit)
		}
		if _, err := conn.Write([]byte{tail[i]}); err != nil {
			<-closed
			return time.Since(start)
		}
	}
}

func TestAttackSlowBodyIsCutOff(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "slow")
	srv := startServe(t, dataDir, "--read-timeout", "2s")
	addr := strings.TrimPrefix(srv.url, "http://")
	head := "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		api.APIKeyHeader + ": " + key + "\r\nContent-Length: 100000\r\n\r\n"
	held := trickle(t, addr, head, `{"schema_version":"1",        `, 30*time.Second)
	t.Logf("slow body cut off after %s", held.Round(time.Millisecond))
}

func TestAttackSlowHeaderIsCutOff(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, "--read-header-timeout", "2s")
	addr := strings.TrimPrefix(srv.url, "http://")
	held := trickle(t, addr, "GET /jobs HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n", 30*time.Second)
	t.Logf("slow header cut off after %s", held.Round(time.Millisecond))
}

func TestAttackConnectionCap(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, "--max-connections", "3", "--read-header-timeout", "3s")
	addr := strings.TrimPrefix(srv.url, "http://")
	// Fill the cap with connections that say nothing.
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	// While they are held, another client is not served...
	c := &http.Client{Timeout: 1500 * time.Millisecond}
	resp, err := c.Get(srv.url + "/health")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a fourth connection was served (%d) while the cap of 3 was full", resp.StatusCode)
	}
	// ...until the header timeout frees the silent ones.
	c.Timeout = 30 * time.Second
	resp, err = c.Get(srv.url + "/health")
	if err != nil {
		t.Fatalf("after the silent connections timed out: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %d", resp.StatusCode)
	}
}

func TestLogFollowOutlivesReadTimeout(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "follower")
	srv := startServe(t, dataDir, "--read-timeout", "1s", "--write-timeout", "2s", "--worker-binary", sleepWorker(t),
		"--max-concurrent-jobs", "1")
	followOutlivesTimeouts(t, clientFrom("127.0.0.1"), srv.url, key)
}

// followOutlivesTimeouts submits a job (that the stub worker holds),
// follows its log for longer than serve's 1s read and 2s write timeouts,
// cancels it and expects the stream to end cleanly.
func followOutlivesTimeouts(t *testing.T, c *http.Client, base, key string) {
	t.Helper()
	code, body := call(t, c, "POST", base+"/jobs", key,
		jobBody(t, "postgresql://app:target-pw@target.example.com:5432/postgres", jobs.Filter{}))
	if code != http.StatusCreated {
		t.Fatalf("submit: %d %s", code, body)
	}
	var sub api.SubmitResponse
	if err := json.Unmarshal([]byte(body), &sub); err != nil {
		t.Fatal(err)
	}

	req, _ := http.NewRequest("GET", base+"/jobs/"+sub.JobID+"/logs?follow=true", nil)
	req.Header.Set(api.APIKeyHeader, key)
	follow := *c
	follow.Timeout = 0
	resp, err := follow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the followed log (%s) ended after less than 4s with 1s read and 2s write timeouts (err %v) while the job runs", resp.Proto, err)
	case <-time.After(4 * time.Second):
	}
	if code, body := call(t, c, "POST", base+"/jobs/"+sub.JobID+"/cancel", key, ""); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", code, body)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("the followed log (%s) ended with %v, want a clean end once the job ended", resp.Proto, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the followed log did not end after the job was cancelled")
	}
}

func TestAttackIdempotencyKeyReuseWithDifferentRequest(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "idem")
	srv := startServe(t, dataDir, "--worker-binary", sleepWorker(t), "--max-concurrent-jobs", "1",
		"--max-queued-jobs", "10")
	c := clientFrom("127.0.0.1")
	targetA := "postgresql://app:target-pw@target-a.example.com:5432/postgres"
	targetB := "postgresql://app:other-secret-pw@target-b.example.com:5432/postgres"
	idem := []string{api.IdempotencyKeyHeader, "retry-1"}

	code, body := call(t, c, "POST", srv.url+"/jobs", key, jobBody(t, targetA, jobs.Filter{}), idem...)
	if code != http.StatusCreated {
		t.Fatalf("first submit: %d %s", code, body)
	}
	var first api.SubmitResponse
	_ = json.Unmarshal([]byte(body), &first)

	code, body = call(t, c, "POST", srv.url+"/jobs", key, jobBody(t, targetA, jobs.Filter{}), idem...)
	var again api.SubmitResponse
	_ = json.Unmarshal([]byte(body), &again)
	if code != http.StatusOK || again.JobID != first.JobID {
		t.Fatalf("identical retry: %d %s, want 200 with job %s", code, body, first.JobID)
	}

	for name, b := range map[string]string{
		"other target URL": jobBody(t, targetB, jobs.Filter{}),
		"other filter":     jobBody(t, targetA, jobs.Filter{IncludeDatabases: []string{"shop"}}),
	} {
		code, body = call(t, c, "POST", srv.url+"/jobs", key, b, idem...)
		if code != http.StatusConflict {
			t.Errorf("%s under the same Idempotency-Key: %d %s, want 409", name, code, body)
		}
		if strings.Contains(body, first.JobID) {
			t.Errorf("%s: the 409 names the other job: %s", name, body)
		}
	}

	// The URLs are compared without being stored in clear.
	srv.stop(t)
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dataDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"target-a.example.com", "target-pw", "source-pw"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds %q in clear", e.Name(), secret)
			}
		}
	}
}
