package worker_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/serenorg/postgres-seren-replicator/internal/backends"
	"github.com/serenorg/postgres-seren-replicator/internal/joblog"
	"github.com/serenorg/postgres-seren-replicator/internal/jobs"
	"github.com/serenorg/postgres-seren-replicator/internal/pg"
	"github.com/serenorg/postgres-seren-replicator/internal/replicator"
	"github.com/serenorg/postgres-seren-replicator/internal/testutil/pgtest"
	"github.com/serenorg/postgres-seren-replicator/internal/worker"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

type bundle struct {
	set *backends.Set
	dir string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	dir := t.TempDir()
	set, err := backends.Open(context.Background(), backends.Config{Backend: backends.Embedded, DataDir: dir},
		backends.PartStore|backends.PartQueue|backends.PartKeeper|backends.PartLogs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return &bundle{set: set, dir: dir}
}

// jobOverrides adjust a job before it is stored.
type jobOverrides struct {
	Command   jobs.Command
	Source    string
	Target    string
	Filter    jobs.Filter
	Options   jobs.Options
	NoLaunch  bool // leave it without a recorded worker
	WorkerPid string
}

// newJob stores a job as the API would (sealed credentials) and records a
// launch as the provisioner would.
func (b *bundle) newJob(t *testing.T, o jobOverrides) *jobs.Job {
	t.Helper()
	ctx := context.Background()
	if o.Command == "" {
		o.Command = jobs.CommandInit
	}
	if o.Source == "" {
		o.Source = "postgres://u:pw@127.0.0.1:1/src"
	}
	if o.Target == "" {
		o.Target = "postgres://u:pw@127.0.0.1:1/dst"
	}
	id := uuid.NewString()
	sealed, err := b.set.Keeper.SealCredentials(ctx, id, jobs.Credentials{SourceURL: o.Source, TargetURL: o.Target})
	if err != nil {
		t.Fatal(err)
	}
	j, err := b.set.Store.Create(ctx, &jobs.Job{ID: id, Owner: "key_test", Credentials: sealed,
		Spec: jobs.Spec{Command: o.Command, Filter: o.Filter, Options: o.Options}})
	if err != nil {
		t.Fatal(err)
	}
	if !o.NoLaunch {
		pid := o.WorkerPid
		if pid == "" {
			pid = "test-worker"
		}
		if j, err = b.set.Store.Apply(ctx, id, jobs.Provisioned(pid, "local", "")); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

func (b *bundle) config(e worker.Engine) worker.Config {
	return worker.Config{
		Store: b.set.Store, Keeper: b.set.Keeper, Logs: b.set.Logs, Engine: e,
		WorkerID: "test-worker", ProgressEvery: 20 * time.Millisecond, HeartbeatEvery: 50 * time.Millisecond,
		LogFlushEvery: 20 * time.Millisecond, Parallel: 2,
		Networks: loopbackAllowed,
	}
}

// loopbackAllowed opens the test clusters' addresses to jobs.
var loopbackAllowed = func() *pg.NetPolicy {
	p, err := pg.ParseNetPolicy("127.0.0.0/8")
	if err != nil {
		panic(err)
	}
	return p
}()

func (b *bundle) job(t *testing.T, id string) *jobs.Job {
	t.Helper()
	j, err := b.set.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (b *bundle) lines(t *testing.T, id string) []joblog.Line {
	t.Helper()
	ls, err := b.set.Logs.Read(context.Background(), id, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// blockingEngine reports some progress and then blocks until ctx ends.
var blockingEngine = worker.EngineFunc(func(ctx context.Context, cmd jobs.Command, opts replicator.Options, rep replicator.Reporter) error {
	rep.Progress(replicator.Progress{Phase: "copy", CurrentDatabase: "app", DatabasesTotal: 2})
	rep.Logf("copying")
	<-ctx.Done()
	return ctx.Err()
})

func TestInitJobCopiesAndReports(t *testing.T) {
	src, dst := pgtest.Pair(t)
	b := setup(t)
	name, _ := src.NewDB(t, dst)
	srcURL := src.URL("postgres")
	src.Exec(t, name, `CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, 'row ' || g FROM generate_series(1, 500) g;
		CREATE TABLE b (id bigserial PRIMARY KEY, n numeric); INSERT INTO b (n) SELECT g FROM generate_series(1, 200) g;`)
	dstURL := dst.URL("postgres")
	j := b.newJob(t, jobOverrides{Source: srcURL.Secret(), Target: dstURL.Secret(),
		Filter: jobs.Filter{IncludeDatabases: []string{name}}, Options: jobs.Options{NoSync: true}})

	res, err := worker.Run(context.Background(), b.config(nil), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != jobs.StatusCompleted {
		t.Fatalf("result %+v; log:\n%s", res, dump(b.lines(t, j.ID)))
	}
	got := b.job(t, j.ID)
	if got.StartedAt == nil || got.CompletedAt == nil || got.WorkerID != "test-worker" {
		t.Fatalf("job record: started %v completed %v worker %q", got.StartedAt, got.CompletedAt, got.WorkerID)
	}
	if p := got.Progress; p.DatabasesTotal != 1 || p.DatabasesCompleted != 1 || p.TablesCompleted != 2 {
		t.Fatalf("final progress %+v", p)
	}
	for _, tc := range []struct {
		table string
		want  int
	}{{"a", 500}, {"b", 200}} {
		var n int
		if err := dst.Conn(t, name).QueryRow(context.Background(), "SELECT count(*) FROM "+tc.table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Fatalf("target %s has %d rows, want %d", tc.table, n, tc.want)
		}
	}
	ls := b.lines(t, j.ID)
	if len(ls) < 3 {
		t.Fatalf("only %d log lines", len(ls))
	}
	tag := "[TRACE:" + j.TraceID + "] "
	pw := srcURL.Password()
	for _, l := range ls {
		if !strings.HasPrefix(l.Text, tag) {
			t.Fatalf("log line without trace tag: %q", l.Text)
		}
		if pw != "" && strings.Contains(l.Text, pw) {
			t.Fatalf("log line holds the password: %q", l.Text)
		}
	}
	if !strings.Contains(dump(ls), "job completed") {
		t.Fatalf("log lacks the outcome:\n%s", dump(ls))
	}
}

func dump(ls []joblog.Line) string {
	var sb strings.Builder
	for _, l := range ls {
		sb.WriteString(l.Text + "\n")
	}
	return sb.String()
}

func TestFailureMessageIsRedacted(t *testing.T) {
	b := setup(t)
	const sentinel = "s3ntinel-Pa55"
	failing := worker.EngineFunc(func(ctx context.Context, cmd jobs.Command, opts replicator.Options, rep replicator.Reporter) error {
		// An error quoting a connection string, as a driver or child tool might.
		rep.Logf("connecting with %s", opts.Source.Secret())
		return errors.New("pg_dump: connection to postgres://u:" + sentinel + "@db.example.com/app failed")
	})
	j := b.newJob(t, jobOverrides{Source: "postgres://u:" + sentinel + "@db.example.com/app", Target: "postgres://v:" + sentinel + "x@127.0.0.1/app"})
	res, err := worker.Run(context.Background(), b.config(failing), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := b.job(t, j.ID)
	if res.Status != jobs.StatusFailed || got.Status != jobs.StatusFailed {
		t.Fatalf("result %+v, job %s", res, got.Status)
	}
	if !strings.Contains(got.Error, "pg_dump: connection to") || strings.Contains(got.Error, sentinel) {
		t.Fatalf("job error %q: want the message with the password redacted", got.Error)
	}
	if out := dump(b.lines(t, j.ID)); strings.Contains(out, sentinel) {
		t.Fatalf("log holds the password:\n%s", out)
	}
	for _, h := range got.History {
		if strings.Contains(h.Reason, sentinel) {
			t.Fatalf("history holds the password: %q", h.Reason)
		}
	}
}

func TestTimeout(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{Options: jobs.Options{JobTimeout: 1}})
	start := time.Now()
	res, err := worker.Run(context.Background(), b.config(blockingEngine), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != jobs.StatusTimeout || b.job(t, j.ID).Status != jobs.StatusTimeout {
		t.Fatalf("result %+v", res)
	}
	if d := time.Since(start); d < time.Second || d > 10*time.Second {
		t.Fatalf("timed out after %s, want about 1s", d)
	}
	if !strings.Contains(res.Error, "timeout of 1s") {
		t.Fatalf("error %q", res.Error)
	}
}

func TestCancelledInTheStoreStopsTheWorker(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{})
	done := make(chan worker.Result, 1)
	go func() {
		res, err := worker.Run(context.Background(), b.config(blockingEngine), j.ID)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, "running with progress", func() bool {
		cur := b.job(t, j.ID)
		return cur.Status == jobs.StatusRunning && cur.Progress.CurrentDatabase == "app"
	})
	if _, err := b.set.Store.Apply(context.Background(), j.ID, jobs.Cancelled()); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.Status != jobs.StatusCancelled {
			t.Fatalf("result %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker kept running after the job was cancelled")
	}
}

func TestHandedToAnotherWorkerStops(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{})
	done := make(chan error, 1)
	go func() {
		_, err := worker.Run(context.Background(), b.config(blockingEngine), j.ID)
		done <- err
	}()
	ctx := context.Background()
	waitFor(t, "running", func() bool { return b.job(t, j.ID).Status == jobs.StatusRunning })
	// The service lost patience and gave the job to a new worker.
	if _, err := b.set.Store.Apply(ctx, j.ID, jobs.Requeued("test: worker lost")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.set.Store.Apply(ctx, j.ID, jobs.Provisioned("other-worker", "local", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.set.Store.Apply(ctx, j.ID, jobs.Started("other-worker")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, worker.ErrNotMine) {
			t.Fatalf("err = %v, want ErrNotMine", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("old worker kept running")
	}
	if got := b.job(t, j.ID); got.Status != jobs.StatusRunning || got.WorkerID != "other-worker" {
		t.Fatalf("job %s on %s: the old worker must not touch it", got.Status, got.WorkerID)
	}
}

func TestStoppedWorkerLeavesTheJobToTheService(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := worker.Run(ctx, b.config(blockingEngine), j.ID)
		done <- err
	}()
	waitFor(t, "running", func() bool { return b.job(t, j.ID).Status == jobs.StatusRunning })
	cancel() // SIGTERM
	if err := <-done; !errors.Is(err, worker.ErrStopped) {
		t.Fatalf("err = %v, want ErrStopped", err)
	}
	if got := b.job(t, j.ID); got.Status != jobs.StatusRunning {
		t.Fatalf("job is %s; a stopped worker must leave it running for the service to re-queue", got.Status)
	}
	if out := dump(b.lines(t, j.ID)); !strings.Contains(out, "resumes it from its checkpoint") {
		t.Fatalf("log:\n%s", out)
	}
}

func TestEndedJobIsLeftAlone(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{})
	if _, err := b.set.Store.Apply(context.Background(), j.ID, jobs.Cancelled()); err != nil {
		t.Fatal(err)
	}
	ran := false
	e := worker.EngineFunc(func(context.Context, jobs.Command, replicator.Options, replicator.Reporter) error {
		ran = true
		return nil
	})
	res, err := worker.Run(context.Background(), b.config(e), j.ID)
	if err != nil || res.Status != jobs.StatusCancelled || ran {
		t.Fatalf("res %+v err %v ran %v", res, err, ran)
	}
	if _, err := worker.Run(context.Background(), b.config(e), "no-such-job"); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
}

func TestWaitsForTheLaunchRecord(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{NoLaunch: true})
	var opts replicator.Options
	e := worker.EngineFunc(func(_ context.Context, _ jobs.Command, o replicator.Options, _ replicator.Reporter) error {
		opts = o
		return nil
	})
	go func() {
		time.Sleep(100 * time.Millisecond)
		if _, err := b.set.Store.Apply(context.Background(), j.ID, jobs.Provisioned("test-worker", "local", "")); err != nil {
			t.Error(err)
		}
	}()
	res, err := worker.Run(context.Background(), b.config(e), j.ID)
	if err != nil || res.Status != jobs.StatusCompleted {
		t.Fatalf("res %+v err %v", res, err)
	}
	if got := b.job(t, j.ID); got.Attempts != 1 || got.WorkerID != "test-worker" {
		t.Fatalf("attempts %d worker %q: the launch record must land before the start", got.Attempts, got.WorkerID)
	}
	// Engine options follow the job: resume always on, sync per options.
	if opts.NoResume || opts.NoSync || opts.Source.Password() != "pw" {
		t.Fatalf("engine options %+v", opts)
	}
}

func TestEngineOptionsFromSpec(t *testing.T) {
	b := setup(t)
	var got replicator.Options
	e := worker.EngineFunc(func(_ context.Context, _ jobs.Command, o replicator.Options, _ replicator.Reporter) error {
		got = o
		return nil
	})
	off := false
	j := b.newJob(t, jobOverrides{
		Filter:  jobs.Filter{IncludeDatabases: []string{"app"}, ExcludeTables: []string{"app.audit"}},
		Options: jobs.Options{DropExisting: true, EnableSync: &off},
	})
	if _, err := worker.Run(context.Background(), b.config(e), j.ID); err != nil {
		t.Fatal(err)
	}
	if !got.DropExisting || !got.NoSync || got.NoResume || got.Rules == nil || got.Jobs != 2 {
		t.Fatalf("options %+v", got)
	}
	if !got.Rules.Database("app") || got.Rules.Database("other") {
		t.Fatal("include_databases not applied")
	}
	// A bad stored filter fails the job with the field named, not the worker.
	j2 := b.newJob(t, jobOverrides{Filter: jobs.Filter{TableFilters: []string{"nocolon"}}})
	res, err := worker.Run(context.Background(), b.config(e), j2.ID)
	if err != nil || res.Status != jobs.StatusFailed || !strings.HasPrefix(res.Error, "filter:") {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// handToWorkerB does what the service does when it gives up on a worker:
// re-queue the job, launch worker-b, and worker-b starts it.
func (b *bundle) handToWorkerB(t *testing.T, id string) jobs.Lease {
	t.Helper()
	ctx := context.Background()
	if _, err := b.set.Store.Apply(ctx, id, jobs.Requeued("test: worker lost")); err != nil {
		t.Fatal(err)
	}
	j, err := b.set.Store.Apply(ctx, id, jobs.Provisioned("worker-b", "local", ""))
	if err != nil {
		t.Fatal(err)
	}
	lease := jobs.LeaseOf(j)
	if _, err := b.set.Store.Apply(ctx, id, jobs.Started("worker-b").By(lease)); err != nil {
		t.Fatal(err)
	}
	return lease
}

// finishAsWorkerB completes the job as worker-b and checks that the job's
// end is B's, whatever the stale worker did.
func (b *bundle) finishAsWorkerB(t *testing.T, id string, lease jobs.Lease) {
	t.Helper()
	final := jobs.Progress{Phase: "done by worker-b", TablesCompleted: 7}
	if _, err := b.set.Store.Apply(context.Background(), id, jobs.Completed(&final).By(lease)); err != nil {
		t.Fatalf("worker-b could not complete its job: %v", err)
	}
	got := b.job(t, id)
	if got.Status != jobs.StatusCompleted || got.WorkerID != "worker-b" || got.Progress != final || got.Error != "" {
		t.Fatalf("final job: status %s worker %q progress %+v error %q; want worker-b's completion", got.Status, got.WorkerID, got.Progress, got.Error)
	}
}

// Attack: worker A's job is rescued and given to worker B while A is still
// running; A finishes its engine work and tries to complete the job.
func TestStaleWorkerCannotCompleteALostJob(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{WorkerPid: "worker-a"})
	release := make(chan struct{})
	e := worker.EngineFunc(func(ctx context.Context, _ jobs.Command, _ replicator.Options, _ replicator.Reporter) error {
		select {
		case <-release:
			return nil // A believes it finished
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	cfg := b.config(e)
	cfg.WorkerID = "worker-a"
	cfg.HeartbeatEvery = time.Hour // A writes nothing until it finishes
	done := make(chan error, 1)
	go func() {
		_, err := worker.Run(context.Background(), cfg, j.ID)
		done <- err
	}()
	waitFor(t, "A running", func() bool { return b.job(t, j.ID).Status == jobs.StatusRunning })
	leaseB := b.handToWorkerB(t, j.ID)
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, worker.ErrNotMine) {
			t.Errorf("stale worker A: err = %v, want ErrNotMine", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker A did not return")
	}
	if got := b.job(t, j.ID); got.Status != jobs.StatusRunning || got.WorkerID != "worker-b" {
		t.Fatalf("after A finished: job %s on %q; A must not end worker-b's job", got.Status, got.WorkerID)
	}
	b.finishAsWorkerB(t, j.ID, leaseB)
}

// Attack: the lost worker A keeps reporting progress after B took over; its
// progress must never land on B's job, and A must stop its engine.
func TestStaleWorkerProgressIsRefused(t *testing.T) {
	b := setup(t)
	j := b.newJob(t, jobOverrides{WorkerPid: "worker-a"})
	release := make(chan struct{})
	stopped := make(chan struct{})
	e := worker.EngineFunc(func(ctx context.Context, _ jobs.Command, _ replicator.Options, rep replicator.Reporter) error {
		<-release
		rep.Progress(replicator.Progress{Phase: "stale progress of worker-a"})
		select {
		case <-ctx.Done(): // the worker noticed and stopped its engine
			close(stopped)
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return errors.New("worker A's engine was never stopped")
		}
	})
	cfg := b.config(e)
	cfg.WorkerID = "worker-a"
	cfg.HeartbeatEvery = time.Hour
	done := make(chan error, 1)
	go func() {
		_, err := worker.Run(context.Background(), cfg, j.ID)
		done <- err
	}()
	waitFor(t, "A running", func() bool { return b.job(t, j.ID).Status == jobs.StatusRunning })
	leaseB := b.handToWorkerB(t, j.ID)
	close(release)
	select {
	case err := <-done:
		if !errors.Is(err, worker.ErrNotMine) {
			t.Errorf("stale worker A: err = %v, want ErrNotMine", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("worker A did not return")
	}
	select {
	case <-stopped:
	default:
		t.Error("worker A returned without stopping its engine")
	}
	if got := b.job(t, j.ID); got.Status != jobs.StatusRunning || got.WorkerID != "worker-b" || got.Progress.Phase != "" {
		t.Fatalf("job %s on %q progress %+v: A's progress landed on worker-b's job", got.Status, got.WorkerID, got.Progress)
	}
	b.finishAsWorkerB(t, j.ID, leaseB)
}
