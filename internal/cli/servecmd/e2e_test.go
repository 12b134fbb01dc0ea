package servecmd_test

// End-to-end tests of the embedded job service through the real binary:
// `serve` as a subprocess, `keys create`, the remote `init` client, and
// real `worker` processes copying between real PostgreSQL clusters.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serenorg/postgres-seren-replicator/internal/api"
	"github.com/serenorg/postgres-seren-replicator/internal/apiclient"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
)

// binary is the postgres-seren-replicator built once for these tests.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "serve-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if b := os.Getenv("SEREN_TEST_BINARY"); b != "" {
		// A given build, e.g. to see an attack succeed against the code
		// before its fence.
		binary = b
		return pgtest.Run(m)
	}
	binary = filepath.Join(dir, "postgres-seren-replicator")
	cmd := exec.Command("go", "build", "-o", binary, "github.com/serenorg/postgres-seren-replicator/cmd/postgres-seren-replicator")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the binary:", err)
		return 1
	}
	return pgtest.Run(m)
}

// serveProc is one running `serve`.
type serveProc struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
	logPath string
	done    chan struct{}
}

func startServe(t *testing.T, dataDir string, args ...string) *serveProc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The test clusters listen on 127.0.0.1, which the default network
	// policy refuses; tests of the default pass --allow-networks= again.
	all := append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--log-level", "debug", "--allow-networks=127.0.0.0/8"}, args...)
	cmd := exec.Command(binary, all...)
	cmd.Env = os.Environ()
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, dataDir: dataDir, logPath: logPath, done: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			urlc <- strings.TrimSpace(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	select {
	case p.url = <-urlc:
	case <-p.done:
		t.Fatalf("serve exited at start:\n%s", readFile(t, logPath))
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not print its URL")
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends serve gracefully (SIGTERM) and waits for it.
func (p *serveProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("serve did not stop within 60s of SIGTERM")
	}
}

// kill9 ends serve the hard way: no cleanup at all.
func (p *serveProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

type result struct {
	stdout, stderr string
	code           int
}

func runBin(t *testing.T, ctx context.Context, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

func createKey(t *testing.T, dataDir, name string) string {
	t.Helper()
	r := runBin(t, context.Background(), nil, "keys", "create", "--data-dir", dataDir, "--name", name)
	if r.code != 0 {
		t.Fatalf("keys create: %d\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "sk_live_") {
		t.Fatalf("keys create printed %q", r.stdout)
	}
	return key
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJob(t *testing.T, c *apiclient.Client, id string) api.JobView {
	t.Helper()
	v, err := c.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func waitEnded(t *testing.T, c *apiclient.Client, id string, d time.Duration) api.JobView {
	t.Helper()
	var v api.JobView
	waitFor(t, d, "job "+id+" to end", func() bool {
		v = getJob(t, c, id)
		return v.Status.Terminal()
	})
	return v
}

func jobLog(t *testing.T, c *apiclient.Client, id string) string {
	t.Helper()
	var sb strings.Builder
	if _, err := c.Logs(context.Background(), id, apiclient.LogOptions{}, func(l joblog.Line) error {
		sb.WriteString(l.Text + "\n")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func count(t *testing.T, c *pgtest.Cluster, db, table string) int {
	t.Helper()
	var n int
	if err := c.Conn(t, db).QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s.%s: %v", db, table, err)
	}
	return n
}

// rawGet fetches path with the key and returns the body (for secret greps).
func rawGet(t *testing.T, base, key, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("x-api-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

func TestRemoteInitEndToEnd(t *testing.T) {
	const sentinel = "Sentinel-pw-7f3a9c"
	src := pgtest.New(t, pgtest.Options{Password: sentinel})
	dst := pgtest.New(t, pgtest.Options{Password: sentinel})
	tables := map[string][]string{
		"shop":      {"customers", "orders"},
		"analytics": {"events"},
	}
	src.Exec(t, "postgres", "CREATE DATABASE shop")
	src.Exec(t, "postgres", "CREATE DATABASE analytics")
	src.Exec(t, "shop", `CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
		INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 300) g;
		CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, total numeric(10,2));
		INSERT INTO orders (customer_id, total) SELECT 1 + g % 300, g * 1.5 FROM generate_series(1, 2000) g;`)
	src.Exec(t, "analytics", `CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text, at timestamptz DEFAULT now());
		INSERT INTO events (kind) SELECT 'k' || (g % 7) FROM generate_series(1, 1500) g;`)

	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "e2e")
	srv := startServe(t, dataDir, "--check-interval", "500ms")

	env := []string{
		"SEREN_REMOTE_API=" + srv.url, "SEREN_API_KEY=" + key,
		"SEREN_SOURCE_URL=" + src.URL("postgres").Secret(), "SEREN_TARGET_URL=" + dst.URL("postgres").Secret(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := runBin(t, ctx, env, "init", "--include-databases", "shop,analytics", "--no-sync", "--yes")
	if r.code != 0 {
		t.Fatalf("remote init exited %d\nstdout:\n%s\nstderr:\n%s\nserve log:\n%s", r.code, r.stdout, r.stderr, readFile(t, srv.logPath))
	}
	var jobID, traceID string
	for _, line := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(line, "Job ID: "); ok {
			jobID = v
		}
		if v, ok := strings.CutPrefix(line, "Trace ID: "); ok {
			traceID = v
		}
	}
	if jobID == "" || traceID == "" {
		t.Fatalf("init did not print the Job ID and Trace ID:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "Job "+jobID+" completed") {
		t.Fatalf("stderr lacks the outcome:\n%s", r.stderr)
	}

	// The target matches the source, table by table.
	for db, ts := range tables {
		for _, tb := range ts {
			if s, d := count(t, src, db, tb), count(t, dst, db, tb); s != d || s == 0 {
				t.Fatalf("%s.%s: source %d rows, target %d", db, tb, s, d)
			}
		}
	}

	// The job record: status, timestamps, progress, estimate, log.
	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	v := getJob(t, c, jobID)
	if v.Status != jobs.StatusCompleted || v.TraceID != traceID || v.StartedAt == nil || v.CompletedAt == nil {
		t.Fatalf("job view %+v", v)
	}
	if !v.CreatedAt.Before(*v.CompletedAt) || v.StartedAt.Before(v.CreatedAt) {
		t.Fatalf("timestamps out of order: created %v started %v completed %v", v.CreatedAt, v.StartedAt, v.CompletedAt)
	}
	if p := v.Progress; p.DatabasesTotal != 2 || p.DatabasesCompleted != 2 || p.TablesCompleted != 3 {
		t.Fatalf("final progress %+v", p)
	}
	if v.Options.EstimatedSizeBytes <= 0 {
		t.Fatalf("no size estimate sent: %+v", v.Options)
	}
	if len(v.History) < 3 || v.History[len(v.History)-1].Status != jobs.StatusCompleted {
		t.Fatalf("history %+v", v.History)
	}
	logText := jobLog(t, c, jobID)
	for _, line := range strings.Split(strings.TrimSpace(logText), "\n") {
		if !strings.HasPrefix(line, "[TRACE:"+traceID+"] ") {
			t.Fatalf("log line not tagged with the trace id: %q", line)
		}
	}
	for _, want := range []string{"started init job", "init done: 2 databases", "job completed"} {
		if !strings.Contains(logText, want) {
			t.Fatalf("log lacks %q:\n%s", want, logText)
		}
	}

	// `jobs` client commands see it.
	lr := runBin(t, ctx, env, "jobs", "list", "--json")
	var list api.ListResponse
	if err := json.Unmarshal([]byte(lr.stdout), &list); err != nil || len(list.Jobs) != 1 || list.Jobs[0].JobID != jobID {
		t.Fatalf("jobs list --json: %v %s", err, lr.stdout)
	}
	if sr := runBin(t, ctx, env, "jobs", "show", jobID, "--follow"); sr.code != 0 || !strings.Contains(sr.stdout, "completed") {
		t.Fatalf("jobs show --follow: %d\n%s%s", sr.code, sr.stdout, sr.stderr)
	}

	// No credential anywhere: the database files, the logs, the API's answers.
	var haystacks []string
	for _, f := range []string{"seren.db", "seren.db-wal", "seren.db-shm"} {
		haystacks = append(haystacks, filepath.Join(dataDir, f))
	}
	workerLogs, _ := filepath.Glob(filepath.Join(dataDir, "workers", "*.log"))
	if len(workerLogs) != 1 {
		t.Fatalf("worker logs: %v", workerLogs)
	}
	haystacks = append(haystacks, workerLogs...)
	haystacks = append(haystacks, srv.logPath)
	srv.stop(t) // checkpoint the WAL too: check both states
	for _, f := range haystacks {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(sentinel)) {
			t.Fatalf("%s contains the password", f)
		}
	}
	srv2 := startServe(t, dataDir)
	answers := [][]byte{
		[]byte(r.stdout + r.stderr + lr.stdout),
		rawGet(t, srv2.url, key, "/jobs/"+jobID),
		rawGet(t, srv2.url, key, "/jobs"),
		rawGet(t, srv2.url, key, "/jobs/"+jobID+"/logs"),
	}
	for i, a := range answers {
		if bytes.Contains(a, []byte(sentinel)) {
			t.Fatalf("answer %d contains the password:\n%s", i, a)
		}
	}
	if b := readFile(t, filepath.Join(dataDir, "seren.db")); strings.Contains(b, sentinel) {
		t.Fatal("seren.db contains the password after the restart")
	}
}

// slowSource creates a database whose table "slow" takes about n*0.25 s to
// copy (a row filter sleeps per row) next to two quick tables.
func slowSource(t *testing.T, src *pgtest.Cluster, dst *pgtest.Cluster, rows int) string {
	t.Helper()
	name, _ := src.NewDB(t, dst)
	// Each row of slow takes 0.25 s to write on the target: its CHECK
	// constraint (restored with the table, before the data) sleeps. Row
	// filters cannot call pg_sleep. (Not while the source is filled.)
	src.Exec(t, name, fmt.Sprintf(`CREATE FUNCTION slow_check() RETURNS boolean LANGUAGE sql
		AS $$SELECT CASE WHEN current_setting('seren_test.fill', true) = 'on' THEN true ELSE pg_sleep(0.25) IS NOT NULL END$$;
		SET seren_test.fill = on;
		CREATE TABLE slow (id int PRIMARY KEY, v text CHECK (slow_check()));
		INSERT INTO slow SELECT g, 'v' || g FROM generate_series(1, %d) g;
		CREATE TABLE quick1 (id int PRIMARY KEY); INSERT INTO quick1 SELECT generate_series(1, 100);
		CREATE TABLE quick2 (id int PRIMARY KEY); INSERT INTO quick2 SELECT generate_series(1, 100);`, rows))
	return name
}

func submitInit(t *testing.T, c *apiclient.Client, src, dst *pgtest.Cluster, db string, filter jobs.Filter) api.SubmitResponse {
	t.Helper()
	filter.IncludeDatabases = []string{db}
	resp, err := c.Submit(context.Background(), jobs.Request{
		SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandInit,
		SourceURL: src.URL("postgres").Secret(), TargetURL: dst.URL("postgres").Secret(),
		Filter: filter, Options: jobs.Options{NoSync: true},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	return i < 0 || i+2 >= len(st) || st[i+2] != 'Z'
}

var serveTuning = []string{"--max-concurrent-jobs", "1", "--max-queued-jobs", "5", "--check-interval", "200ms",
	"--heartbeat-timeout", "10s", "--worker-heartbeat", "500ms", "--worker-grace", "2s"}

// TestKill9WhileQueuedAndRunning: serve dies with one job running and one
// queued. Its worker survives in its own process group and the restarted
// serve adopts it; the queued job runs afterwards. Nothing is stuck.
func TestKill9WhileQueuedAndRunning(t *testing.T) {
	src, dst := pgtest.Pair(t)
	slowDB := slowSource(t, src, dst, 24)
	quickDB, _ := src.NewDB(t, dst)
	src.Exec(t, quickDB, `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);`)

	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "kill9")
	srv := startServe(t, dataDir, serveTuning...)
	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	running := submitInit(t, c, src, dst, slowDB, jobs.Filter{})
	queued := submitInit(t, c, src, dst, quickDB, jobs.Filter{})

	var worker int
	waitFor(t, 60*time.Second, "the slow job to run", func() bool {
		v := getJob(t, c, running.JobID)
		return v.Status == jobs.StatusRunning && v.Progress.CurrentDatabase != ""
	})
	if v := getJob(t, c, queued.JobID); v.Status != jobs.StatusProvisioning {
		t.Fatalf("second job is %s with a limit of 1", v.Status)
	}
	if pids := workerPids(t, dataDir); len(pids) == 1 {
		worker = pids[0]
	}
	if worker == 0 {
		t.Fatal("no single worker process found")
	}

	srv.kill9(t)
	if !pidAlive(worker) {
		t.Fatal("the worker died with serve; it runs in its own process group and must survive")
	}
	srv2 := startServe(t, dataDir, serveTuning...)
	c.BaseURL = srv2.url

	a := waitEnded(t, c, running.JobID, 2*time.Minute)
	b := waitEnded(t, c, queued.JobID, 2*time.Minute)
	if a.Status != jobs.StatusCompleted || b.Status != jobs.StatusCompleted {
		t.Fatalf("after restart: running job %s (%s), queued job %s (%s)\nserve log:\n%s",
			a.Status, a.Error, b.Status, b.Error, readFile(t, srv2.logPath))
	}
	if a.Attempts != 1 {
		t.Fatalf("the adopted job was restarted: attempts %d", a.Attempts)
	}
	if n := count(t, dst, slowDB, "slow"); n != 24 {
		t.Fatalf("slow: %d rows on the target", n)
	}
	if n := count(t, dst, quickDB, "t"); n != 50 {
		t.Fatalf("quick: %d rows on the target", n)
	}
}

// TestWorkerLostWithServeIsResumed: serve and the running worker both die
// (a machine crash); the restarted serve re-queues the job and a new
// worker resumes it from the checkpoint instead of starting over.
func TestWorkerLostWithServeIsResumed(t *testing.T) {
	src, dst := pgtest.Pair(t)
	slowDB := slowSource(t, src, dst, 24)
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "crash")
	srv := startServe(t, dataDir, serveTuning...)
	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	job := submitInit(t, c, src, dst, slowDB, jobs.Filter{})

	waitFor(t, 60*time.Second, "quick tables copied", func() bool {
		v := getJob(t, c, job.JobID)
		return v.Status == jobs.StatusRunning && v.Progress.TablesCompleted >= 2
	})
	v := getJob(t, c, job.JobID)
	// The worker id is not in the API view; take it from the process table.
	pids := workerPids(t, dataDir)
	if len(pids) != 1 {
		t.Fatalf("worker processes: %v", pids)
	}
	srv.kill9(t)
	if err := syscall.Kill(-pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "worker gone", func() bool { return !pidAlive(pids[0]) })

	srv2 := startServe(t, dataDir, serveTuning...)
	c.BaseURL = srv2.url
	done := waitEnded(t, c, job.JobID, 2*time.Minute)
	if done.Status != jobs.StatusCompleted {
		t.Fatalf("job %s: %s\nlog:\n%s", done.Status, done.Error, jobLog(t, c, job.JobID))
	}
	if done.Attempts != 2 || !done.StartedAt.Equal(*v.StartedAt) {
		t.Fatalf("attempts %d (want 2), started %v (first start %v)", done.Attempts, done.StartedAt, v.StartedAt)
	}
	var requeued bool
	for _, h := range done.History {
		requeued = requeued || (h.Status == jobs.StatusProvisioning && strings.Contains(h.Reason, "is gone"))
	}
	if !requeued {
		t.Fatalf("history lacks the re-queue with its reason: %+v", done.History)
	}
	logText := jobLog(t, c, job.JobID)
	if !strings.Contains(logText, "2 resumed from an earlier attempt") {
		t.Fatalf("the second worker did not resume the finished tables:\n%s", logText)
	}
	for _, tb := range []string{"slow", "quick1", "quick2"} {
		if s, d := count(t, src, slowDB, tb), count(t, dst, slowDB, tb); s != d {
			t.Fatalf("%s: source %d, target %d", tb, s, d)
		}
	}
}

// workerPids lists live `worker` processes of the serve using dataDir.
func workerPids(t *testing.T, dataDir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if len(args) > 4 && args[0] == binary && args[1] == "worker" && strings.Contains(string(raw), dataDir) && pidAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestBurstOf200WithALimitOf10: 200 submissions at once; never more than
// 10 workers alive; every submission ends in exactly one documented
// outcome (201 then a terminal status, or 429 with Retry-After).
func TestBurstOf200WithALimitOf10(t *testing.T) {
	src, dst := pgtest.Pair(t)
	name, _ := src.NewDB(t, dst)
	src.Exec(t, name, `CREATE TABLE t (id int PRIMARY KEY)`)
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "burst")
	srv := startServe(t, dataDir, "--max-concurrent-jobs", "10", "--max-queued-jobs", "30", "--check-interval", "200ms")

	var maxLive, samples int
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			n := len(workerPids(t, dataDir))
			samples++
			maxLive = max(maxLive, n)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	body, _ := json.Marshal(jobs.Request{SchemaVersion: jobs.SchemaVersion, Command: jobs.CommandValidate,
		SourceURL: src.URL("postgres").Secret(), TargetURL: dst.URL("postgres").Secret(),
		Filter: jobs.Filter{IncludeDatabases: []string{name}}, Options: jobs.Options{NoSync: true}})
	type outcome struct {
		code       int
		jobID      string
		retryAfter string
	}
	outcomes := make([]outcome, 200)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for i := range outcomes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			req, _ := http.NewRequest(http.MethodPost, srv.url+"/jobs", bytes.NewReader(body))
			req.Header.Set("x-api-key", key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var sr api.SubmitResponse
			_ = json.NewDecoder(resp.Body).Decode(&sr)
			outcomes[i] = outcome{code: resp.StatusCode, jobID: sr.JobID, retryAfter: resp.Header.Get("Retry-After")}
		}()
	}
	close(startGate)
	wg.Wait()

	c := &apiclient.Client{BaseURL: srv.url, APIKey: key}
	accepted := map[string]bool{}
	rejected := 0
	for i, o := range outcomes {
		switch o.code {
		case http.StatusCreated:
			if o.jobID == "" || accepted[o.jobID] {
				t.Fatalf("submission %d: 201 with job id %q (duplicate or empty)", i, o.jobID)
			}
			accepted[o.jobID] = true
		case http.StatusTooManyRequests:
			if o.retryAfter == "" {
				t.Fatalf("submission %d: 429 without Retry-After", i)
			}
			rejected++
		default:
			t.Fatalf("submission %d: undocumented outcome %d", i, o.code)
		}
	}
	// 10 running + 30 queued are admitted at once; a job that ends during
	// the burst frees a place for a later submission.
	if len(accepted)+rejected != 200 || len(accepted) < 40 || rejected == 0 {
		t.Fatalf("%d accepted, %d rejected (limit 10 running + 30 queued)", len(accepted), rejected)
	}
	for id := range accepted {
		v := waitEnded(t, c, id, 3*time.Minute)
		if v.Status != jobs.StatusCompleted {
			t.Fatalf("job %s: %s %q\nlog:\n%s", id, v.Status, v.Error, jobLog(t, c, id))
		}
		terminal := 0
		for _, h := range v.History {
			if h.Status.Terminal() {
				terminal++
			}
		}
		if terminal != 1 || v.Attempts != 1 {
			t.Fatalf("job %s: %d terminal entries, %d attempts: %+v", id, terminal, v.Attempts, v.History)
		}
	}
	close(stopSampling)
	<-sampled
	t.Logf("%d accepted, %d rejected with 429; at most %d workers alive at once over %d samples", len(accepted), rejected, maxLive, samples)
	if maxLive > 10 {
		t.Fatalf("%d workers alive at once with a limit of 10", maxLive)
	}
	if maxLive < 2 {
		t.Fatalf("at most %d worker alive: the jobs did not run concurrently", maxLive)
	}
	// Everything ended: no worker left, nothing active.
	waitFor(t, 30*time.Second, "no workers", func() bool { return len(workerPids(t, dataDir)) == 0 })
	if l, err := c.List(context.Background(), apiclient.ListOptions{Status: jobs.StatusProvisioning}); err != nil || len(l.Jobs) != 0 {
		t.Fatalf("jobs left provisioning: %v %v", l.Jobs, err)
	}
}

func TestSmokeScriptAgainstServe(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	key := createKey(t, dataDir, "smoke")
	srv := startServe(t, dataDir)
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "smoke-test.sh"))
	cmd.Env = append(os.Environ(), "API_ENDPOINT="+srv.url, "API_KEY="+key)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "All tests passed! (4/4)") {
		t.Fatalf("smoke test: %v\n%s", err, out)
	}
	for i := 1; i <= 4; i++ {
		if !strings.Contains(string(out), fmt.Sprintf("✓ Test %d/4: ", i)) {
			t.Fatalf("smoke test output lacks test %d:\n%s", i, out)
		}
	}
	// With a wrong key, it fails and says so.
	cmd = exec.Command("bash", filepath.Join(root, "scripts", "smoke-test.sh"))
	cmd.Env = append(os.Environ(), "API_ENDPOINT="+srv.url, "API_KEY=sk_live_wrong")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "✗ Test 3/4") {
		t.Fatalf("smoke test with a wrong key: %v\n%s", err, out)
	}
}
